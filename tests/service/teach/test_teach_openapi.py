"""The teach endpoints' OpenAPI description is truthful: documented statuses, checked by schemathesis."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent


def test_teach_paths_are_documented_only_when_on(teach_server, serving):
    doc = httpx.get(f"{teach_server.rest_url}/openapi.json").json()
    start = doc["paths"]["/v1/models/{name}/finetunes"]["post"]["responses"]
    assert {"202", "400", "404", "409", "503"} <= set(start)
    add = doc["paths"]["/v1/models/{name}/examples"]["post"]
    assert {"200", "201", "400", "413"} <= set(add["responses"])
    assert "multipart/form-data" in add["requestBody"]["content"]
    events = doc["paths"]["/v1/models/{name}/finetunes/{job_id}/events"]["get"]["responses"]["200"]
    assert "text/event-stream" in events["content"]
    off = httpx.get(f"{serving.rest_url}/openapi.json").json()
    assert not [p for p in off["paths"] if "/examples" in p or "/finetunes" in p]


def test_schemathesis_on_the_teach_paths(teach_server, tmp_path):
    cmd = [str(Path(sys.executable).parent / "schemathesis"), "--config-file", str(HERE / "schemathesis.toml"),
           "run", f"{teach_server.rest_url}/openapi.json", "--checks", "all", "--workers", "1", "--no-color",
           "--include-tag", "teach", "--max-examples", "15", "--generation-database", "none", "--seed", "7",
           "--report-dir", str(tmp_path)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    summary = r.stdout[-3000:]
    print(summary)
    assert r.returncode == 0, summary
    assert int(re.search(r"(\d+) generated", r.stdout)[1]) >= 50  # type: ignore[index]
