"""Read uv.lock, the one record of every dependency's version, with the standard library alone."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

LOCK = Path(__file__).resolve().parent.parent / "uv.lock"


def locked_packages(lock: Path = LOCK) -> list[dict[str, Any]]:
    """Every package entry of the lock (a name may appear once per fork, e.g. per Python version)."""
    packages: list[dict[str, Any]] = tomllib.loads(lock.read_text())["package"]
    return packages


def locked_package(name: str, lock: Path = LOCK) -> dict[str, Any]:
    """The one entry of `name`; a package the lock forks (two versions) or lacks is an error."""
    entries = [p for p in locked_packages(lock) if p["name"] == name]
    if len(entries) != 1:
        found = ", ".join(p["version"] for p in entries) or "none"
        raise SystemExit(f"{lock.name} should lock one version of {name} (found: {found}); run `make lock`")
    return entries[0]


def locked_version(name: str, lock: Path = LOCK) -> str:
    version: str = locked_package(name, lock)["version"]
    return version


def pinned(requirements: Path, environment: dict[str, str] | None = None) -> dict[str, str]:
    """{package: version} of an exported requirements file's pins whose markers hold in `environment`
    (this interpreter's when None). Needs `packaging`, which the bootstrap never calls for."""
    import re

    from packaging.markers import Marker
    from packaging.utils import canonicalize_name

    pins = {}
    for line in requirements.read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9._-]+)==([^ ;]+)(?: ; (.*?))?(?: \\)?$", line)
        if m and (m.group(3) is None or Marker(m.group(3)).evaluate(environment)):
            pins[str(canonicalize_name(m.group(1)))] = m.group(2)
    return pins
