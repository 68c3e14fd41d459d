"""`python -m training.pose_version VERSION_DIR --data FOLDER`: a pose classifier added as a new version.

The classifier is trained on the hand stage's landmarks of `--data` (training/pose_step.py, as `imgclf train`
does), then the version is copied beside itself under a `.tmp-` name: its SavedModel loaded and saved again with
the `pose` signature added to its own, every other file of assets/ and assets.extra/ as it is, POSE_FILE
written, and the card given its `pose` section. The copy is published as the next version by an atomic
rename: the version it came from, which a server may be answering with, is never touched."""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from training.errors import DataError, ExportError
from training.pose_step import beside_the_cnn, run
from version_format.card import POSE_KEY, read_card, read_labels
from version_format.layout import CARD_FILE, POSE_FILE, TMP_PREFIX

# what export's publish writes afresh for the new version, not carried over from the old card
_REWRITTEN = ("name", "version", "labels", "input_size", "created", "tensorflow_version", "keras_version")


def add_pose(version_dir: str | Path, data: str, *, version: int | None = None) -> tuple[Path, dict[str, Any]]:
    """Publish `version_dir` again, with a pose classifier trained on `data`, as the next version (or
    `version`). -> (the new version's folder, its card's pose section). DataError when `version_dir` is not a
    version, or too few hands are found in `data` (nothing is written then)."""
    source = Path(version_dir)
    if not (source / "saved_model.pb").is_file():
        raise DataError(f"{source} is not an exported version (no saved_model.pb)")
    if not source.name.isdigit():
        raise DataError(f"{source} is not a version folder (<model root>/<name>/<integer>)")
    try:
        labels = read_labels(source)
    except ValueError as e:
        raise DataError(str(e)) from None
    card = read_card(source)
    if data == "synthetic":
        raise DataError("the embedded synthetic set is rendered in memory: pass the class folders it was "
                        "trained on, or retrain with `imgclf train --data synthetic`")
    outcome = run(data)
    if outcome.classifier is None:
        raise DataError(f"no pose classifier: {outcome.card['reason']}")
    missing = [label for label in outcome.classifier.labels if label not in labels]
    if missing:
        raise DataError(f"{data} has classes {missing} that {source} does not answer (its labels: {list(labels)})")

    import tensorflow as tf

    from training.export import attach_pose, publish, write_pose_file
    from version_format.model_io import POSE_SIGNATURE

    base = source.parent
    tmp = Path(tempfile.mkdtemp(prefix=TMP_PREFIX, dir=base))
    try:
        loaded = tf.saved_model.load(str(source))
        signatures = {name: fn for name, fn in loaded.signatures.items() if name != POSE_SIGNATURE}
        signatures[POSE_SIGNATURE] = attach_pose(loaded, outcome.classifier, labels)
        tf.saved_model.save(loaded, str(tmp), signatures=signatures)
        for folder in ("assets", "assets.extra"):
            for path in sorted((source / folder).rglob("*")):
                rel = path.relative_to(source)
                if path.is_file() and rel.as_posix() not in (CARD_FILE, POSE_FILE):
                    (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(path, tmp / rel)
        write_pose_file(tmp, outcome.classifier)
        new_card = {k: v for k, v in card.items() if k not in _REWRITTEN}
        section = {**outcome.card, "beside_the_cnn": beside_the_cnn(card),
                   "added": f"by `python -m training.pose_version` to version {source.name} (created "
                            f"{card.get('created', '?')}): its network and files unchanged, the pose classifier added"}
        new_card[POSE_KEY] = section
        path = publish(tmp, base, version, new_card, card.get("name", base.name), labels)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return path, section


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.pose_version",
                                     description="Add a pose classifier to an existing version, as a new version.")
    parser.add_argument("version_dir", type=Path, help="an exported version, e.g. models/rps/3")
    parser.add_argument("--data", required=True, help="the class folders it was trained on (or rps)")
    parser.add_argument("--version", type=int, default=None, help="the new version's number (default: next free)")
    args = parser.parse_args(argv)
    try:
        path, section = add_pose(args.version_dir, args.data, version=args.version)
    except (DataError, ExportError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {path}: pose classifier held out {section['held_out'].split(':')[0]}: "
          f"{section['held_out_accuracy_where_found']:.4f} where a hand was found, "
          f"{section['held_out_accuracy_end_to_end']:.4f} end to end; hand found in "
          f"{section['hand_found_rate']:.2%} of {section['pictures']} pictures", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
