"""Each image's final stage, rebuilt as far as this machine allows, serves a real prediction.

No container engine runs here, so the test repeats what the Dockerfile does: a fresh virtual
environment, the image's own package install line on a copy of the build context, the final
stage's ENV, and its ENTRYPOINT + CMD. The dependency layer is stood in for by the development
environment's site-packages (the same pinned requirements; installing them again would need
the network).
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import socket
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import httpx
import pytest

from tests.deploy.test_static_config import TARGETS, target

REPO = Path(__file__).resolve().parents[2]


def final_stage(image: str) -> dict[str, object]:
    """ENV, ENTRYPOINT, CMD, HEALTHCHECK and the package RUN line of the image built with `--target IMAGE`."""
    runtime, builder = target(image), target(TARGETS[image])
    env: dict[str, str] = {}
    for key, args in runtime:
        if key == "ENV":
            for item in shlex.split(args):
                name, _, value = item.partition("=")
                env[name] = value
    entry = next(json.loads(a) for k, a in runtime if k == "ENTRYPOINT")
    cmd = next(json.loads(a) for k, a in runtime if k == "CMD")
    health = next(a for k, a in runtime if k == "HEALTHCHECK")
    health_cmd = json.loads(health[health.index("CMD") + 3:].strip())
    package = [a for k, a in builder if k == "RUN" and a.startswith("pip install") and "." in a.split()][-1]
    return {"env": env, "entry": entry, "cmd": cmd, "health": health_cmd, "package": package}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("image", ["serve", "full"])
def test_fresh_venv_with_the_image_install_and_entry_point_predicts(tmp_path, trained_model_root, sample_jpeg,
                                                                    image):
    stage = final_stage(image)
    venv = tmp_path / "opt-venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    site = next(venv.glob("lib/python3*/site-packages"))
    # the dependency layer: the same requirements, already installed in the dev environment
    (site / "_deps_layer.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    context = tmp_path / "src"
    for rel in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / rel, context / rel) if context.exists() else (
            context.mkdir(), shutil.copy2(REPO / rel, context / rel))
    for package in ("training", "service", "version_format", "hands"):
        shutil.copytree(REPO / package, context / package, ignore=shutil.ignore_patterns("__pycache__"))
    package_line = shlex.split(str(stage["package"]))
    assert package_line[:2] == ["pip", "install"]
    r = subprocess.run([str(venv / "bin" / "python"), "-m", *package_line, "--no-index", "--no-build-isolation",
                        "--disable-pip-version-check"], cwd=context, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert (venv / "bin" / "imgclf").exists()

    env = dict(stage["env"])  # type: ignore[arg-type]
    assert env["IMGCLF_MODEL_ROOT"] == "/models"  # the image's volume; here a real trained root instead
    rest, grpc_port = free_port(), free_port()
    env.update({"PATH": f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}", "HOME": str(tmp_path),
                "MPLCONFIGDIR": str(tmp_path / "mpl"), "IMGCLF_MODEL_ROOT": str(trained_model_root),
                "IMGCLF_HOST": "127.0.0.1", "IMGCLF_REST_PORT": str(rest), "IMGCLF_GRPC_PORT": str(grpc_port)})
    argv = [*stage["entry"], *stage["cmd"]]  # type: ignore[misc]
    assert argv == ["imgclf", "serve"]
    proc = subprocess.Popen([str(venv / "bin" / argv[0]), *argv[1:]], env=env, cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        health = [str(venv / "bin" / "python") if a == "python" else a for a in stage["health"]]  # type: ignore[attr-defined]
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            assert proc.poll() is None, proc.communicate()[0]
            if subprocess.run(health, env=env, capture_output=True, timeout=30).returncode == 0:
                break
            time.sleep(0.5)
        else:
            raise AssertionError("the HEALTHCHECK never passed")
        r = httpx.post(f"http://127.0.0.1:{rest}/predict", files={"file": ("hand.jpg", sample_jpeg)}, timeout=30)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["model_name"] == "rps" and body["model_version"] == 1
        # the installed package is the copy, not the working tree
        import_check = subprocess.run([str(venv / "bin" / "python"), "-c", "import service; print(service.__file__)"],
                                      env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60)
        assert str(site) in import_check.stdout
    finally:
        proc.terminate()
        out = proc.communicate(timeout=60)[0]
    assert proc.returncode == 0, out
