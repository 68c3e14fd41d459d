"""Bad requests get a clear 4xx {"error": ...} over every REST API, and the server stays healthy."""

from __future__ import annotations

import base64
import http.client
import io
import json
import struct
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from PIL import Image

from service.backends.local import LocalBackend


def _error(r: httpx.Response, status: int, *fragments: str) -> str:
    """The reply is `status` with a JSON {"error": "<text>"} naming every fragment; returns the text."""
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/json"), r.headers
    body = r.json()
    assert set(body) == {"error"}, body
    assert isinstance(body["error"], str) and body["error"].strip(), body
    for fragment in fragments:
        assert fragment.lower() in body["error"].lower(), (fragment, body["error"])
    return str(body["error"])


def _png(size: tuple[int, int] = (64, 64), mode: str = "RGB") -> bytes:
    colour: Any = {"L": 128, "1": 1, "RGBA": (200, 120, 90, 128)}.get(mode, (200, 120, 90))
    buf = io.BytesIO()
    Image.new(mode, size, colour).save(buf, format="PNG")
    return buf.getvalue()


def _bomb_png(side: int) -> bytes:
    """A valid side x side 1-bit PNG of zeros, built row by row: ~50 KB on disk for 20000."""

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    row = b"\x00" * (1 + (side + 7) // 8)  # filter byte + packed bits
    comp = zlib.compressobj(9)
    idat = b"".join(comp.compress(row) for _ in range(side)) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)  # 1-bit grayscale, no interlace
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def _rss_bytes() -> int:
    """Resident memory of this process, which also runs the server (VmRSS is in kB)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _healthy(url: str, jpeg: bytes) -> None:
    assert httpx.get(f"{url}/healthz").status_code == 200
    r = httpx.post(f"{url}/predict", files={"file": ("ok.jpg", jpeg, "image/jpeg")})
    assert r.status_code == 200, r.text
    assert len(r.json()["predictions"]) == 1


@pytest.fixture(autouse=True)
def stays_healthy(serving, sample_jpeg) -> Iterator[None]:
    """After every bad request the shared server is still live and still classifies."""
    yield
    _healthy(serving.rest_url, sample_jpeg)


def _predict(serving, data: bytes, content_type: str = "image/jpeg", **params: Any) -> httpx.Response:
    return httpx.post(f"{serving.rest_url}/predict", content=data, params=params,
                      headers={"content-type": content_type})


# -- images ---------------------------------------------------------------------------------

def test_empty_body(serving):
    _error(_predict(serving, b""), 400, "empty")


def test_empty_file_field(serving):
    r = httpx.post(f"{serving.rest_url}/predict", files={"file": ("empty.jpg", b"", "image/jpeg")})
    _error(r, 400, "empty")


def test_not_an_image(serving):
    _error(_predict(serving, b"this is plain text, not a photo" * 10), 400, "not a readable image")


def test_truncated_jpeg(serving, sample_jpeg):
    _error(_predict(serving, sample_jpeg[: len(sample_jpeg) // 2]), 400, "truncated")


def test_one_of_several_images_bad_names_its_index(serving, sample_jpeg):
    files = [("file", ("a.jpg", sample_jpeg, "image/jpeg")), ("file", ("b.jpg", b"junk", "image/jpeg"))]
    _error(httpx.post(f"{serving.rest_url}/predict", files=files), 400, "image 2")


def test_one_pixel_image_is_below_min_side(serving):
    _error(_predict(serving, _png((1, 1)), "image/png"), 400, "1x1", "at least 8")


@pytest.mark.parametrize("mode", ["L", "RGBA", "1", "P"])
def test_grayscale_rgba_palette_pngs_work(serving, mode):
    img = Image.new("RGB", (40, 30), (200, 120, 90)).convert(mode)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    r = _predict(serving, buf.getvalue(), "image/png")
    assert r.status_code == 200, r.text
    (pred,) = r.json()["predictions"]
    assert len(pred["scores"]) == 3
    assert abs(sum(pred["scores"].values()) - 1) < 1e-4


def test_unsupported_image_format(serving):
    buf = io.BytesIO()
    Image.new("RGB", (32, 32)).save(buf, format="TIFF")
    _error(_predict(serving, buf.getvalue(), "image/tiff"), 400, "TIFF", "not supported")


@pytest.fixture(scope="module")
def bomb() -> bytes:
    data = _bomb_png(20_000)
    assert len(data) < 200_000  # cheap to send, 400 million pixels to decode
    return data


def test_decompression_bomb_is_rejected_quickly_without_memory(serving, bomb):
    before = _rss_bytes()
    started = time.monotonic()
    r = _predict(serving, bomb, "image/png")
    elapsed = time.monotonic() - started
    _error(r, 400, "pixels")
    assert elapsed < 5, f"bomb took {elapsed:.1f} s to reject"
    # a decode would need 400 MB (1 byte per pixel in mode "1") or 1.2 GB as RGB
    assert _rss_bytes() - before < 100 * 1024 * 1024


def test_bomb_over_the_tf_serving_route_too(serving, bomb):
    r = httpx.post(f"{serving.rest_url}/v1/models/rps:predict", json={"instances": [{"b64": _b64(bomb)}]})
    _error(r, 400, "pixels")


def test_image_over_the_configured_pixel_limit(serving):
    # 7000 x 7000 = 49 M pixels: under Pillow's own bomb threshold, over the server's 16 M
    _error(_predict(serving, _bomb_png(7000), "image/png"), 400, "7000x7000", "16,000,000")


def test_version_and_label_together_must_agree(serving, sample_jpeg):
    """Both pins name one version (a request the document allows): served when they agree, 404 when not."""
    r = httpx.post(f"{serving.rest_url}/predict", params={"version": 1, "label": "stable"}, content=sample_jpeg,
                   headers={"content-type": "image/jpeg"})
    assert r.status_code == 200 and r.json()["model_version"] == 1, r.text
    r = httpx.post(f"{serving.rest_url}/predict", params={"version": 2, "label": "stable"}, content=sample_jpeg,
                   headers={"content-type": "image/jpeg"})
    _error(r, 404, "'stable'", "is version 1, not 2")


# -- request shape ----------------------------------------------------------------------------

def test_wrong_multipart_field_name(serving, sample_jpeg):
    r = httpx.post(f"{serving.rest_url}/predict", files={"image": ("a.jpg", sample_jpeg, "image/jpeg")})
    _error(r, 400, "'file'", "image")


def test_file_field_as_text(serving):
    r = httpx.post(f"{serving.rest_url}/predict", data={"file": "not an upload"},
                   files={"other": ("x.bin", b"x")})
    _error(r, 400, "'file'")


def test_unsupported_content_type(serving, sample_jpeg):
    _error(_predict(serving, sample_jpeg, "text/plain"), 400, "content type")


def test_too_many_images(serving):
    small = _png((16, 16))
    limit = serving.settings.max_images_per_request
    files = [("file", (f"{i}.png", small, "image/png")) for i in range(limit + 1)]
    _error(httpx.post(f"{serving.rest_url}/predict", files=files), 413, str(limit + 1), str(limit))
    body = {"instances": [{"b64": _b64(small)}] * (limit + 1)}
    _error(httpx.post(f"{serving.rest_url}/v1/models/rps:predict", json=body), 413, str(limit))


def test_unknown_version_and_label(serving, sample_jpeg):
    _error(_predict(serving, sample_jpeg, version=99), 404, "version 99")
    _error(_predict(serving, sample_jpeg, label="nope"), 404, "nope")


@pytest.mark.parametrize("version", ["abc", "0", "-1", "1.5"])
def test_non_integer_or_zero_version_query(serving, sample_jpeg, version):
    _error(_predict(serving, sample_jpeg, version=version), 400, "version")


# -- body size limit (a server of its own: the limit is a setting) -------------------------------

def test_body_over_the_limit_gets_413(start_server, trained_model_root, sample_jpeg):
    limit = 100_000
    assert len(sample_jpeg) < limit // 2
    srv = start_server(trained_model_root, max_body_bytes=limit)
    big = b"\xff" * (limit * 3)

    # declared up front: refused from the Content-Length alone
    r = httpx.post(f"{srv.rest_url}/predict", files={"file": ("big.jpg", big, "image/jpeg")})
    _error(r, 413, "limit")
    r = httpx.post(f"{srv.rest_url}/v1/models/rps:predict", content=big,
                   headers={"content-type": "application/json"})
    _error(r, 413, "limit")

    # streamed without a length (chunked): refused once the count passes the limit
    def chunks() -> Iterator[bytes]:
        for _ in range(30):
            yield b"\xff" * 10_000

    for path, ctype in [("/predict", "image/jpeg"), ("/v1/models/rps:predict", "application/json"),
                        ("/v2/models/rps/infer", "application/json")]:
        r = httpx.post(f"{srv.rest_url}{path}", content=chunks(), headers={"content-type": ctype})
        assert "content-length" not in r.request.headers
        _error(r, 413, "limit")

    # a body under the limit, also streamed, still works on the same server
    r = httpx.post(f"{srv.rest_url}/predict", content=iter([sample_jpeg]), headers={"content-type": "image/jpeg"})
    assert r.status_code == 200, r.text
    _healthy(srv.rest_url, sample_jpeg)


# -- names and paths --------------------------------------------------------------------------

def test_unknown_model_name(serving, sample_jpeg):
    body = {"instances": [{"b64": _b64(sample_jpeg)}]}
    _error(httpx.post(f"{serving.rest_url}/v1/models/other:predict", json=body), 404, "other")
    _error(httpx.get(f"{serving.rest_url}/v1/models/other"), 404, "other")
    _error(httpx.get(f"{serving.rest_url}/v1/models/other/metadata"), 404, "other")
    v2 = {"inputs": [{"name": "image_bytes", "shape": [1], "datatype": "BYTES", "data": [_b64(sample_jpeg)]}]}
    _error(httpx.post(f"{serving.rest_url}/v2/models/other/infer", json=v2), 404, "other")
    _error(httpx.get(f"{serving.rest_url}/v2/models/other"), 404, "other")
    _error(httpx.get(f"{serving.rest_url}/v2/models/other/ready"), 404, "other")


def test_tf_serving_version_must_be_an_integer(serving, sample_jpeg):
    # TF Serving's route pattern only takes digits, so this path matches no route: 404
    body = {"instances": [{"b64": _b64(sample_jpeg)}]}
    _error(httpx.post(f"{serving.rest_url}/v1/models/rps/versions/abc:predict", json=body), 404)
    _error(httpx.get(f"{serving.rest_url}/v1/models/rps/versions/abc"), 404)
    _error(httpx.post(f"{serving.rest_url}/v1/models/rps/versions/99:predict", json=body), 404, "99")
    _error(httpx.post(f"{serving.rest_url}/v1/models/rps/labels/nope:predict", json=body), 404, "nope")


def test_tf_serving_path_is_decoded_once(serving, sample_jpeg):
    # %2572 is "%72" once decoded, not "r": the model "%72ps" does not exist
    body = {"instances": [{"b64": _b64(sample_jpeg)}]}
    _error(httpx.post(f"{serving.rest_url}/v1/models/%2572ps:predict", json=body), 404, "%72ps")
    _error(httpx.get(f"{serving.rest_url}/v1/models/rps/labels/%2573table"), 404, "%73table")
    # while a plainly encoded ':' is just the verb separator
    r = httpx.post(f"{serving.rest_url}/v1/models/rps%3Apredict", json=body)
    assert r.status_code == 200, r.text


class _SpyBackend(LocalBackend):
    """A real local backend that records every model name it is asked to touch."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.names: list[str] = []

    def discover(self, name: str) -> dict[int, str]:
        self.names.append(name)
        return super().discover(name)

    def load(self, name: str, version: int) -> Any:
        self.names.append(name)
        return super().load(name, version)


