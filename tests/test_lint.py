"""ruff and mypy are clean over every package, script and benchmark (the same as `make lint`)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
MYPY_TARGETS = ["service", "training", "version_format", "hands", "scripts", "bench"]


def test_ruff_is_clean() -> None:
    r = subprocess.run([str(BIN / "ruff"), "check", "."], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr


def test_mypy_is_clean(tmp_path: Path) -> None:
    # a cache of its own: an incremental cache can miss a changed protocol member and pass stale code
    r = subprocess.run([str(BIN / "mypy"), "--cache-dir", str(tmp_path / "cache"), *MYPY_TARGETS], cwd=ROOT,
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout + r.stderr


def test_make_lint_checks_the_same_folders() -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert f"mypy {' '.join(MYPY_TARGETS)}" in makefile
