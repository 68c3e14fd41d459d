"""Install the uv that uv.lock names into a folder (`python scripts/bootstrap_uv.py .tools`).

The lock is the one place a version is written: uv itself is a locked dev dependency, so this reads
its version and wheel hashes from uv.lock and has pip install exactly that wheel (`--require-hashes`),
with nothing but the standard library and pip. `make install` and the Dockerfile run it first.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

from lockfile import locked_package


def locked_uv() -> tuple[str, list[str]]:
    """uv's version and the sha256 of each of its wheels, as uv.lock records them."""
    entry = locked_package("uv")
    return entry["version"], [wheel["hash"] for wheel in entry.get("wheels", [])]


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python scripts/bootstrap_uv.py TARGET_DIR", file=sys.stderr)
        return 2
    target = Path(argv[0])
    version, hashes = locked_uv()
    binary = target / "bin" / "uv"
    if binary.exists():
        found = subprocess.run([str(binary), "--version"], capture_output=True, text=True).stdout.split()
        if found[1:2] == [version]:
            return 0
    line = f"uv=={version} " + " ".join(f"--hash={h}" for h in hashes)
    with tempfile.NamedTemporaryFile("w", suffix=".txt") as requirements:
        requirements.write(line + "\n")
        requirements.flush()
        # --target replaces an older uv in place; --no-deps: uv's wheel is self-contained
        result = subprocess.run(
            [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps",
             "--require-hashes", "--upgrade", "--target", str(target), "-r", requirements.name]
        )
    if result.returncode != 0:
        return result.returncode
    print(f"uv {version} in {binary}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