def _raw_request(url: str, method: str, path: str, body: bytes = b"") -> tuple[int, dict[str, Any]]:
    """http.client sends the path byte for byte (httpx would remove the dot segments)."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=10)
    try:
        conn.request(method, path, body=body or None, headers={"content-type": "application/json"})
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())
    finally:
        conn.close()


_TRAVERSALS = ["..", "../rps", "..%2Frps", "..%2F..%2Fetc%2Fpasswd", "%2E%2E", "%2e%2e%2f%2e%2e%2fetc",
               "rps%2F..%2F..", "/etc/passwd", "rps/../../etc"]


def test_path_traversal_in_model_name(start_server, tmp_path, sample_jpeg):
    secret = tmp_path / "etc"
    secret.mkdir()
    (secret / "passwd").write_text("root:x:0:0")
    spy = _SpyBackend(tmp_path / "models")
    srv = start_server(tmp_path / "models", spy)
    predict = json.dumps({"instances": [{"b64": _b64(sample_jpeg)}]}).encode()
    v2 = json.dumps({"inputs": [{"name": "image_bytes", "shape": [1], "datatype": "BYTES",
                                 "data": [_b64(sample_jpeg)]}]}).encode()
    for name in _TRAVERSALS:
        for method, path, body in [("POST", f"/v1/models/{name}:predict", predict),
                                   ("GET", f"/v1/models/{name}", b""),
                                   ("GET", f"/v1/models/{name}/metadata", b""),
                                   ("GET", f"/v2/models/{name}", b""),
                                   ("GET", f"/v2/models/{name}/ready", b""),
                                   ("POST", f"/v2/models/{name}/infer", v2)]:
            status, reply = _raw_request(srv.rest_url, method, path, body)
            assert status in (400, 404), (method, path, status, reply)
            assert "error" in reply and "root:x" not in json.dumps(reply)
    assert set(spy.names) <= {"rps"}, spy.names  # only the configured name ever reached the disk


# -- TensorFlow Serving JSON ------------------------------------------------------------------

@pytest.mark.parametrize(("body", "fragments"), [
    (b"{not json", ["JSON"]),
    (b"\xff\xfe", ["JSON"]),
    (b"[1, 2]", ["object"]),
    (b'{"instances": [], "inputs": []}', ["instances", "inputs"]),
    (b'{"signature_name": "serving_default"}', ["instances", "inputs"]),
    (b'{"instances": []}', ["instances"]),
    (b'{"instances": "abc"}', ["instances"]),
    (b'{"instances": [{"b64": "not base64!!"}]}', ["base64"]),
    (b'{"instances": [{"b64": 5}]}', ["b64"]),
    (b'{"instances": ["raw string"]}', ["b64"]),
    (b'{"instances": [{"pixels": {"b64": "AAAA"}}]}', ["image_bytes", "pixels"]),
    (b'{"inputs": {"pixels": [{"b64": "AAAA"}]}}', ["image_bytes", "pixels"]),
    (b'{"inputs": []}', ["empty"]),
    (b'{"inputs": {"image_bytes": [{"b64": "%%%"}]}}', ["base64"]),
    (b'{"signature_name": "nope", "instances": [{"b64": "AAAA"}]}', ["nope"]),
    (b"[" * 100_000, ["JSON", "deep"]),
])
def test_malformed_tf_serving_json(serving, body, fragments):
    r = httpx.post(f"{serving.rest_url}/v1/models/rps:predict", content=body,
                   headers={"content-type": "application/json"})
    _error(r, 400, *fragments)


def test_tf_serving_undecodable_image(serving):
    body = {"instances": [{"b64": _b64(b"GIF89a but not really")}]}
    _error(httpx.post(f"{serving.rest_url}/v1/models/rps:predict", json=body), 400, "image")


def test_tf_serving_classify_and_regress_are_refused(serving):
    body = {"examples": [{"x": 1}]}
    _error(httpx.post(f"{serving.rest_url}/v1/models/rps:classify", json=body), 400, "classify")
    _error(httpx.post(f"{serving.rest_url}/v1/models/rps:regress", json=body), 400, "regress")


# -- KServe V2 JSON ---------------------------------------------------------------------------

def _v2(**tensor: Any) -> dict[str, Any]:
    base = {"name": "image_bytes", "shape": [1], "datatype": "BYTES", "data": ["AAAA"]}
    return {"inputs": [{**base, **tensor}]}


@pytest.mark.parametrize(("body", "fragments"), [
    (b"{not json", ["malformed"]),
    (b"{}", ["inputs"]),
    (b'{"inputs": []}', ["inputs"]),
    (json.dumps(_v2(datatype="FP32", data=[0.5])).encode(), ["BYTES"]),
    (json.dumps(_v2(name="pixels")).encode(), ["image_bytes"]),
    (b'{"inputs": [{"name": "image_bytes", "shape": [1], "datatype": "BYTES", "data": '
     + b"[" * 5000 + b"]" * 5000 + b"}]}", ["recursion"]),
    (json.dumps(_v2(shape=[2])).encode(), ["shape", "[2]"]),
    (json.dumps(_v2(data=["not base64!!"])).encode(), ["base64"]),
    (json.dumps(_v2(data=[7])).encode(), ["base64"]),
    (json.dumps({"inputs": [{"name": "image_bytes", "datatype": "BYTES", "data": ["AAAA"]}]}).encode(),
     ["shape"]),
])
def test_malformed_v2_json(serving, body, fragments):
    r = httpx.post(f"{serving.rest_url}/v2/models/rps/infer", content=body,
                   headers={"content-type": "application/json"})
    _error(r, 400, *fragments)


def test_v2_unknown_output_and_bad_version(serving, sample_jpeg):
    good = _v2(data=[_b64(sample_jpeg)])
    r = httpx.post(f"{serving.rest_url}/v2/models/rps/infer", json={**good, "outputs": [{"name": "logits"}]})
    _error(r, 400, "logits")
    for k in ["2", None, 1.5, -1, True, [2]]:
        body = {**good, "outputs": [{"name": "scores", "parameters": {"classification": k}}]}
        _error(httpx.post(f"{serving.rest_url}/v2/models/rps/infer", json=body), 400, "classification")
    _error(httpx.post(f"{serving.rest_url}/v2/models/rps/versions/99/infer", json=good), 404, "99")
    _error(httpx.post(f"{serving.rest_url}/v2/models/rps/versions/abc/infer", json=good), 400)


def test_palette_and_one_bit_bmps_classify_like_their_rgb_png(serving, sample_jpeg):
    """TensorFlow misreads palette BMPs (grey indices) and fails on 1-bit ones: the server converts them."""
    import io

    from PIL import Image

    rgb = Image.open(io.BytesIO(sample_jpeg)).convert("RGB")
    for mode in ("P", "1"):
        converted = rgb.convert(mode)
        bmp, png = io.BytesIO(), io.BytesIO()
        converted.save(bmp, format="BMP")
        converted.convert("RGB").save(png, format="PNG")
        a = httpx.post(f"{serving.rest_url}/predict", content=bmp.getvalue(), headers={"content-type": "image/bmp"})
        b = httpx.post(f"{serving.rest_url}/predict", content=png.getvalue(), headers={"content-type": "image/png"})
        assert a.status_code == 200 and b.status_code == 200, (mode, a.text, b.text)
        sa, sb = a.json()["predictions"][0]["scores"], b.json()["predictions"][0]["scores"]
        assert all(abs(sa[k] - sb[k]) < 1e-5 for k in sa), (mode, sa, sb)
