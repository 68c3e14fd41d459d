"""Pillow decoding for the litert runtime against the serving graph's own preprocessing, on real photos."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image, ImageOps

from service.errors import InvalidInputError
from service.images import check_image, decode_checked
from training.preprocessing import decode_and_resize


def _photo(name: str, size: tuple[int, int]) -> Image.Image:
    """A real photograph shipped inside scikit-image (no download), resized to `size`."""
    from skimage import data

    return Image.fromarray(getattr(data, name)()).convert("RGB").resize(size, Image.Resampling.LANCZOS)


def _encode(img: Image.Image, fmt: str) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return buf.getvalue()


CASES = [(name, size, fmt) for name in ("astronaut", "coffee", "chelsea")
         for size in ((640, 480), (300, 300), (97, 120), (150, 150)) for fmt in ("JPEG", "PNG")]


@pytest.mark.parametrize(("name", "size", "fmt"), CASES)
def test_pixels_match_the_graph(name, size, fmt):
    data = _encode(_photo(name, size), fmt)
    graph = decode_and_resize(tf.constant(data)).numpy() * 255
    pillow, pixels = decode_checked(data, max_pixels=16_000_000, min_side=8)
    assert pillow.shape == (150, 150, 3) and pillow.dtype == np.uint8 and pixels == size[0] * size[1]
    diff = np.abs(pillow.astype(np.float32) - graph)
    if fmt == "PNG":
        # the same pixels in, the same antialiased bilinear kernel: rounding to 8 bits only
        assert diff.max() <= 1.01, diff.max()
    else:
        # TF's JPEG decoder runs libjpeg's fast integer DCT, Pillow's the accurate one
        assert diff.max() <= 8.0 and diff.mean() <= 1.5, (diff.max(), diff.mean())


def test_grey_and_alpha_become_rgb_as_in_the_graph():
    rgba = _photo("astronaut", (200, 160)).convert("RGBA")
    for img in (rgba, rgba.convert("L"), rgba.convert("LA")):
        data = _encode(img, "PNG")
        graph = decode_and_resize(tf.constant(data)).numpy() * 255
        assert np.abs(decode_checked(data, max_pixels=10**8, min_side=8)[0] - graph).max() <= 1.01, img.mode


def test_the_request_guards_hold_before_any_decode():
    good = _encode(_photo("coffee", (64, 64)), "PNG")
    with pytest.raises(InvalidInputError, match="above the limit"):
        decode_checked(good, max_pixels=64 * 64 - 1, min_side=8)
    with pytest.raises(InvalidInputError, match="at least 100"):
        decode_checked(good, max_pixels=10**8, min_side=100)
    with pytest.raises(InvalidInputError, match="not a readable image"):
        decode_checked(b"no image here", max_pixels=10**8, min_side=8)
    jpeg = _encode(_photo("coffee", (300, 300)), "JPEG")
    with pytest.raises(InvalidInputError, match=r"image 2: .*corrupt or truncated"):
        decode_checked(jpeg[: len(jpeg) // 2], max_pixels=10**8, min_side=8, index=2)


def test_a_gif_cut_anywhere_is_served_from_its_first_frame_or_refused():
    """Pillow's frame walker raises IndexError or struct.error on a second frame cut short: a
    500 for 53 requests of the long fuzz run. Every cut is now a first frame or a 400."""
    frames = [Image.new("RGB", (64, 48), (60 * i, 90, 200 - 60 * i)) for i in range(3)]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], optimize=False)
    data = buf.getvalue()
    served, first_frames = 0, 0
    for cut in range(20, len(data)):
        for check in (check_image, decode_checked):
            try:
                out, pixels = check(data[:cut], max_pixels=10**6, min_side=32)
            except InvalidInputError:
                continue
            served += 1
            assert pixels == 64 * 48
            if check is check_image:
                # a cut inside a later frame: the model gets the whole first frame as a PNG;
                # a cut that leaves one frame: the bytes as sent (TensorFlow reads or refuses them)
                assert isinstance(out, bytes) and (out.startswith(b"\x89PNG") or out == data[:cut])
                first_frames += out.startswith(b"\x89PNG")
    assert served > 0 and first_frames > 0


def _with_orientation(upright: Image.Image, tag: int, fmt: str) -> bytes:
    """What a camera writes: the pixels as its sensor saw them, and the EXIF tag that turns them upright.
    The stored pixels are found by trying every turn against Pillow's own exif_transpose, so the
    expected picture never comes from the table under test."""
    exif = Image.Exif()
    exif[0x0112] = tag
    for turn in (None, *Image.Transpose):
        stored = upright if turn is None else upright.transpose(turn)
        buf = io.BytesIO()
        stored.save(buf, format="PNG", exif=exif)
        if np.array_equal(np.asarray(ImageOps.exif_transpose(Image.open(buf)).convert("RGB")), np.asarray(upright)):
            break
    else:
        raise AssertionError(f"no stored picture turns upright with orientation {tag}")
    buf = io.BytesIO()
    stored.save(buf, format=fmt, exif=exif, **({"quality": 95, "subsampling": 0} if fmt == "JPEG" else {}))
    return buf.getvalue()


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
@pytest.mark.parametrize("tag", range(1, 9))
def test_a_cameras_orientation_is_applied_by_both_decoders(tag, fmt):
    """Phones store portrait photos as landscape pixels plus an EXIF orientation; TensorFlow's
    decoder ignores it, so without this the model saw portrait hands lying on their side."""
    upright = _photo("chelsea", (240, 160))  # not square: a quarter turn changes its shape
    data = _with_orientation(upright, tag, fmt)
    plain = _encode(upright, "PNG")
    bound = 1.01 if fmt == "PNG" else 8.0  # as in test_pixels_match_the_graph (JPEG: quality 95 too)
    want, _ = decode_checked(plain, max_pixels=10**8, min_side=8)
    pillow, pixels = decode_checked(data, max_pixels=10**8, min_side=8)
    assert pixels == 240 * 160
    assert np.abs(pillow.astype(np.float32) - want).max() <= bound  # the litert runtime's pixels
    # the graph's path: check_image hands the model bytes the graph decodes to the same pixels
    out, pixels = check_image(data, max_pixels=10**8, min_side=8)
    assert pixels == 240 * 160
    assert (out is data) == (tag == 1)  # an upright picture is passed on untouched, as before
    graph = decode_and_resize(tf.constant(out)).numpy() * 255
    assert np.abs(graph - pillow).max() <= bound


def test_a_damaged_exif_block_is_ignored():
    img = _photo("coffee", (96, 64))
    plain, damaged = io.BytesIO(), io.BytesIO()
    img.save(plain, format="JPEG", quality=95)
    img.save(damaged, format="JPEG", quality=95, exif=b"Exif\x00\x00II*\x00\xff\xff\xff\x7f")
    data = damaged.getvalue()
    out, _ = check_image(data, max_pixels=10**8, min_side=8)
    assert out is data
    pixels, _ = decode_checked(data, max_pixels=10**8, min_side=8)
    np.testing.assert_array_equal(pixels, decode_checked(plain.getvalue(), max_pixels=10**8, min_side=8)[0])


def test_webp_is_read_by_both_decoders_first_frame_only():
    """TensorFlow's decoder cannot read WebP (what Android apps and browsers' canvases often send):
    Pillow decodes it, and the graph is given the pixels as a PNG."""
    first, second = _photo("astronaut", (200, 160)), _photo("coffee", (200, 160))
    lossless = io.BytesIO()
    first.save(lossless, format="WEBP", lossless=True, save_all=True, append_images=[second])
    data = lossless.getvalue()
    want, _ = decode_checked(_encode(first, "PNG"), max_pixels=10**8, min_side=8)
    pillow, pixels = decode_checked(data, max_pixels=10**8, min_side=8)
    assert pixels == 200 * 160
    np.testing.assert_array_equal(pillow, want)  # lossless: the first frame's very pixels
    out, pixels = check_image(data, max_pixels=10**8, min_side=8)
    assert pixels == 200 * 160 and out.startswith(b"\x89PNG")
    assert np.abs(decode_and_resize(tf.constant(out)).numpy() * 255 - pillow).max() <= 0.51
    lossy = _encode(first, "WEBP")
    assert np.abs(decode_checked(lossy, max_pixels=10**8, min_side=8)[0].astype(np.float32) - want).max() <= 40
    for check in (check_image, decode_checked):
        with pytest.raises(InvalidInputError, match=r"not a readable image|corrupt or truncated"):
            check(lossy[: len(lossy) // 2], max_pixels=10**8, min_side=8)
        with pytest.raises(InvalidInputError, match="above the limit"):
            check(lossy, max_pixels=200 * 160 - 1, min_side=8)


@pytest.mark.parametrize("runtime", ["tensorflow", "litert"])
def test_phone_photos_any_way_up_and_webp_are_answered_as_their_taker_saw_them(runtime, start_server, tmp_path):
    """The shipped demo version, a real server and real clients: the samples stored upside down (3)
    and sideways (6, 8) with the tag that turns them upright get the upright picture's answer.
    Before orientations were read, the upside-down rock, paper and scissors were all answered 'none';
    before WebP was read, it was refused."""
    import grpc
    import httpx

    from service.demo import install_demo
    from service.grpc._generated.imgclf.v1 import classifier_pb2 as pb
    from service.grpc._generated.imgclf.v1 import classifier_pb2_grpc

    assert install_demo(tmp_path / "models", "rps") is not None
    server = start_server(tmp_path / "models", runtime=runtime)
    samples = Path(__file__).resolve().parents[2] / "service" / "web" / "static" / "samples"
    with grpc.insecure_channel(server.grpc_target) as channel:
        stub = classifier_pb2_grpc.ImageClassifierStub(channel)
        for move in ("rock", "paper", "scissors"):
            upright = Image.open(samples / f"{move}.jpg").convert("RGB")
            for tag in (3, 6, 8):
                data = _with_orientation(upright, tag, "JPEG")
                r = httpx.post(f"{server.rest_url}/predict", files={"file": (f"{move}.jpg", data)}, timeout=30)
                assert r.status_code == 200, r.text
                assert r.json()["predictions"][0]["label"] == move, (move, tag, r.json()["predictions"][0])
                reply = stub.Classify(pb.ClassifyRequest(images=[data]), timeout=30)
                assert reply.predictions[0].label == move, (move, tag)
            webp = _encode(upright, "WEBP")
            r = httpx.post(f"{server.rest_url}/predict", files={"file": (f"{move}.webp", webp)}, timeout=30)
            assert r.status_code == 200, r.text
            assert r.json()["predictions"][0]["label"] == move, (move, "webp", r.json()["predictions"][0])


@pytest.mark.parametrize("side", [300, 1200])
def test_a_cmyk_jpeg_reaches_the_graph_at_full_resolution(side):
    """TensorFlow cannot read CMYK JPEGs, so the server converts them; it used to convert the draft
    decoded at an eighth of the size (a 300x300 photo reached the graph as 38x38: pixels off by up to
    180 levels). Now the graph's pixels are those of the whole picture."""
    cmyk = _photo("astronaut", (side, side)).convert("CMYK")
    data = _encode(cmyk, "JPEG")
    out, pixels = check_image(data, max_pixels=10**8, min_side=8)
    assert pixels == side * side and out.startswith(b"\x89PNG")
    whole = _encode(Image.open(io.BytesIO(data)).convert("RGB"), "PNG")  # Pillow's full decode, converted
    graph = decode_and_resize(tf.constant(out)).numpy() * 255
    assert np.abs(graph - decode_and_resize(tf.constant(whole)).numpy() * 255).max() <= 1.01


