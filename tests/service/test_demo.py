"""The demo version shipped in the package: installed on an empty model root, never over a version."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import httpx
import pytest

from service.demo import DemoError, demo_archive, install_demo
from tests.service.test_process import start_serve

BIN = Path(sys.executable).parent
SAMPLES = Path(__file__).resolve().parents[2] / "service" / "web" / "static" / "samples"


def test_the_package_ships_a_demo_archive_under_16_mb():
    archive = demo_archive()
    assert archive is not None, "service/demo_model/rps-demo.tar.gz is missing"
    assert archive.stat().st_size <= 16 * 1024 * 1024


def test_installed_as_version_1_on_an_empty_root(tmp_path):
    path = install_demo(tmp_path / "models", "rps")
    assert path == tmp_path / "models" / "rps" / "1"
    assert (path / "saved_model.pb").is_file() and (path / "variables").is_dir()
    card = json.loads((path / "assets.extra" / "model_card.json").read_text())
    assert card["version"] == 1 and card["name"] == "rps"
    assert card["labels"] == ["none", "paper", "rock", "scissors"]
    # provenance travels with the version: the data, its licence, the command that rebuilds it
    assert "CC BY 2.0" in card["demo"]["data"] and "Laurence Moroney" in card["demo"]["data"]
    assert card["demo"]["command"].startswith("imgclf train")
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".tmp")]


def test_never_installed_over_an_existing_version(tmp_path):
    existing = tmp_path / "rps" / "3"
    existing.mkdir(parents=True)
    (existing / "marker").write_text("mine")
    assert install_demo(tmp_path, "rps") is None
    assert sorted(p.name for p in (tmp_path / "rps").iterdir()) == ["3"]
    assert (existing / "marker").read_text() == "mine"


def test_an_archive_with_an_escaping_path_is_refused(tmp_path):
    bad = tmp_path / "bad.tar.gz"
    with tarfile.open(bad, "w:gz") as tar:
        info = tarfile.TarInfo("../escape.txt")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"hi"))
    with pytest.raises(DemoError, match="unsafe"):
        install_demo(tmp_path / "models", "rps", archive=bad)
    assert not (tmp_path / "escape.txt").exists()
    assert not list((tmp_path / "models" / "rps").iterdir())


def test_cli_demo_installs_once(tmp_path):
    run = lambda: subprocess.run([str(BIN / "imgclf"), "demo", "--model-root", str(tmp_path)],  # noqa: E731
                                 capture_output=True, text=True, timeout=120)
    first, second = run(), run()
    assert first.returncode == 0 and "installed" in first.stdout
    assert second.returncode == 0 and "nothing to do" in second.stdout
    assert sorted(p.name for p in (tmp_path / "rps").iterdir()) == ["1"]


@pytest.mark.slow
def test_serve_on_an_empty_root_answers_with_the_demo(tmp_path):
    """A first start: no version, no network, no training; the samples are read right."""
    env = {**os.environ, "IMGCLF_MODEL_ROOT": str(tmp_path / "models"), "IMGCLF_HOST": "127.0.0.1",
           "IMGCLF_REST_PORT": "0", "IMGCLF_GRPC_PORT": "0"}
    started = time.monotonic()
    proc, lines, url = start_serve(env)
    try:
        ready_after = None
        while time.monotonic() - started < 120:
            if httpx.get(f"{url}/readyz", timeout=5).status_code == 200:
                ready_after = time.monotonic() - started
                break
            time.sleep(0.2)
        assert ready_after is not None, "".join(lines)
        print(f"\nfirst start with the demo version: ready {ready_after:.1f} s after the process started")
        answers = {}
        for sample in sorted(SAMPLES.glob("*.jpg")):
            r = httpx.post(f"{url}/predict", files={"file": (sample.name, sample.read_bytes(), "image/jpeg")},
                           timeout=30)
            assert r.status_code == 200, r.text
            answers[sample.stem] = r.json()["predictions"][0]["label"]
        assert answers == {"no-hand": "none", "paper": "paper", "rock": "rock", "scissors": "scissors"}
    finally:
        proc.terminate()
        proc.wait(30)
    assert "installed the demo version" in "".join(lines)
