"""The committed gRPC code is what the locked protoc makes of proto/ today, and the versions it demands
at run time are the ones pyproject.toml asks for."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[3]
GENERATED = ROOT / "service" / "grpc" / "_generated"


def repo_copy(tmp_path: Path) -> Path:
    copy = tmp_path / "repo"
    shutil.copytree(ROOT / "proto", copy / "proto")
    shutil.copytree(ROOT / "scripts", copy / "scripts")
    shutil.copytree(GENERATED, copy / "service" / "grpc" / "_generated")
    shutil.copy2(ROOT / "uv.lock", copy / "uv.lock")
    return copy


def check(cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "scripts/gen_protos.py", "--check"], cwd=cwd,
                          capture_output=True, text=True, timeout=120)


def test_generated_code_is_not_stale() -> None:
    r = check(ROOT)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "up to date" in r.stdout


def test_check_notices_a_change(tmp_path: Path) -> None:
    # the same check against a copy whose generated module was edited must fail
    copy = repo_copy(tmp_path)
    target = copy / "service" / "grpc" / "_generated" / "imgclf" / "v1" / "classifier_pb2.py"
    target.write_text(target.read_text() + "\n# edited by hand\n")
    r = check(copy)
    assert r.returncode == 1 and "stale" in r.stdout


# gen_protos.main() in a process of its own (protoc in the pytest process, beside the servers' protobuf
# descriptors, can crash it), with the installed generator's version given: argv[1] the copy, argv[2]
# the version to pretend is installed
_PRETEND = """
import sys
from pathlib import Path
sys.path.insert(0, "scripts")
import gen_protos
copy, installed = Path(sys.argv[1]), sys.argv[2]
locked = gen_protos.generator_versions()[1]
gen_protos.generator_versions = lambda: (installed if installed != "locked" else locked, locked)
gen_protos.OUT = copy / "service" / "grpc" / "_generated"
sys.argv = ["gen_protos.py", "--check"]
sys.exit(gen_protos.main())
"""


def check_as_if(copy: Path, installed: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", _PRETEND, str(copy), installed], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def test_another_generator_release_is_compared_without_its_stamps(tmp_path: Path) -> None:
    # a newer grpcio-tools installed outside the lock writes other version stamps, nothing else:
    # the check sets the stamps aside then, and still catches a real change
    copy = repo_copy(tmp_path)
    grpc_file = copy / "service" / "grpc" / "_generated" / "imgclf" / "v1" / "classifier_pb2_grpc.py"
    pb2_file = grpc_file.with_name("classifier_pb2.py")
    grpc_file.write_text(re.sub(r"GRPC_GENERATED_VERSION = '.*'", "GRPC_GENERATED_VERSION = '99.0.0'",
                                grpc_file.read_text()))
    pb2_file.write_text(re.sub(r"Protobuf Python Version: .*", "Protobuf Python Version: 99.0.0",
                               pb2_file.read_text()))
    r = check_as_if(copy, "99.0.0")
    assert r.returncode == 0 and "but for the version stamps" in r.stdout, r.stdout + r.stderr
    # with the locked generator installed, those stamps are a difference
    r = check_as_if(copy, "locked")
    assert r.returncode == 1 and "stale" in r.stdout, r.stdout + r.stderr
    pb2_file.write_text(pb2_file.read_text() + "\n# edited by hand\n")
    r = check_as_if(copy, "99.0.0")
    assert r.returncode == 1 and "classifier_pb2.py" in r.stdout, r.stdout + r.stderr


def generated_versions() -> tuple[Version, Version]:
    """(GRPC_GENERATED_VERSION, protobuf gencode version) of the committed code."""
    grpc_versions = {m for p in GENERATED.rglob("*_pb2_grpc.py")
                     for m in re.findall(r"^GRPC_GENERATED_VERSION = '(.*)'$", p.read_text(), re.MULTILINE)}
    proto_versions = {m for p in GENERATED.rglob("*_pb2.py")
                      for m in re.findall(r"^# Protobuf Python Version: (.*)$", p.read_text(), re.MULTILINE)}
    assert len(grpc_versions) == 1 and len(proto_versions) == 1, (grpc_versions, proto_versions)
    return Version(grpc_versions.pop()), Version(proto_versions.pop())


def test_generated_code_comes_from_the_locked_generator() -> None:
    from tests.test_dependencies import lockfile

    locked = lockfile().locked_version("grpcio-tools")
    assert generated_versions()[0] == Version(locked), "regenerate with the locked grpcio-tools: make protos"


@pytest.mark.parametrize("package", ["grpcio", "protobuf"])
def test_pyproject_asks_for_what_the_generated_code_needs(package: str) -> None:
    # the generated modules refuse to import on an older grpcio or protobuf runtime than their generator's
    needed = dict(zip(("grpcio", "protobuf"), generated_versions(), strict=True))[package]
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    requirement = next(Requirement(d) for d in deps if Requirement(d).name == package)
    floors = [Version(s.version) for s in requirement.specifier if s.operator in (">=", "==", "~=")]
    assert floors and max(floors) >= needed, f"pyproject.toml: {requirement} admits {package} < {needed}"
    assert requirement.specifier.contains(needed)
