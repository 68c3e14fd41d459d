"""The lock: uv.lock matches pyproject.toml, covers the supported platforms, the pip files are the lock
exported, and the environment the tests run in is the lock's.

Nothing here reaches a package index: uv runs with --offline and an empty cache.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from types import ModuleType

import pytest
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.tags import Tag
from packaging.utils import parse_wheel_filename

REPO = Path(__file__).resolve().parents[1]
UV = Path(sys.executable).parent / "uv"
PYTHONS = ("3.11", "3.12")
MACHINES = ("x86_64", "aarch64")
# (file, the `uv export` options that write it): what `make requirements` writes
PIP_FILES = [("requirements-serve.txt", ("--group", "build")),
             ("requirements.txt", ("--group", "build", "--extra", "train")),
             ("requirements-dev.txt", ("--extra", "train", "--extra", "dev"))]
# what only training, the tensorflow runtime and the TF Serving backend need: never in the serve image
TRAINING_ONLY = ("tensorflow", "keras", "tensorflow-serving-api", "scipy", "scikit-image", "matplotlib",
                 "tensorboard")


def lockfile() -> ModuleType:
    spec = importlib.util.spec_from_file_location("lockfile", REPO / "scripts" / "lockfile.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def uv(*args: str, cwd: Path, cache: Path) -> subprocess.CompletedProcess[str]:
    if not UV.exists():
        pytest.fail(f"uv is not installed beside {sys.executable}: run `make install-dev`", pytrace=False)
    env = {**os.environ, "UV_CACHE_DIR": str(cache), "UV_PYTHON_DOWNLOADS": "never", "UV_NO_CONFIG": "1"}
    return subprocess.run([str(UV), *args, "--offline"], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=120)


def project_copy(tmp_path: Path) -> Path:
    copy = tmp_path / "project"
    copy.mkdir()
    for name in ("pyproject.toml", "uv.lock", "README.md"):
        shutil.copy2(REPO / name, copy / name)
    return copy


def test_lock_matches_pyproject(tmp_path: Path) -> None:
    r = uv("lock", "--check", cwd=project_copy(tmp_path), cache=tmp_path / "cache")
    assert r.returncode == 0, f"uv.lock does not match pyproject.toml: run `make lock`\n{r.stdout}{r.stderr}"


def test_lock_check_fails_when_pyproject_moves(tmp_path: Path) -> None:
    # the check above can fail: a dependency added to pyproject.toml and not locked
    copy = project_copy(tmp_path)
    pyproject = copy / "pyproject.toml"
    text = pyproject.read_text()
    pyproject.write_text(text.replace('"pillow>=10",', '"pillow>=10",\n    "requests>=2",', 1))
    assert pyproject.read_text() != text
    r = uv("lock", "--check", cwd=copy, cache=tmp_path / "cache")
    assert r.returncode != 0, r.stdout + r.stderr


@pytest.mark.parametrize(("name", "options"), PIP_FILES)
def test_pip_files_are_the_lock_exported(tmp_path: Path, name: str, options: tuple[str, ...]) -> None:
    r = uv("export", "--frozen", "--no-emit-project", "--no-header", *options, cwd=project_copy(tmp_path),
           cache=tmp_path / "cache")
    assert r.returncode == 0, r.stderr

    def body(text: str) -> list[str]:
        return [line for line in text.splitlines() if not line.startswith("#")]

    assert body((REPO / name).read_text()) == body(r.stdout), f"{name} is not uv.lock's: run `make requirements`"


def pinned(name: str) -> dict[str, str]:
    """{package: version} of a pip file's pins for this interpreter."""
    return lockfile().pinned(REPO / name)


