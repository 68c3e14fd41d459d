"""multipart/form-data: what is wrong with a malformed form, and a one-pass reader for the hot route (parts
are slices of the body already read)."""

from __future__ import annotations

import re

from service.errors import InvalidInputError

_NAME = re.compile(rb'(?:^|;)\s*name="((?:[^"\\]|\\.)*)"', re.I)
_FILENAME = re.compile(rb';\s*filename\*?=', re.I)


def split_form(body: bytes, boundary: str) -> list[tuple[str, bool, bytes]] | None:
    """(field name, is a file upload, content) per part, in order; None when the body takes a form this
    reader does not handle (the caller then falls back to the general parser, which explains errors).

    Starlette's parser spools every upload through a temporary file and reads it back; this costs
    one slice per part.
    """
    delim = b"--" + boundary.encode("latin-1")
    start = body.find(delim)
    if start < 0:
        return None
    parts: list[tuple[str, bool, bytes]] = []
    pos = start + len(delim)
    while True:
        if body.startswith(b"--", pos):  # the closing delimiter
            return parts
        if not body.startswith(b"\r\n", pos):
            return None
        head_end = body.find(b"\r\n\r\n", pos + 2)
        if head_end < 0:
            return None
        end = body.find(b"\r\n" + delim, head_end + 4)
        if end < 0:
            return None
        disposition = None
        for line in body[pos + 2:head_end].split(b"\r\n"):
            if line[:20].lower() == b"content-disposition:":
                disposition = line[20:]
        if disposition is None or not disposition.strip().lower().startswith(b"form-data"):
            return None
        name = _NAME.search(disposition)
        if name is None:
            return None
        parts.append((name[1].replace(b'\\"', b'"').decode("utf-8", "replace"),
                      _FILENAME.search(disposition) is not None, body[head_end + 4:end]))
        pos = end + 2 + len(delim)


def check_multipart(content_type: str, body: bytes) -> str:
    """Say what is wrong with a malformed form, instead of "no field named 'file'"."""
    params = {k.strip().lower(): v.strip() for k, _, v in (p.partition("=") for p in content_type.split(";")[1:])}
    boundary = params.get("boundary", "").strip('"')
    if not boundary:
        raise InvalidInputError("multipart/form-data needs a boundary parameter in Content-Type")
    if not body.strip():
        raise InvalidInputError("empty multipart body: send a 'file' field")
    if b"--" + boundary.encode("latin-1") + b"--" not in body:
        raise InvalidInputError(f"multipart body is incomplete: no closing boundary '--{boundary}--' "
                                "(truncated upload?)")
    return boundary
