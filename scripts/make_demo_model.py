"""Pack an exported version as the demo shipped in the package (service/demo_model/rps-demo.tar.gz).

    python scripts/make_demo_model.py models/rps/3 --command "imgclf train --data rps --seed 0"

The card gains a `demo` section: the data and its licence, the command that rebuilds the version
and the figures measured on it. A version derived from the demo (say, the demo with a pose classifier
added by `python -m training.pose_version`) keeps the demo section's figures and note, to which the
ones given here are added. The archive is reproducible for the same input (sorted entries, fixed
times and owners), and refuses to pass 16 MB.
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import sys
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET = ROOT / "service" / "demo_model" / "rps-demo.tar.gz"
LIMIT = 16 * 1024 * 1024
DATA = ("Rock Paper Scissors dataset by Laurence Moroney (laurencemoroney.com, 2019), training split: "
        "2,520 CGI hands on white, CC BY 2.0 (https://creativecommons.org/licenses/by/2.0/); "
        "backgrounds from scikit-image and matplotlib sample images (public domain / CC0) and procedural scenes")


def pack(version_dir: Path, command: str, figures: dict[str, object], target: Path = TARGET,
         note: str = "") -> Path:
    card_path = version_dir / "assets.extra" / "model_card.json"
    card = json.loads(card_path.read_text())
    before = card.get("demo", {})
    note = note or before.get("note", "") or _old_note(before.get("provenance", ""))
    card["demo"] = {
        "data": DATA,
        "provenance": f"trained by `{command}`; {DATA.split(':')[0]} (CC BY 2.0)" + (f"; {note}" if note else ""),
        "command": command,
        "figures": {**before.get("figures", {}), **figures},
        **({"note": note} if note else {}),
    }
    card["data_source"] = "rps-train (the talk's training split, 2,520 images)"
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(p for p in version_dir.rglob("*") if "runs" not in p.relative_to(version_dir).parts):
            rel = path.relative_to(version_dir).as_posix()
            info = tarfile.TarInfo(rel)
            info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
            if path.is_dir():
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
                continue
            data = json.dumps(card, indent=2).encode() + b"\n" if path == card_path else path.read_bytes()
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    packed = gzip.compress(buf.getvalue(), compresslevel=9, mtime=0)
    if len(packed) > LIMIT:
        raise SystemExit(f"the archive is {len(packed) / 2**20:.1f} MB, over the 16 MB limit")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(packed)
    return target


def _old_note(provenance: str) -> str:
    """The note of a demo section written before the note had a key of its own: after the licence."""
    return provenance.split("(CC BY 2.0); ", 1)[1] if "(CC BY 2.0); " in provenance else ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("version_dir", type=Path)
    parser.add_argument("--command", required=True, help="The exact command that trained the version")
    parser.add_argument("--figure", action="append", default=[], metavar="NAME=VALUE",
                        help="A measured figure to record (repeatable)")
    parser.add_argument("--note", default="", help="A sentence appended to the provenance the page shows, "
                        "e.g. what a version trained on every hand is expected to score")
    args = parser.parse_args()
    if not (args.version_dir / "saved_model.pb").is_file():
        sys.exit(f"{args.version_dir} is not an exported version")
    figures = dict(f.split("=", 1) for f in args.figure)
    path = pack(args.version_dir, args.command, figures, note=args.note)
    print(f"wrote {path} ({path.stat().st_size / 2**20:.2f} MB)")


if __name__ == "__main__":
    main()
