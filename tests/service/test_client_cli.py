"""`imgclf predict` as a user runs it (a subprocess of the installed command) against the real servers."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from service.client import ClientError, classify_grpc, classify_rest

IMGCLF = Path(sys.executable).parent / "imgclf"
LABELS = ["paper", "rock", "scissors"]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "120", "NO_COLOR": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.run([str(IMGCLF), *args], capture_output=True, text=True, timeout=120, env=env)


@pytest.fixture(scope="module")
def image(tmp_path_factory, sample_jpeg) -> Path:
    path = tmp_path_factory.mktemp("cli") / "hand.jpg"
    path.write_bytes(sample_jpeg)
    return path


@pytest.fixture(scope="module")
def expected(serving, sample_jpeg) -> dict:
    r = httpx.post(f"{serving.rest_url}/predict", files={"file": ("hand.jpg", sample_jpeg)})
    assert r.status_code == 200
    return r.json()["predictions"][0]


@pytest.fixture
def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed again on leaving: nothing listens there


def _check_table(out: str, image: Path, expected: dict, rows: int = 1) -> None:
    assert "rps version 1" in out
    assert all(label in out for label in LABELS)  # one column per class
    lines = [line for line in out.splitlines() if image.name in line]
    assert len(lines) == rows, out
    for line in lines:
        assert expected["label"] in line
        numbers = [float(x) for x in re.findall(r"\b[01]\.\d{3}\b", line)]
        assert numbers == pytest.approx([expected["scores"][k] for k in LABELS], abs=2e-3), line


def test_predict_over_rest(serving, image, expected):
    proc = _run("predict", str(image), "--url", serving.rest_url)
    assert proc.returncode == 0, proc.stderr
    _check_table(proc.stdout, image, expected)


def test_predict_two_images_over_grpc_with_a_label(serving, image, expected):
    proc = _run("predict", str(image), str(image), "--grpc", serving.grpc_target, "--label", "stable")
    assert proc.returncode == 0, proc.stderr
    _check_table(proc.stdout, image, expected, rows=2)


@pytest.mark.parametrize("transport", ["--url", "--grpc"])
def test_closed_port_is_a_one_line_error(image, closed_port, transport):
    target = f"http://127.0.0.1:{closed_port}" if transport == "--url" else f"127.0.0.1:{closed_port}"
    proc = _run("predict", str(image), transport, target, "--timeout", "10")
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), proc.stderr
    assert str(closed_port) in lines[0]


@pytest.mark.parametrize("transport", ["--url", "--grpc"])
def test_unknown_version_shows_the_server_message(serving, image, transport):
    target = serving.rest_url if transport == "--url" else serving.grpc_target
    proc = _run("predict", str(image), transport, target, "--version", "99")
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), proc.stderr
    assert "version 99" in lines[0]
    assert ("404" if transport == "--url" else "NOT_FOUND") in lines[0]


def test_missing_image_file_is_a_usage_error(tmp_path, serving):
    proc = _run("predict", str(tmp_path / "nope.jpg"), "--url", serving.rest_url)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr


def test_client_functions_agree(serving, sample_jpeg, expected):
    rest = classify_rest(serving.rest_url, [sample_jpeg], ["a.jpg"], label="stable")
    grpc_reply = classify_grpc(serving.grpc_target, [sample_jpeg], version=1)
    for reply in (rest, grpc_reply):
        assert reply["model_name"] == "rps" and reply["model_version"] == 1
        (pred,) = reply["predictions"]
        assert pred["label"] == expected["label"]
        assert pred["scores"] == pytest.approx(expected["scores"], abs=1e-5)
    with pytest.raises(ClientError, match="400"):
        classify_rest(serving.rest_url, [b"junk"], ["junk.jpg"])
    with pytest.raises(ClientError, match="INVALID_ARGUMENT"):
        classify_grpc(serving.grpc_target, [b"junk"])


@pytest.mark.parametrize("transport", ["--url", "--grpc"])
def test_model_option_reaches_the_server(serving, image, transport):
    target = serving.rest_url if transport == "--url" else serving.grpc_target
    ok = _run("predict", str(image), transport, target, "--model", "rps")
    assert ok.returncode == 0 and "rps version 1" in ok.stdout, ok.stderr
    proc = _run("predict", str(image), transport, target, "--model", "nope")
    assert proc.returncode == 1 and "'nope' not found" in proc.stderr, proc.stderr
