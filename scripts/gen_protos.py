"""Regenerate service/grpc/_generated from proto/ (`python scripts/gen_protos.py [--check]`)."""

from __future__ import annotations

import filecmp
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "proto"
OUT = ROOT / "service" / "grpc" / "_generated"


def generate(out: Path) -> None:
    from grpc_tools import protoc

    protos = sorted(str(p.relative_to(PROTO_DIR)) for p in PROTO_DIR.rglob("*.proto"))
    out.mkdir(parents=True, exist_ok=True)
    args = ["protoc", f"-I{PROTO_DIR}", f"--python_out={out}", f"--pyi_out={out}",
            f"--grpc_python_out={out}", *protos]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    # protoc writes absolute imports (`from imgclf.v1 import ...`); point them into this package
    for py in out.rglob("*_pb2*.py*"):
        text = py.read_text()
        for package in ("imgclf.v1", "inference"):
            text = text.replace(f"from {package} import", f"from service.grpc._generated.{package} import")
        py.write_text(text)
    for folder in [out, *[p for p in out.rglob("*") if p.is_dir()]]:
        (folder / "__init__.py").touch()


def main() -> int:
    if "--check" in sys.argv:
        with tempfile.TemporaryDirectory() as tmp:
            generate(Path(tmp))
            cmp = filecmp.dircmp(tmp, OUT)
            stale = _diff(cmp)
            if stale:
                print(f"generated code is stale: {stale}; run python scripts/gen_protos.py")
                return 1
        print("generated code is up to date")
        return 0
    shutil.rmtree(OUT, ignore_errors=True)
    generate(OUT)
    print(f"wrote {OUT}")
    return 0


def _diff(cmp: filecmp.dircmp[str]) -> list[str]:
    out = [*cmp.left_only, *cmp.right_only, *cmp.diff_files]
    for sub in cmp.subdirs.values():
        out.extend(_diff(sub))
    return [x for x in out if x != "__pycache__"]


if __name__ == "__main__":
    sys.exit(main())
