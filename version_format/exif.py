"""Which way up a camera's picture is (EXIF orientation), read alike by training and serving."""

from __future__ import annotations

import struct

from PIL import Image

# orientation tag (0x0112) -> the turn that shows the picture as its taker saw it: a phone held
# upright writes its sensor's landscape pixels and 6; held upside down, 3
UPRIGHT = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
           5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
           8: Image.Transpose.ROTATE_90}
ORIENTATION_TAG = 0x0112
# what Pillow's EXIF reader raises on a damaged block
_BROKEN = (OSError, SyntaxError, ValueError, TypeError, KeyError, IndexError, EOFError, struct.error)


def orientation(img: Image.Image) -> int:
    """The picture's EXIF orientation (2-8), or 1 when it is upright, has none, or its EXIF is unreadable.
    Call it after the pixels are read: a PNG may keep its EXIF block behind them."""
    if "exif" not in img.info:  # no EXIF block, nothing to parse: a webcam frame's case
        return 1
    try:
        value = img.getexif().get(ORIENTATION_TAG, 1)
    except _BROKEN:  # a damaged EXIF block is no reason to refuse a picture that decodes
        return 1
    return value if value in UPRIGHT else 1
