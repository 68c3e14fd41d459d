"""What an image is, for schemathesis: its generators for the document's image formats.

The document says where an image goes (`format: binary` files, `image/*` bodies, `format: byte` base64
strings) and the server accepts any decodable JPEG, PNG, GIF, BMP or WEBP of at least IMGCLF_MIN_IMAGE_SIDE
pixels a side there. A schema cannot say "decodable", so schemathesis' own generators draw random bytes (and
1x1 files) for these formats; these draw real images of every accepted kind instead. Nothing here accepts a
status: every check keeps its stock expectations. Loaded with SCHEMATHESIS_HOOKS=tests.service.schemathesis_hooks.
"""

from __future__ import annotations

import base64
import io

import schemathesis
from hypothesis import strategies as st
from PIL import Image
from schemathesis.transport.serialization import Binary


def _images() -> list[bytes]:
    out = []
    kinds = [("JPEG", "RGB"), ("PNG", "RGB"), ("PNG", "L"), ("GIF", "P"), ("BMP", "RGB"), ("WEBP", "RGB")]
    for n, (kind, mode) in enumerate(kinds):
        for side in (8, 33):
            buf = io.BytesIO()
            Image.new(mode, (side + n, side), (n * 40) % 256 if mode in ("L", "P") else (n * 40, 90, 200)).save(
                buf, format=kind)
            out.append(buf.getvalue())
    return out


IMAGES = _images()

schemathesis.openapi.format("binary", st.sampled_from(IMAGES).map(Binary))
schemathesis.openapi.format("byte", st.sampled_from([base64.b64encode(x).decode() for x in IMAGES]))
schemathesis.openapi.media_type("image/*", st.sampled_from(IMAGES),
                                aliases=["image/jpeg", "image/png", "image/gif", "image/bmp", "image/webp"])
