"""The talk's Rock Paper Scissors dataset: download on request, verify SHA-256, cache, extract."""

from __future__ import annotations

import hashlib
import os
import shutil
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

from training.errors import DataError


@dataclass(frozen=True)
class RemoteFile:
    url: str
    sha256: str
    size: int

    @property
    def filename(self) -> str:
        return self.url.rsplit("/", 1)[-1]


# Pinned: the same sums tensorflow-datasets records for rock_paper_scissors.
RPS_FILES = {
    "train": RemoteFile(
        "https://storage.googleapis.com/download.tensorflow.org/data/rps.zip",
        "c2403444395842ad04c53612bad54b574443eae17a0723117a2ff87b9d72194f",
        200682221,
    ),
    "test": RemoteFile(
        "https://storage.googleapis.com/download.tensorflow.org/data/rps-test-set.zip",
        "c27ab9fa43ce40b2e453de711365b477f4424586edf0388116674fd320f07503",
        29516758,
    ),
}


def cache_dir() -> Path:
    """`$IMGCLF_CACHE_DIR`, else `$XDG_CACHE_HOME/imgclf`, else `~/.cache/imgclf`."""
    if env := os.environ.get("IMGCLF_CACHE_DIR"):
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "imgclf"


def download(remote: RemoteFile, dest_dir: Path, *, show_progress: bool = True,
             timeout: float = 30.0) -> Path:
    """Fetch `remote` into dest_dir (reused when its checksum matches) and verify it."""
    dest_dir.mkdir(parents=True, exist_ok=True)
    target = dest_dir / remote.filename
    if target.exists() and _sha256(target) == remote.sha256:
        return target
    partial = target.with_suffix(target.suffix + ".part")
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(remote.url, timeout=timeout) as response, \
                open(partial, "wb") as out, \
                Progress("[progress.description]{task.description}", BarColumn(), DownloadColumn(),
                         TransferSpeedColumn(), disable=not show_progress) as progress:
            total = int(response.headers.get("Content-Length") or remote.size)
            task = progress.add_task(f"downloading {remote.filename}", total=total)
            while chunk := response.read(1 << 20):
                out.write(chunk)
                digest.update(chunk)
                progress.advance(task, len(chunk))
    except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
        partial.unlink(missing_ok=True)
        reason = getattr(exc, "reason", exc)
        raise DataError(
            f"could not download {remote.url}: {reason}. Are you offline? "
            "Use --data synthetic or a local folder of class folders instead.") from None
    if digest.hexdigest() != remote.sha256:
        partial.unlink(missing_ok=True)
        raise DataError(
            f"checksum mismatch for {remote.filename}: expected sha256 {remote.sha256}, "
            f"got {digest.hexdigest()}; the download was discarded")
    partial.replace(target)
    return target


def extract(archive: Path, dest: Path) -> Path:
    """Unzip once (to a temporary folder, then renamed) and return the folder of class folders."""
    if not dest.exists():
        tmp = dest.with_name(dest.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        with zipfile.ZipFile(archive) as zf:
            for member in zf.namelist():  # refuse paths that would escape the folder
                if member.startswith("/") or ".." in Path(member).parts:
                    raise DataError(f"{archive} contains an unsafe path {member!r}")
            zf.extractall(tmp)
        tmp.rename(dest)
    for folder in [dest, *sorted(p for p in dest.rglob("*") if p.is_dir())]:
        classes = [p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(("_", "."))]
        if len(classes) >= 2 and all(any(c.iterdir()) for c in classes):
            return folder
    raise DataError(f"{archive} holds no folder of class folders")


def fetch_rps(split: str = "train", *, files: dict[str, RemoteFile] | None = None,
              root: Path | None = None, show_progress: bool = True) -> Path:
    """Download (once) and extract one split of the dataset; returns its class-folder root."""
    remote = (files or RPS_FILES)[split]
    base = root or cache_dir() / "rps"
    archive = download(remote, base, show_progress=show_progress)
    return extract(archive, base / f"{split}-{remote.sha256[:12]}")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()
