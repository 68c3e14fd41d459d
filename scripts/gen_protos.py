"""Regenerate service/grpc/_generated from proto/ (`python scripts/gen_protos.py [--check]`).

The generated files carry the generator's version (`GRPC_GENERATED_VERSION`, the protobuf gencode
version), so they are made with the grpcio-tools that uv.lock names. `--check` compares them byte for
byte with what the installed grpcio-tools makes when that is the locked one; with another release
installed (outside the lock) it compares them with those version stamps set aside, and says so.
"""

from __future__ import annotations

import importlib.metadata
import re
import shutil
import sys
import tempfile
from pathlib import Path

from lockfile import locked_version

ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "proto"
OUT = ROOT / "service" / "grpc" / "_generated"


# the top folders of proto/: imgclf and inference (ours, KServe's), tensorflow, tensorflow_serving and xla
# (printed from the installed packages by vendor_tf_protos.py)
_ABSOLUTE_IMPORT = re.compile(r"^(from |import )((?:imgclf|inference|tensorflow|tensorflow_serving|xla)[.\w]* )",
                              re.MULTILINE)


def generate(out: Path) -> None:
    from grpc_tools import protoc

    protos = sorted(str(p.relative_to(PROTO_DIR)) for p in PROTO_DIR.rglob("*.proto"))
    out.mkdir(parents=True, exist_ok=True)
    # google/protobuf/*.proto (imported by the TF protos) ship with grpc_tools; protobuf has their code
    well_known = Path(protoc.__file__).parent / "_proto"
    args = ["protoc", f"-I{PROTO_DIR}", f"-I{well_known}", f"--python_out={out}", f"--pyi_out={out}",
            f"--grpc_python_out={out}", *protos]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    # protoc writes absolute imports (`from imgclf.v1 import ...`, `from tensorflow.core.framework
    # import ...`); point them into this package, so the vendored TF protos never import TensorFlow
    for py in out.rglob("*_pb2*.py*"):
        py.write_text(_ABSOLUTE_IMPORT.sub(r"\1service.grpc._generated.\2", py.read_text()))
    for folder in [out, *[p for p in out.rglob("*") if p.is_dir()]]:
        (folder / "__init__.py").touch()


# The lines that name the generator's release: GRPC_GENERATED_VERSION, the gencode version comment and
# the four arguments of protobuf's runtime check that follow `Domain.PUBLIC,`
_STAMPS = re.compile(
    r"^GRPC_GENERATED_VERSION = .*$|^# Protobuf Python Version: .*$"
    r"|(?<=_runtime_version\.Domain\.PUBLIC,\n)(?:\s+\S+,\n){4}",
    re.MULTILINE,
)


def generator_versions() -> tuple[str, str]:
    """(installed, locked) grpcio-tools versions."""
    return importlib.metadata.version("grpcio-tools"), locked_version("grpcio-tools")


def stale_files(fresh: Path, committed: Path, *, ignore_stamps: bool) -> list[str]:
    """Files that differ between two generated trees (or exist in one only), relative to the tree."""

    def files(top: Path) -> dict[str, str]:
        texts = {}
        for path in top.rglob("*.py*"):
            if "__pycache__" not in path.parts:
                text = path.read_text()
                texts[path.relative_to(top).as_posix()] = _STAMPS.sub("", text) if ignore_stamps else text
        return texts

    new, old = files(fresh), files(committed)
    return sorted(name for name in new.keys() | old.keys() if new.get(name) != old.get(name))


def main() -> int:
    installed, locked = generator_versions()
    if "--check" in sys.argv:
        exact = installed == locked
        with tempfile.TemporaryDirectory() as tmp:
            generate(Path(tmp))
            stale = stale_files(Path(tmp), OUT, ignore_stamps=not exact)
        if stale:
            print(f"generated code is stale: {stale}; run python scripts/gen_protos.py")
            return 1
        if exact:
            print(f"generated code is up to date (grpcio-tools {locked}, as locked)")
        else:
            print(f"generated code is up to date but for the version stamps: grpcio-tools {installed} is "
                  f"installed, uv.lock names {locked} (`make install-dev` installs the locked one)")
        return 0
    if installed != locked:
        print(f"grpcio-tools {installed} is installed but uv.lock names {locked}: run `make install-dev` "
              "(or `make lock` to move the lock)", file=sys.stderr)
        return 1
    shutil.rmtree(OUT, ignore_errors=True)
    generate(OUT)
    print(f"wrote {OUT} with grpcio-tools {locked}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
