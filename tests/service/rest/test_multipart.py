"""The one-pass multipart reader agrees with Starlette's parser on every form it accepts."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.datastructures import UploadFile
from starlette.requests import Request

from service.rest.multipart import split_form

BOUNDARY = "b0undary-x"


def _form(parts: list[tuple[str, bool, bytes]], boundary: str = BOUNDARY) -> bytes:
    out = b""
    for name, upload, content in parts:
        filename = '; filename="f.jpg"' if upload else ""
        out += (f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"{filename}\r\n'
                f"Content-Type: application/octet-stream\r\n\r\n").encode() + content + b"\r\n"
    return out + f"--{boundary}--\r\n".encode()


def _starlette(body: bytes, boundary: str = BOUNDARY) -> list[tuple[str, bool, bytes]]:
    async def parse() -> list[tuple[str, bool, bytes]]:
        sent = False

        async def receive() -> dict[str, object]:
            nonlocal sent
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        scope = {"type": "http", "method": "POST", "path": "/", "query_string": b"",
                 "headers": [(b"content-type", f"multipart/form-data; boundary={boundary}".encode())]}
        form = await Request(scope, receive).form()
        out = []
        for name, value in form.multi_items():
            if isinstance(value, UploadFile):
                out.append((name, True, await value.read()))
            else:
                out.append((name, False, value.encode()))
        return out

    return asyncio.run(parse())


content = st.binary(max_size=300).filter(lambda b: f"--{BOUNDARY}".encode() not in b)
part = st.tuples(st.sampled_from(["file", "other", "x y"]), st.booleans(), content)


@settings(max_examples=150, deadline=None)
@given(st.lists(part, min_size=1, max_size=4))
def test_agrees_with_starlette(parts):
    body = _form(parts)
    assert split_form(body, BOUNDARY) == parts
    # Starlette decodes text fields, so their bytes are compared where they are plain text only
    if all(upload or (c.isascii() and c.decode().isprintable()) for _, upload, c in parts):
        assert _starlette(body) == parts


@pytest.mark.parametrize("body", [
    b"no delimiter at all",
    f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\n\r\nxx\r\n--{BOUNDARY}--\r\n".encode(),  # no disposition
    f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\nxx".encode(),  # never closed
])
def test_declines_what_it_does_not_understand(body):
    assert split_form(body, BOUNDARY) is None
