"""Which versions may take traffic: the quality gate's verdict in a version's card, and withdrawn versions."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from pathlib import Path

from version_format.atomic import atomic_write
from version_format.card import GATE_KEY
from version_format.layout import CARD_FILE

# Beside the versions; not an integer, so TF Serving and the registry never take it for a version.
WITHDRAWN_FILE = "withdrawn.json"


def gate_refusal(version_dir: Path) -> str | None:
    """The gate's reason when the version's card records a rejection, else None."""
    try:
        card = json.loads((version_dir / CARD_FILE).read_text())
    except (OSError, ValueError):
        return None  # no card, or a card being written: the load itself will judge the version
    gate = card.get(GATE_KEY) if isinstance(card, dict) else None
    if isinstance(gate, dict) and gate.get("promoted") is False:
        return f"rejected by the quality gate: {gate.get('reason', 'no reason recorded')}"
    return None


def withdrawn(base: Path) -> dict[int, str]:
    """Versions rolled back by hand: version -> why."""
    try:
        data = json.loads((base / WITHDRAWN_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return {int(k): str(v) for k, v in data.items() if str(k).isdigit()} if isinstance(data, dict) else {}


def _write_withdrawn(base: Path, entries: dict[int, str]) -> None:
    # atomic: the poller reads the old list or the new one
    atomic_write(base / WITHDRAWN_FILE, json.dumps({str(k): v for k, v in sorted(entries.items())}, indent=2))


def withdraw(base: Path, version: int, why: str) -> None:
    entries = withdrawn(base)
    entries[version] = f"{why} at {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}"
    _write_withdrawn(base, entries)


def restore(base: Path, version: int) -> bool:
    entries = withdrawn(base)
    if entries.pop(version, None) is None:
        return False
    _write_withdrawn(base, entries)
    return True


def refusals(base: Path, versions: Iterable[int]) -> dict[int, str]:
    """Blocking: every version of `versions` that must not take traffic, with the reason."""
    out = {v: f"withdrawn (rolled back): {why}" for v, why in withdrawn(base).items()}
    for version in versions:
        if version not in out and (reason := gate_refusal(base / str(version))):
            out[version] = reason
    return {v: r for v, r in out.items() if v in set(versions)}
