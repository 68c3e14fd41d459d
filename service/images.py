"""Cheap checks on encoded images before they reach a model (format, size, truncation, bombs), and Pillow decoding."""

from __future__ import annotations

import io
import struct
import warnings
from collections.abc import Sequence

import numpy as np
from PIL import Image, UnidentifiedImageError

from service.errors import InvalidInputError
from version_format.exif import UPRIGHT, orientation
from version_format.model_io import IMAGE_SIZE

GRAPH_FORMATS = ("JPEG", "PNG", "GIF", "BMP")  # what the graph's tf.io.decode_image reads
FORMATS = (*GRAPH_FORMATS, "WEBP")  # accepted: WebP is what Android apps and browsers' canvases often send
# what Pillow's decoders raise on corrupt or cut-short data: beyond OSError, its GIF frame walker
# lets IndexError and struct.error through (found by the long fuzz run)
CORRUPT = (OSError, SyntaxError, ValueError, IndexError, EOFError, struct.error)


def _format(img: Image.Image) -> str | None:
    """The image's format as a decoder sees it. Pillow calls a JPEG that carries more pictures (a phone's
    preview or depth map: the MPF extension) MPO; every JPEG decoder, TensorFlow's too, reads its first."""
    return "JPEG" if img.format == "MPO" else img.format


def _open_checked(data: bytes, *, max_pixels: int, min_side: int, where: str) -> Image.Image:
    """Open from the header alone and refuse what must never be decoded (format, bombs, tiny)."""
    if not data:
        raise InvalidInputError(f"{where}empty image")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise InvalidInputError(f"{where}image dimensions are above the limit of {max_pixels:,} "
                                "pixels") from None
    except UnidentifiedImageError:
        raise InvalidInputError(f"{where}not a readable image; send JPEG, PNG, GIF, BMP or WEBP bytes") from None
    except OSError as exc:
        raise InvalidInputError(f"{where}not a readable image ({exc})") from None
    width, height = img.size
    try:
        if _format(img) not in FORMATS:
            raise InvalidInputError(f"{where}{img.format} images are not supported; "
                                    f"send {', '.join(FORMATS)}")
        if width * height > max_pixels:
            raise InvalidInputError(f"{where}image is {width}x{height} = {width * height:,} pixels, "
                                    f"above the limit of {max_pixels:,}")
        if min(width, height) < min_side:
            raise InvalidInputError(f"{where}image is {width}x{height}; both sides must be at least "
                                    f"{min_side} pixels")
    except InvalidInputError:
        img.close()
        raise
    return img


def header_pixels(images: Sequence[bytes], *, max_pixels: int, min_side: int) -> list[int]:
    """width x height of each image from its header alone, with the per-image refusals."""
    sizes = []
    for i, data in enumerate(images):
        with _open_checked(data, max_pixels=max_pixels, min_side=min_side,
                           where=f"image {i + 1}: " if len(images) > 1 else "") as img:
            sizes.append(img.size[0] * img.size[1])
    return sizes


