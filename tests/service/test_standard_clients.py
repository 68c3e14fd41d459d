"""tritonclient (HTTP, gRPC) and the KServe SDK (V2 REST, V2 gRPC, V1 REST) with their defaults, end to end."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

SCRIPT = Path(__file__).with_name("standard_clients.py")
LABELS = ["paper", "rock", "scissors"]


def _installed(module: str) -> bool:
    probe = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True)
    return probe.returncode == 0


@pytest.fixture(scope="module")
def image_files(tmp_path_factory, sample_jpeg) -> list[Path]:
    folder = tmp_path_factory.mktemp("client-images")
    buf = io.BytesIO()
    Image.new("RGB", (100, 140), (40, 60, 220)).save(buf, format="PNG")
    files = [folder / "hand.jpg", folder / "blue.png"]
    files[0].write_bytes(sample_jpeg)
    files[1].write_bytes(buf.getvalue())
    return files


@pytest.fixture(scope="module")
def expected(serving, image_files) -> dict:
    """The native API's answer for the same images: every client must see the same scores."""
    files = [("file", (p.name, p.read_bytes())) for p in image_files]
    reply = httpx.post(f"{serving.rest_url}/predict", files=files).json()
    return {"scores": [[p["scores"][x] for x in LABELS] for p in reply["predictions"]],
            "labels": [p["label"] for p in reply["predictions"]]}


def _run(client: str, address: str, files: list[Path]) -> dict:
    module = "tritonclient" if client.startswith("triton") else "kserve"
    if not _installed(module):
        pytest.skip(f"{module} is not installed (make test installs it from requirements-clients.txt)")
    proc = subprocess.run([sys.executable, str(SCRIPT), client, address, "rps", *map(str, files)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _same_answer(got: dict, expected: dict) -> None:
    np.testing.assert_allclose(np.array(got["scores"]), np.array(expected["scores"]), atol=1e-5)
    assert got["labels"] == expected["labels"]


@pytest.mark.parametrize("client", ["triton-http", "triton-grpc"])
def test_tritonclient(serving, image_files, expected, client):
    address = serving.grpc_target if client.endswith("grpc") else serving.rest_url.removeprefix("http://")
    got = _run(client, address, image_files)
    _same_answer(got, expected)
    assert (got["live"], got["ready"], got["model_ready"]) == (True, True, True)
    assert got["inputs"] == ["image_bytes"] and got["version"] == "1"
    # classification extension, binary BYTES output: "score:index:label" of the best class
    assert [entry.split(":")[2] for entry in got["top1"]] == expected["labels"]
    assert got["stats_count"] >= 4  # two calls of two images each at least
    assert got["index"] == ["rps"]


@pytest.mark.parametrize("client", ["kserve-rest", "kserve-grpc"])
def test_kserve_sdk_v2(serving, image_files, expected, client):
    address = serving.grpc_target if client.endswith("grpc") else serving.rest_url.removeprefix("http://")
    got = _run(client, address, image_files)
    _same_answer(got, expected)
    assert (got["live"], got["ready"], got["model_ready"]) == (True, True, True)
    assert got["id"] == "kserve-1"
    if client == "kserve-grpc":
        assert got["version"] == "1"


def test_kserve_sdk_v1(serving, image_files, expected):
    """The V1 client's liveness probe reads `/`: it gets JSON there, the page goes to browsers."""
    got = _run("kserve-v1", serving.rest_url.removeprefix("http://"), image_files)
    _same_answer(got, expected)
    assert got["live"] is True
    page = httpx.get(f"{serving.rest_url}/", headers={"Accept": "text/html,*/*;q=0.8"})
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