def test_runtime_file_leaves_out_the_test_tools() -> None:
    runtime, dev = pinned("requirements.txt"), pinned("requirements-dev.txt")
    for serving in ("tensorflow", "fastapi", "uvicorn", "grpcio", "ai-edge-litert", "protobuf"):
        assert serving in runtime, serving
    for tool in ("pytest", "playwright", "schemathesis", "tritonclient", "kserve", "grpcio-tools", "uv"):
        assert tool not in runtime and tool in dev, tool
    assert {k: dev[k] for k in runtime} == runtime, "a package is locked at two versions"


def test_serve_file_leaves_out_training() -> None:
    """requirements-serve.txt (imgclf:serve) holds what the server needs with the LiteRT runtimes and the
    hand stage, nothing of TensorFlow's, and the same versions as requirements.txt (imgclf:full)."""
    serve, full = pinned("requirements-serve.txt"), pinned("requirements.txt")
    for serving in ("fastapi", "uvicorn", "grpcio", "protobuf", "ai-edge-litert", "numpy", "pillow",
                    "pydantic-settings", "prometheus-client", "typer", "setuptools"):
        assert serving in serve, serving
    for heavy in (*TRAINING_ONLY, "h5py", "opt-einsum"):
        assert heavy not in serve, heavy
    for heavy in TRAINING_ONLY:
        assert heavy in full, heavy
    assert {k: full[k] for k in serve} == serve, "a package is locked at two versions"


def test_train_extra_holds_what_only_training_needs() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]

    def names(requirements: list[str]) -> set[str]:
        return {Requirement(r).name for r in requirements}

    assert set(TRAINING_ONLY) <= names(project["optional-dependencies"]["train"])
    assert not set(TRAINING_ONLY) & names(project["dependencies"])


def test_this_environment_is_the_lock() -> None:
    """Every package the lock pins for this interpreter is installed at that version (`make install-dev`
    syncs exactly; a package upgraded by hand or a stale .venv shows here)."""
    wrong = {}
    for name, version in pinned("requirements-dev.txt").items():
        try:
            installed = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            installed = "missing"
        if installed != version:
            wrong[name] = f"{installed} (locked {version})"
    assert not wrong, f"not as locked (run `make install-dev`): {wrong}"


def _serves(tag: Tag, python: str, machine: str) -> bool:
    cp = "cp" + python.replace(".", "")
    platform = tag.platform == "any" or ("linux" in tag.platform and tag.platform.endswith(machine))
    if tag.interpreter in ("py3", "py" + cp[2:]) and tag.abi == "none":
        return platform
    if tag.abi == "abi3":
        return platform and tag.interpreter.startswith("cp3") and int(tag.interpreter[2:]) <= int(cp[2:])
    return platform and tag.interpreter == cp and tag.abi == cp


@pytest.mark.parametrize("machine", MACHINES)
@pytest.mark.parametrize("python", PYTHONS)
def test_lock_installs_on_every_supported_platform(python: str, machine: str) -> None:
    """Each package the lock chooses for Linux on this machine kind and Python has a wheel for it (or an
    sdist): what `pyproject.toml`'s [tool.uv] environments promise and the README states."""
    env = {"python_full_version": f"{python}.0", "python_version": python, "platform_machine": machine,
           "sys_platform": "linux", "platform_system": "Linux", "implementation_name": "cpython",
           "platform_python_implementation": "CPython", "os_name": "posix"}
    lock = tomllib.loads((REPO / "uv.lock").read_text())
    assert any(Marker(m).evaluate(env) for m in lock["supported-markers"]), "the lock leaves this platform out"
    missing = []
    for package in lock["package"]:
        forks = package.get("resolution-markers")
        if package.get("source", {}).get("editable") or (forks and not any(Marker(m).evaluate(env) for m in forks)):
            continue
        tags = [tag for wheel in package.get("wheels", [])
                for tag in parse_wheel_filename(wheel["url"].rsplit("/", 1)[-1])[3]]
        if "sdist" not in package and not any(_serves(tag, python, machine) for tag in tags):
            missing.append(f"{package['name']}=={package['version']}")
    assert not missing, f"no wheel for CPython {python} on Linux {machine}: {missing}"
