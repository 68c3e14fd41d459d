"""What an install without TensorFlow (the imgclf:serve image, `requirements-serve.txt`) does with a setting or
a version that needs it: the server refuses IMGCLF_RUNTIME=tensorflow and IMGCLF_BACKEND=tfserving at start in
one line naming imgclf:full (exit 2), and a version that would need TensorFlow fails alone with a line saying
why. Each case runs in a process of its own in which TensorFlow and Keras cannot be found, as on that image;
tests/deploy/test_containers.py runs the image itself."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.service.conftest import demo_version
from version_format.layout import INT8_FILE, TFLITE_FILE

ROOT = Path(__file__).resolve().parents[2]

# the path finder, except that TensorFlow and Keras are not there to find (nor to import)
_WITHOUT_TENSORFLOW = """
import sys
from importlib.machinery import PathFinder

class WithoutTensorFlow(PathFinder):
    @classmethod
    def find_spec(cls, name, path=None, target=None):
        if name.partition(".")[0] in ("tensorflow", "keras", "tensorflow_serving"):
            return None
        return super().find_spec(name, path, target)

sys.meta_path = [WithoutTensorFlow if finder is PathFinder else finder for finder in sys.meta_path]
"""

_SERVE = _WITHOUT_TENSORFLOW + """
sys.argv = ["imgclf", "serve", "--model-root", sys.argv[1]]
from service.cli import main
main()
"""

# argv[1]: the model root; argv[2]: the runtime. Prints {"loaded": ...} or {"error": ...} for version 1.
_LOAD = _WITHOUT_TENSORFLOW + """
import json
from pathlib import Path
from service.backends.local import LocalBackend
try:
    runtime = LocalBackend(Path(sys.argv[1]), runtime=sys.argv[2]).load("rps", 1)
    print(json.dumps({"loaded": runtime.runtime, "tensorflow": "tensorflow" in sys.modules}))
except Exception as exc:
    print(json.dumps({"error": f"{type(exc).__name__}: {exc}", "tensorflow": "tensorflow" in sys.modules}))
"""


def run(script: str, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", script, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, env={**os.environ, "IMGCLF_HOST": "127.0.0.1", "IMGCLF_REST_PORT": "0",
                                            "IMGCLF_GRPC_PORT": "0", **(env or {})})


def test_the_finder_hides_tensorflow() -> None:
    r = run(_WITHOUT_TENSORFLOW + "import importlib.util; print(importlib.util.find_spec('tensorflow'))\n"
            "import tensorflow")
    assert r.stdout.strip() == "None" and "ModuleNotFoundError: No module named 'tensorflow'" in r.stderr


@pytest.mark.parametrize(("setting", "value"), [("IMGCLF_RUNTIME", "tensorflow"), ("IMGCLF_BACKEND", "tfserving")])
def test_start_refuses_what_needs_tensorflow(tmp_path: Path, setting: str, value: str) -> None:
    r = run(_SERVE, str(tmp_path / "models"), env={"IMGCLF_RUNTIME": "litert", setting: value})
    lines = [line for line in (r.stdout + r.stderr).splitlines() if line.strip()]
    assert r.returncode == 2 and len(lines) == 1, r.stdout + r.stderr
    assert lines[0].startswith(f"error: {setting}={value}") and "use the imgclf:full image" in lines[0], lines
    assert not (tmp_path / "models").exists(), "refused before installing anything"


@pytest.fixture(scope="module")
def versions(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The demo version as shipped, and without its float model (a version exported before every version
    carried one), and without either LiteRT model."""
    base = tmp_path_factory.mktemp("serve-install")
    shipped = demo_version(base / "shipped")
    no_float = base / "no-float"
    shutil.copytree(shipped, no_float)
    (no_float / "rps" / "1" / TFLITE_FILE).unlink()
    neither = base / "neither"
    shutil.copytree(no_float, neither)
    (neither / "rps" / "1" / INT8_FILE).unlink()
    return {"shipped": shipped, "no-float": no_float, "neither": neither}


@pytest.mark.parametrize("runtime", ["litert", "litert-float", "auto"])
def test_the_shipped_version_loads_on_litert(versions: dict[str, Path], runtime: str) -> None:
    result = json.loads(run(_LOAD, str(versions["shipped"]), runtime).stdout)
    expected = {"litert": {"litert"}, "litert-float": {"litert-float"}, "auto": {"litert", "litert-float"}}
    assert result["loaded"] in expected[runtime] and result["tensorflow"] is False, result


@pytest.mark.parametrize(("version", "runtime", "words"), [
    ("no-float", "litert-float", f"has no {TFLITE_FILE}, and converting its SavedModel needs TensorFlow"),
    ("neither", "auto", "the tensorflow runtime needs TensorFlow"),
])
def test_a_version_that_needs_tensorflow_fails_in_one_line(versions: dict[str, Path], version: str,
                                                          runtime: str, words: str) -> None:
    r = run(_LOAD, str(versions[version]), runtime)
    result = json.loads(r.stdout)
    assert result["error"].startswith("ValueError: ") and words in result["error"], result
    assert "imgclf:full" in result["error"] and "\n" not in result["error"] and not result["tensorflow"], result
