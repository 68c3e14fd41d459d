"""The teach endpoints' OpenAPI description is truthful: documented statuses, checked by schemathesis."""

from __future__ import annotations

import re

import httpx

from tests.service.rest.test_openapi import run_schemathesis


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
    """The stock checks on the teach paths alone (more examples each than the whole-API run gives them)."""
    summary = run_schemathesis(teach_server.rest_url, tmp_path, "--include-tag", "teach", examples=15)
    assert int(re.search(r"(\d+) generated", summary)[1]) >= 50  # type: ignore[index]
