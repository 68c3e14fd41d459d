"""imgclf.v1.ImageClassifier over a real gRPC channel: Classify, ClassifyStream, GetModelStatus, limits."""

from __future__ import annotations

import io
from collections.abc import Iterator

import grpc
import numpy as np
import pytest
from PIL import Image

from service.grpc._generated.imgclf.v1 import classifier_pb2 as pb
from service.grpc._generated.imgclf.v1 import classifier_pb2_grpc

LABELS = ["paper", "rock", "scissors"]
MiB = 1024 * 1024
BIG = [("grpc.max_send_message_length", 64 * MiB), ("grpc.max_receive_message_length", 64 * MiB)]


@pytest.fixture(scope="module")
def stub(serving) -> Iterator[classifier_pb2_grpc.ImageClassifierStub]:
    with grpc.insecure_channel(serving.grpc_target, options=BIG) as channel:
        yield classifier_pb2_grpc.ImageClassifierStub(channel)


@pytest.fixture(scope="module")
def other_png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (90, 120), (220, 40, 200)).save(buf, format="PNG")
    return buf.getvalue()


def _noise_png(side: int, seed: int = 0) -> bytes:
    """Random pixels stored uncompressed: about side * side * 3 bytes of valid PNG."""
    pixels = np.random.default_rng(seed).integers(0, 256, (side, side, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG", compress_level=0)
    return buf.getvalue()


def _check(reply: pb.ClassifyResponse, n: int) -> np.ndarray:
    assert reply.model_name == "rps" and reply.model_version == 1
    assert list(reply.labels) == LABELS
    assert len(reply.predictions) == n
    rows = []
    for p in reply.predictions:
        scores = np.array(p.scores)
        assert scores.shape == (3,) and scores.sum() == pytest.approx(1, abs=1e-4)
        assert p.label == LABELS[int(np.argmax(scores))]
        assert p.confidence == pytest.approx(scores.max(), abs=1e-6)
        rows.append(scores)
    return np.array(rows)


def _code(call, *args, **kwargs) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as info:
        call(*args, **kwargs)
    err = info.value
    return err.code(), err.details()


def test_classify_one(stub, sample_jpeg):
    _check(stub.Classify(pb.ClassifyRequest(images=[sample_jpeg], request_id="r1"), timeout=30), 1)


def test_classify_several_in_order(stub, sample_jpeg, other_png):
    a = _check(stub.Classify(pb.ClassifyRequest(images=[sample_jpeg]), timeout=30), 1)[0]
    b = _check(stub.Classify(pb.ClassifyRequest(images=[other_png]), timeout=30), 1)[0]
    assert not np.allclose(a, b)
    rows = _check(stub.Classify(pb.ClassifyRequest(images=[other_png, sample_jpeg, other_png]), timeout=30), 3)
    np.testing.assert_allclose(rows, [b, a, b], atol=1e-5)


def test_version_and_label(stub, sample_jpeg):
    assert stub.Classify(pb.ClassifyRequest(images=[sample_jpeg], version=1), timeout=30).model_version == 1
    reply = stub.Classify(pb.ClassifyRequest(images=[sample_jpeg], version_label="stable"), timeout=30)
    assert reply.model_version == 1
    assert stub.Classify(pb.ClassifyRequest(images=[sample_jpeg], model_name="rps"), timeout=30).model_name == "rps"


def test_not_found(stub, sample_jpeg):
    code, details = _code(stub.Classify, pb.ClassifyRequest(images=[sample_jpeg], version=99), timeout=30)
    assert code == grpc.StatusCode.NOT_FOUND and "99" in details
    code, details = _code(stub.Classify, pb.ClassifyRequest(images=[sample_jpeg], version_label="canary"),
                          timeout=30)
    assert code == grpc.StatusCode.NOT_FOUND and "canary" in details
    code, details = _code(stub.Classify, pb.ClassifyRequest(images=[sample_jpeg], model_name="mnist"), timeout=30)
    assert code == grpc.StatusCode.NOT_FOUND and "mnist" in details


def test_invalid_argument(stub, sample_jpeg):
    for images, fragment in [([b"not an image"], "not a readable image"),
                             ([sample_jpeg[:2000]], "truncated"),
                             ([sample_jpeg, b""], "image 2"),
                             ([], "no images")]:
        code, details = _code(stub.Classify, pb.ClassifyRequest(images=images), timeout=30)
        assert code == grpc.StatusCode.INVALID_ARGUMENT, (fragment, code, details)
        assert fragment in details
    _check(stub.Classify(pb.ClassifyRequest(images=[sample_jpeg]), timeout=30), 1)  # still serving


def test_too_many_images(stub, serving, other_png):
    n = serving.settings.max_images_per_request + 1
    code, details = _code(stub.Classify, pb.ClassifyRequest(images=[other_png] * n), timeout=30)
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and str(n) in details


def test_stream_answers_in_order_with_request_ids(stub, sample_jpeg, other_png):
    frames = [(f"frame-{i}", sample_jpeg if i % 2 == 0 else other_png, n) for i, n in enumerate([1, 2, 1, 3, 1])]
    requests = (pb.ClassifyRequest(images=[data] * n, request_id=rid) for rid, data, n in frames)
    replies = list(stub.ClassifyStream(requests, timeout=60))
    assert [r.request_id for r in replies] == [rid for rid, _, _ in frames]
    for reply, (_, _, n) in zip(replies, frames, strict=True):
        _check(reply, n)
    np.testing.assert_allclose(replies[0].predictions[0].scores, replies[2].predictions[0].scores, atol=1e-5)


def test_stream_ends_with_the_status_of_a_bad_frame(stub, sample_jpeg):
    requests = iter([pb.ClassifyRequest(images=[sample_jpeg], request_id="good"),
                     pb.ClassifyRequest(images=[b"junk"], request_id="bad"),
                     pb.ClassifyRequest(images=[sample_jpeg], request_id="never")])
    call = stub.ClassifyStream(requests, timeout=60)
    first = next(call)
    assert first.request_id == "good"
    with pytest.raises(grpc.RpcError) as info:
        next(call)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "'bad'" in info.value.details()


def test_model_status(stub):
    status = stub.GetModelStatus(pb.ModelStatusRequest(), timeout=10)
    assert status.model_name == "rps" and status.ready
    (v1,) = status.versions
    assert (v1.version, v1.state, v1.error) == (1, "AVAILABLE", "")
    assert list(v1.labels) == LABELS
    code, _ = _code(stub.GetModelStatus, pb.ModelStatusRequest(model_name="other"), timeout=10)
    assert code == grpc.StatusCode.NOT_FOUND


def test_8mb_request_with_raised_limits(stub):
    big = _noise_png(1700)
    assert len(big) > 8 * 1000 * 1000
    _check(stub.Classify(pb.ClassifyRequest(images=[big]), timeout=60), 1)


def test_server_limit_refuses_larger_messages(start_server, trained_model_root):
    srv = start_server(trained_model_root, grpc_max_message_bytes=4 * MiB)
    small, large = _noise_png(1000, 1), _noise_png(1450, 2)
    assert len(small) < 4 * MiB < 6 * 1000 * 1000 < len(large)
    with grpc.insecure_channel(srv.grpc_target, options=BIG) as channel:
        stub = classifier_pb2_grpc.ImageClassifierStub(channel)
        _check(stub.Classify(pb.ClassifyRequest(images=[small]), timeout=60), 1)
        code, details = _code(stub.Classify, pb.ClassifyRequest(images=[large]), timeout=60)
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED, details
        _check(stub.Classify(pb.ClassifyRequest(images=[small]), timeout=60), 1)  # the server carries on


def test_client_receive_limit_applies_to_replies(serving, sample_jpeg):
    # a client that caps what it receives below the reply size fails on its own side
    options = [("grpc.max_receive_message_length", 16)]
    with grpc.insecure_channel(serving.grpc_target, options=options) as channel:
        stub = classifier_pb2_grpc.ImageClassifierStub(channel)
        code, _ = _code(stub.Classify, pb.ClassifyRequest(images=[sample_jpeg]), timeout=30)
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_stream_has_a_request_id_metrics_and_a_status_like_unary_calls(stub, serving, sample_jpeg):
    # a stream is observed as one call: its request id comes back, and /metrics counts it with its status
    import httpx

    from tests.service.conftest import metric_value

    route = "ImageClassifierServicer.ClassifyStream"

    def count(code: str) -> float:
        text = httpx.get(f"{serving.rest_url}/metrics", timeout=10).text
        return metric_value(text, "imgclf_requests_total", route=route, protocol="grpc", status=code)

    ok, bad = count("OK"), count("INVALID_ARGUMENT")
    call = stub.ClassifyStream(iter([pb.ClassifyRequest(images=[sample_jpeg])]), timeout=60,
                               metadata=(("x-request-id", "stream-1"),))
    assert len(list(call)) == 1
    assert ("x-request-id", "stream-1") in call.trailing_metadata()
    with pytest.raises(grpc.RpcError):
        list(stub.ClassifyStream(iter([pb.ClassifyRequest(images=[b"junk"])]), timeout=60))
    assert (count("OK"), count("INVALID_ARGUMENT")) == (ok + 1, bad + 1)
