"""The committed gRPC code is what protoc makes of proto/ today."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def test_generated_code_is_not_stale():
    r = subprocess.run([sys.executable, "scripts/gen_protos.py", "--check"], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "up to date" in r.stdout


def test_check_notices_a_change(tmp_path):
    # the same check against a copy whose generated module was edited must fail
    import shutil

    copy = tmp_path / "repo"
    shutil.copytree(ROOT / "proto", copy / "proto")
    shutil.copytree(ROOT / "scripts", copy / "scripts")
    shutil.copytree(ROOT / "service" / "grpc" / "_generated", copy / "service" / "grpc" / "_generated")
    target = copy / "service" / "grpc" / "_generated" / "imgclf" / "v1" / "classifier_pb2.py"
    target.write_text(target.read_text() + "\n# edited by hand\n")
    r = subprocess.run([sys.executable, "scripts/gen_protos.py", "--check"], cwd=copy,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "stale" in r.stdout
