"""Hypothesis strategies for everything a client can send: hostile images and every API's bodies."""

from __future__ import annotations

import base64
import io
import struct
import zlib
from typing import Any

from hypothesis import strategies as st
from PIL import Image

# (format, modes Pillow can write in it); TIFF is a valid image the server must refuse
_FORMATS = {"JPEG": ["RGB", "L", "CMYK"], "PNG": ["RGB", "RGBA", "L", "LA", "P", "1", "I;16"],
            "GIF": ["P", "L", "RGB"], "BMP": ["RGB", "L", "P", "1"], "TIFF": ["RGB"], "WEBP": ["RGB", "RGBA"],
            "MPO": ["RGB"]}


def _render(fmt: str, mode: str, width: int, height: int, frames: int, orientation: int, seed: int) -> bytes:
    colours = [(seed * 37 + i * 91) % 256 for i in range(4)]
    img = Image.new("RGB", (width, height), tuple(colours[:3]))
    img.paste(tuple(colours[1:4]), (0, 0, max(1, width // 2), max(1, height // 2)))
    img = img.convert(mode) if mode != "I;16" else img.convert("L").convert("I;16")
    buf = io.BytesIO()
    kwargs: dict[str, Any] = {}
    if fmt in ("JPEG", "MPO", "WEBP") and orientation > 1:
        exif = Image.Exif()
        exif[0x0112] = orientation  # EXIF orientation
        kwargs["exif"] = exif
    if fmt in ("GIF", "WEBP", "MPO") and frames > 1:
        extra = [img.rotate(90 * i) for i in range(1, frames)]
        kwargs.update(save_all=True, append_images=extra, optimize=False)
    img.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def _huge_png(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height (the data is one tiny row): decoding would be a bomb."""
    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
            + chunk(b"IEND", b""))


@st.composite
def _valid_images(draw: st.DrawFn) -> bytes:
    fmt = draw(st.sampled_from(sorted(_FORMATS)))
    return _render(fmt, draw(st.sampled_from(_FORMATS[fmt])), draw(st.integers(1, 80)), draw(st.integers(1, 80)),
                   draw(st.integers(1, 3)), draw(st.integers(1, 8)), draw(st.integers(0, 255)))


@st.composite
def _mutated(draw: st.DrawFn, base: st.SearchStrategy[bytes]) -> bytes:
    data = bytearray(draw(base))
    how = draw(st.sampled_from(["truncate", "magic", "flip", "append"]))
    if how == "truncate":
        return bytes(data[:draw(st.integers(0, max(0, len(data) - 1)))])
    if how == "magic":
        data[:4] = draw(st.binary(min_size=4, max_size=4))
    elif how == "flip":
        for _ in range(draw(st.integers(1, 8))):
            i = draw(st.integers(0, len(data) - 1))
            data[i] ^= 1 << draw(st.integers(0, 7))
    else:
        data += draw(st.binary(max_size=256))
    return bytes(data)


def hostile_images() -> st.SearchStrategy[bytes]:
    """Valid images of every format and mode (animated GIF and WebP, MPO, CMYK, 16-bit, EXIF-rotated), broken ones,
    huge dimensions in the header, and noise."""
    valid = _valid_images()
    return st.one_of(valid, _mutated(valid),
                     st.builds(_huge_png, st.integers(1, 2**31 - 1), st.integers(1, 2**31 - 1)),
                     st.binary(max_size=512))


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# -- bodies --------------------------------------------------------------------------------
_json_leaf = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=20))
_keys = st.sampled_from(["instances", "inputs", "signature_name", "b64", "image_bytes", "name", "shape",
                         "datatype", "data", "id", "parameters", "outputs", "classification", "x"])
random_json = st.recursive(_json_leaf, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(_keys, inner, max_size=4)), max_leaves=12)


@st.composite
def tf_serving_bodies(draw: st.DrawFn) -> bytes:
    import json

    images = draw(st.lists(hostile_images(), min_size=0, max_size=3))
    wrap = draw(st.sampled_from(["b64", "named", "bad-b64", "raw"]))
    values: list[Any] = [{"b64": b64(i)} if wrap == "b64" else {"image_bytes": {"b64": b64(i)}} if wrap == "named"
                         else {"b64": b64(i)[:-1] + "!"} if wrap == "bad-b64" else b64(i) for i in images]
    key = draw(st.sampled_from(["instances", "inputs", "both", "none"]))
    doc: Any = {}
    if key in ("instances", "both"):
        doc["instances"] = values
    if key in ("inputs", "both"):
        doc["inputs"] = draw(st.sampled_from([values, {"image_bytes": values}, values[0] if values else {}]))
    if draw(st.booleans()):
        doc["signature_name"] = draw(st.one_of(st.sampled_from(["", "serving_default", "labels"]), _json_leaf))
    doc = draw(st.one_of(st.just(doc), random_json)) if draw(st.integers(0, 4)) == 0 else doc
    text = json.dumps(doc).encode()
    return draw(st.one_of(st.just(text), st.just(text[:len(text) // 2]), st.just(b"9" * 5000),
                          st.just(b"[" * 100_000))) if draw(st.integers(0, 6)) == 0 else text


@st.composite
def v2_bodies(draw: st.DrawFn) -> bytes:
    import json

    images = draw(st.lists(hostile_images(), min_size=0, max_size=3))
    tensor: dict[str, Any] = {
        "name": draw(st.sampled_from(["image_bytes", "images", ""])),
        "shape": draw(st.one_of(st.just([len(images)]), st.lists(st.integers(-2, 2**40), max_size=3))),
        "datatype": draw(st.sampled_from(["BYTES", "FP32", "bytes"])),
        "data": draw(st.sampled_from([[b64(i) for i in images], [[b64(i)] for i in images], [1, 2]])),
    }
    doc: dict[str, Any] = {"inputs": draw(st.sampled_from([[tensor], [tensor, tensor], [], tensor]))}
    if draw(st.booleans()):
        doc["outputs"] = [{"name": draw(st.sampled_from(["scores", "label", "x"])),
                           "parameters": {"classification": draw(_json_leaf)}}]
    if draw(st.booleans()):
        doc["id"] = draw(_json_leaf)
    if draw(st.integers(0, 4)) == 0:
        return json.dumps(draw(random_json)).encode()
    return json.dumps(doc).encode()


@st.composite
def multipart_bodies(draw: st.DrawFn) -> tuple[bytes, str]:
    """(body, content type): fields named right or wrong, files or text, cut short or unclosed."""
    boundary = draw(st.text("abcdefXYZ0123456789-_", min_size=1, max_size=30))
    parts = []
    for _ in range(draw(st.integers(0, 3))):
        name = draw(st.sampled_from(["file", "file", "File", "image", ""]))
        disposition = f'form-data; name="{name}"'
        if draw(st.booleans()):
            disposition += '; filename="x.jpg"'
        parts.append(f"--{boundary}\r\ncontent-disposition: {disposition}\r\ncontent-type: image/jpeg\r\n\r\n"
                     .encode() + draw(hostile_images()) + b"\r\n")
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    ending = draw(st.sampled_from(["whole", "whole", "unclosed", "cut"]))
    if ending == "unclosed":
        body = b"".join(parts)
    elif ending == "cut":
        body = body[:draw(st.integers(0, len(body)))]
    ctype = draw(st.sampled_from([f"multipart/form-data; boundary={boundary}", "multipart/form-data",
                                  f'multipart/form-data; boundary="{boundary}"', "multipart/mixed; boundary=x"]))
    return body, ctype