def check_image(data: bytes, *, max_pixels: int, min_side: int, index: int = 0,
                size: int = IMAGE_SIZE) -> tuple[bytes, int]:
    """Raise InvalidInputError with a reason a client can act on; return (bytes for the model, pixels).

    The header gives the size without decoding, so a 20000x20000 bomb costs nothing; a
    reduced-size decode (JPEG draft mode) then proves the data is complete. Only the first frame
    of an animation is ever decoded, here and in the model. What the graph would read wrongly or
    not at all (a picture with an EXIF orientation, which its decoder ignores; WebP; CMYK JPEGs) goes to the model
    as the `size` x `size` PNG of `decode_checked`'s pixels: the graph's resize of it is the identity,
    and a full-size PNG of a 12 MP photo would take over a second to write.
    """
    where = f"image {index}: " if index else ""
    img = _open_checked(data, max_pixels=max_pixels, min_side=min_side, where=where)
    with img:
        width, height = img.size
        # known from the header, before any decode (a JPEG's EXIF block comes before its pixels); a CMYK
        # JPEG, which TensorFlow cannot read, must not be drafted either: 300x300 would reach it as 38x38
        kind = _format(img)
        via_pillow = kind not in GRAPH_FORMATS or img.mode == "CMYK" or (kind == "JPEG" and orientation(img) != 1)
        if not via_pillow:
            try:
                if kind == "JPEG":  # drafted: from here on, the JPEG is never decoded here again
                    img.draft("RGB", (max(1, width // 8), max(1, height // 8)))
                img.load()
            except CORRUPT as exc:
                raise InvalidInputError(f"{where}image data is corrupt or truncated ({exc})") from None
            if orientation(img) == 1:  # a PNG's EXIF block may come behind its pixels: known once read
                if (kind == "BMP" and img.mode in ("P", "1")) or (kind == "GIF" and _animated_or_broken(img)):
                    return _first_frame_png(img, where), width * height
                return data, width * height
        pixels = _pixels(img, size, where)  # the image opened above, read once
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG", compress_level=1)
    return buf.getvalue(), width * height


def _animated_or_broken(gif: Image.Image) -> bool:
    """Whether a GIF has more than its first frame, or something after it that cannot be read
    (Pillow raises IndexError or struct.error on a second frame cut short). Either way TensorFlow would decode
    or choke on the rest, so only the first frame, complete by now, goes to the model."""
    try:
        return bool(getattr(gif, "is_animated", False))
    except CORRUPT:
        return True


def _first_frame_png(img: Image.Image, where: str) -> bytes:
    # TensorFlow reads palette BMPs as grey indices, fails on 1-bit BMPs, and decodes every frame of a
    # GIF before keeping the first (60 frames of 16 MP: 2.9 GB): the model gets the first frame alone,
    # as an RGB PNG
    buf = io.BytesIO()
    try:
        img.seek(0)
        img.convert("RGB").save(buf, format="PNG", compress_level=1)  # fast: it only crosses memory
    except CORRUPT as exc:
        raise InvalidInputError(f"{where}image data is corrupt or truncated ({exc})") from None
    return buf.getvalue()


def decode_checked(data: bytes, *, max_pixels: int, min_side: int, index: int = 0,
                   size: int = IMAGE_SIZE) -> tuple[np.ndarray, int]:
    """The same checks as `check_image`, then the serving graph's preprocessing in Pillow:
    (uint8 [size, size, 3], pixels).

    Like the graph: first frame, RGB, bilinear resize with antialiasing (Pillow's BILINEAR filter
    widens its kernel when shrinking, as TensorFlow's antialias=True does) and no draft decoding.
    Unlike the graph's decoder, an EXIF orientation is applied (after the resize: the output is square,
    so the turn commutes with it, and turning 150x150 pixels costs nothing).
    JPEG pixels differ by a few levels at most: Pillow's libjpeg-turbo runs the accurate integer
    DCT, TensorFlow's decoder the fast one (tests/service/test_images.py bounds the difference).
    """
    where = f"image {index}: " if index else ""
    img = _open_checked(data, max_pixels=max_pixels, min_side=min_side, where=where)
    with img:
        width, height = img.size
        pixels = _pixels(img, size, where)
    return pixels, width * height


def _pixels(source: Image.Image, size: int, where: str) -> np.ndarray:
    """`decode_checked`'s preprocessing on an open, undrafted image."""
    try:
        source.seek(0)
        img = source
        if img.mode.startswith("I"):  # 16-bit grey PNG: keep the high byte, as TF's rescale does
            img = Image.fromarray((np.asarray(img, dtype=np.uint32) >> 8).astype(np.uint8))
        rgb = img if img.mode == "RGB" else img.convert("RGB")  # convert() copies even an RGB image
        if rgb.size != (size, size):
            rgb = rgb.resize((size, size), Image.Resampling.BILINEAR)
        turn = orientation(source)  # after the decode: a PNG may keep its EXIF block behind the pixels
        if turn != 1:
            rgb = rgb.transpose(UPRIGHT[turn])
        return np.asarray(rgb)  # before the file closes: an image not resized is still `source`
    except CORRUPT as exc:
        raise InvalidInputError(f"{where}image data is corrupt or truncated ({exc})") from None


def upright_picture(data: bytes, *, max_pixels: int, min_side: int, max_side: int, index: int = 0,
                    ) -> tuple[Image.Image, float, int]:
    """The same checks as `check_image`, then the first frame as an upright RGB picture whose long side is at
    most `max_side`: (picture, the original's pixels per picture pixel, the original's pixel count).

    For the hand stage, whose models see 192 and 224 pixels: a 12 MP photo shrinks first (a JPEG decodes at
    1/2, 1/4 or 1/8 of its size straight away), and what it finds is scaled back to the upright original."""
    where = f"image {index}: " if index else ""
    img = _open_checked(data, max_pixels=max_pixels, min_side=min_side, where=where)
    with img:
        width, height = img.size
        try:
            if _format(img) == "JPEG" and max(width, height) > max_side and img.mode != "CMYK":
                shrink = max_side / max(width, height)  # draft keeps at least the size asked for
                img.draft("RGB", (max(1, round(width * shrink)), max(1, round(height * shrink))))
            img.seek(0)
            frame: Image.Image = img
            if frame.mode.startswith("I"):  # 16-bit grey PNG: the high byte, as `_pixels` does
                frame = Image.fromarray((np.asarray(frame, dtype=np.uint32) >> 8).astype(np.uint8))
            rgb = frame.convert("RGB")  # a copy: the picture outlives the file
            if max(rgb.size) > max_side:
                rgb.thumbnail((max_side, max_side), Image.Resampling.BILINEAR)
            turn = orientation(img)
            if turn != 1:
                rgb = rgb.transpose(UPRIGHT[turn])
        except CORRUPT as exc:
            raise InvalidInputError(f"{where}image data is corrupt or truncated ({exc})") from None
    return rgb, max(width, height) / max(rgb.size), width * height
