"""The OpenAPI document tells the truth (schemathesis, every check), and /docs works offline."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parents[1]  # tests/service
LONG = os.environ.get("IMGCLF_FUZZ_LONG") == "1"


def test_document_lists_real_statuses_and_bodies(serving):
    doc = httpx.get(f"{serving.rest_url}/openapi.json").json()
    assert "422" not in str([op["responses"] for ops in doc["paths"].values() for op in ops.values()])
    predict = doc["paths"]["/predict"]["post"]
    assert set(predict["responses"]) >= {"200", "400", "401", "404", "413", "429", "503", "504"}
    assert doc["paths"]["/v1/models/{name}:predict"]["post"]["requestBody"]["content"]["application/json"]
    assert "/v1/models/{name}/versions/{version}/metadata" in doc["paths"]
    infer = doc["paths"]["/v2/models/{model}/infer"]["post"]["requestBody"]
    assert infer["content"]["application/json"]["schema"]["$ref"].endswith("/InferRequest")
    assert "text/plain" in doc["paths"]["/metrics"]["get"]["responses"]["200"]["content"]
    assert "401" not in doc["paths"]["/healthz"]["get"]["responses"]  # exempt by default


def run_schemathesis(url: str, tmp_path: Path, *extra: str, examples: int = 25) -> str:
    """schemathesis with its stock checks and expectations (no configuration file): only its generators learn
    what an image is (tests/service/schemathesis_hooks.py). Returns the summary; fails on any failure or error."""
    assert not list(HERE.rglob("schemathesis.toml")), "no project configuration: the stock expectations hold"
    cmd = [str(Path(sys.executable).parent / "schemathesis"), "run", f"{url}/openapi.json", "--checks", "all",
           "--workers", "1", "--no-color", "--max-examples", str(200 if LONG else examples),
           "--generation-database", "none", "--seed", "7", "--report-dir", str(tmp_path), *extra]
    env = {**os.environ, "SCHEMATHESIS_HOOKS": "tests.service.schemathesis_hooks", "PYTHONPATH": str(HERE.parents[1])}
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=3600 if LONG else 600, cwd=tmp_path, env=env)
    summary = r.stdout[-3000:]
    print(summary)
    assert r.returncode == 0, summary
    assert not re.search(r"\d+ (failures?|errors?)\b", summary.splitlines()[-1]), summary
    return summary


def test_schemathesis_all_checks(serving, tmp_path):
    """A bounded run (IMGCLF_FUZZ_LONG=1: a longer one) with every check; 0 failures, 0 server errors."""
    summary = run_schemathesis(serving.rest_url, tmp_path)
    assert int(re.search(r"(\d+) generated", summary)[1]) >= 300 and "passed" in summary  # type: ignore[index]


def test_schemathesis_all_checks_with_keys_and_teach(trained_model_root, start_server, tmp_path):
    """Every surface at once (teach on), keys on: the key opens everything, the stock checks still hold."""
    key = "fuzz-key-0123456789abcdef"
    server = start_server(trained_model_root, api_keys=key, teach=True, data_root=tmp_path / "data")
    summary = run_schemathesis(server.rest_url, tmp_path, "-H", f"X-API-Key: {key}")
    assert int(re.search(r"(\d+) generated", summary)[1]) >= 300 and "passed" in summary  # type: ignore[index]


def test_docs_page_is_offline_and_strict(serving):
    page = httpx.get(f"{serving.rest_url}/docs")
    assert page.status_code == 200 and "swagger-ui" in page.text
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "default-src 'self'" in csp
    assert not re.search(r"https?://", page.text), "the page must not load anything from another origin"
    assert "<script>" not in page.text  # no inline script: the CSP would block it
    for src in re.findall(r'(?:src|href)="([^"]+)"', page.text):
        asset = httpx.get(f"{serving.rest_url}{src}")
        assert asset.status_code == 200 and len(asset.content) > 100, src
    init = httpx.get(f"{serving.rest_url}/docs/init.js").text
    assert "/openapi.json" in init