def test_a_jpeg_carrying_more_pictures_is_read_as_the_jpeg_it_is():
    """Phones add a preview or depth map to their JPEGs (the MPF extension), which Pillow calls MPO; such
    photos got a 400 ('MPO images are not supported') though TensorFlow reads their first picture."""
    main, extra = _photo("chelsea", (240, 160)), _photo("coffee", (64, 48))
    buf = io.BytesIO()
    main.save(buf, format="MPO", save_all=True, append_images=[extra], quality=95)
    data = buf.getvalue()
    assert Image.open(io.BytesIO(data)).format == "MPO"
    out, pixels = check_image(data, max_pixels=10**8, min_side=8)
    assert out is data and pixels == 240 * 160  # the graph reads it as sent
    pillow, _ = decode_checked(data, max_pixels=10**8, min_side=8)
    graph = decode_and_resize(tf.constant(data)).numpy() * 255
    assert np.abs(pillow.astype(np.float32) - graph).max() <= 8.0  # the first picture, on both runtimes
    tagged = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = 3
    main.transpose(Image.Transpose.ROTATE_180).save(tagged, format="MPO", save_all=True, append_images=[extra],
                                                    quality=95, exif=exif)
    out, _ = check_image(tagged.getvalue(), max_pixels=10**8, min_side=8)
    assert np.abs(decode_and_resize(tf.constant(out)).numpy() * 255 - pillow).max() <= 8.0  # turned upright
