"""How much reading the EXIF orientation is worth: a version's real-like check stored as phones store photos.

    python scripts/orientation_check.py VERSION_DIR [--hands ../shared/data/rps-train] [--per-class 300]

Each real-like scene (training/realhands/reallike.py) is stored the way a camera stores it: pixels turned by the
inverse of orientation 3 (upside down), 6 or 8 (a phone held upright, either way), and that EXIF tag.
Scored through the version's own graph twice: on the bytes alone (the tag ignored, as TensorFlow's
decoder does) and on what the server hands the graph (service/images.check_image turns it upright).
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

STORED = {1: None, 3: Image.Transpose.ROTATE_180, 6: Image.Transpose.ROTATE_90, 8: Image.Transpose.ROTATE_270}


def as_phone_stores(data: bytes, tag: int) -> bytes:
    """The JPEG a camera would write for this upright picture with orientation `tag`."""
    from version_format.exif import ORIENTATION_TAG, UPRIGHT

    img = Image.open(io.BytesIO(data)).convert("RGB")
    turn = STORED[tag]
    stored = img if turn is None else img.transpose(turn)
    assert turn is None or stored.transpose(UPRIGHT[tag]).tobytes() == img.tobytes()
    exif = Image.Exif()
    exif[ORIENTATION_TAG] = tag
    buf = io.BytesIO()
    stored.save(buf, format="JPEG", quality=92, exif=exif)
    return buf.getvalue()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("version", type=Path)
    parser.add_argument("--hands", help="the CGI hands (default: the folder in the version's card)")
    parser.add_argument("--per-class", type=int, default=300)
    args = parser.parse_args()

    import tensorflow as tf

    from service.images import check_image
    from training.evaluate import reallike_images
    from version_format.layout import LABELS_FILE

    labels = tuple(x for x in (args.version / LABELS_FILE).read_text().splitlines() if x)
    images = reallike_images(args.version, labels, args.hands, args.per_class, seed=12345)
    truth = np.array([labels.index(n) for n in images.labels])[images.targets]
    graph = tf.saved_model.load(str(args.version)).signatures["serving_default"]

    def accuracy(batch: list[bytes]) -> float:
        scores = [graph(image_bytes=tf.constant(batch[i:i + 32]))["scores"].numpy() for i in range(0, len(batch), 32)]
        return float((np.concatenate(scores).argmax(1) == truth).mean() * 100)

    print(f"{args.version}: {len(truth)} real-like scenes, top-1 %")
    print("| orientation | tag ignored (the graph alone) | tag applied (imgclf) |")
    print("|---|---:|---:|")
    for tag in STORED:
        stored = [as_phone_stores(d, tag) for d in images.images]
        served = [check_image(d, max_pixels=10**8, min_side=8)[0] for d in stored]
        print(f"| {tag} | {accuracy(stored):.1f} | {accuracy(served):.1f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
