"""The demo version shipped inside the package: installed as version 1 when a model has none."""

from __future__ import annotations

import json
import logging
import os
import shutil
import tarfile
import tempfile
from importlib import resources
from pathlib import Path

from version_format.atomic import fsync_tree
from version_format.layout import CARD_FILE, TMP_PREFIX

log = logging.getLogger(__name__)

DEMO_ARCHIVE = "rps-demo.tar.gz"


class DemoError(RuntimeError):
    """The demo version could not be installed; the message says why."""


def demo_archive() -> Path | None:
    """The packaged archive, or None when this build ships without one."""
    path = Path(str(resources.files("service") / "demo_model" / DEMO_ARCHIVE))
    return path if path.is_file() else None


def _versions(base: Path) -> list[int]:
    if not base.is_dir():
        return []
    return sorted(int(p.name) for p in base.iterdir() if p.is_dir() and p.name.isdigit())


def _safe_members(tar: tarfile.TarFile) -> list[tarfile.TarInfo]:
    """Regular files and folders inside the archive's root only: no links, no `..`."""
    members = []
    for m in tar.getmembers():
        parts = Path(m.name).parts
        if m.name.startswith("/") or ".." in parts or not (m.isfile() or m.isdir()):
            raise DemoError(f"the demo archive holds an unsafe entry {m.name!r}")
        members.append(m)
    return members


def install_demo(model_root: Path, name: str, archive: Path | None = None) -> Path | None:
    """Unpack the demo as `<root>/<name>/1` when `<root>/<name>` has no version; else do nothing.

    Unpacked beside the versions under a `.tmp-` name and renamed into place, like every export:
    a watching server sees nothing or a complete version, and an existing version (even one that
    appears meanwhile) is never overwritten. Returns the new version's path, or None.
    """
    archive = archive or demo_archive()
    base = Path(model_root) / name
    if _versions(base):
        return None
    if archive is None:
        raise DemoError("this installation ships no demo version; train one with `imgclf train`")
    try:
        base.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}demo-", dir=base))
    except OSError as exc:
        raise DemoError(f"cannot write under {base} ({exc.strerror})") from None
    try:
        with tarfile.open(archive, "r:gz") as tar:
            members = _safe_members(tar)
            if hasattr(tarfile, "data_filter"):  # Python >= 3.11.4 (and the image's base)
                tar.extractall(tmp, members=members, filter="data")
            else:  # older 3.11 patch releases: the members were checked above
                tar.extractall(tmp, members=members)
        if not (tmp / "saved_model.pb").is_file():
            raise DemoError("the demo archive holds no saved_model.pb")
        card_path = tmp / CARD_FILE
        card = json.loads(card_path.read_text()) if card_path.is_file() else {}
        card.update({"name": name, "version": 1, "installed_from": "demo archive shipped with imgclf"})
        card_path.write_text(json.dumps(card, indent=2) + "\n")
        target = base / "1"
        if _versions(base):  # a trainer published meanwhile: its version wins
            return None
        fsync_tree(tmp)
        try:
            os.rename(tmp, target)
        except OSError:
            return None
        log.info("installed the demo version as %s", target)
        return target
    except (OSError, tarfile.TarError, ValueError) as exc:
        raise DemoError(f"could not unpack the demo version into {base}: {exc}") from None
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
