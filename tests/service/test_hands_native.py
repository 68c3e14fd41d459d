"""The hand in imgclf's own answers, over real servers and clients: /predict, the gRPC ImageClassifier
(Classify, ClassifyStream) and the CLI's client; what IMGCLF_HANDS=off and =on do; a version swapped in while
the hand stage reads a picture."""

from __future__ import annotations

import dataclasses
import json
import shutil
import threading
import time
from collections.abc import Iterator
from typing import Any

import grpc
import httpx
import numpy as np
import pytest

from service.client import classify_grpc, print_table
from service.grpc._generated.imgclf.v1 import classifier_pb2 as pb
from service.grpc._generated.imgclf.v1 import classifier_pb2_grpc
from tests.service.conftest import HANDS, demo_version, rest_predictions, stage_runs
from version_format.layout import POSE_FILE


@pytest.fixture(scope="module")
def stub(hand_serving) -> Iterator[classifier_pb2_grpc.ImageClassifierStub]:
    with grpc.insecure_channel(hand_serving.grpc_target) as channel:
        yield classifier_pb2_grpc.ImageClassifierStub(channel)


def check_hand(hand: dict[str, Any]) -> None:
    """A plausible hand: 21 points inside its box, a known handedness, a presence above the stage's bar."""
    points = np.array(hand["landmarks"])
    x0, y0, x1, y1 = hand["box"]
    assert points.shape == (21, 3) and x0 < x1 and y0 < y1
    assert (points[:, 0] >= x0 - 0.01).all() and (points[:, 0] <= x1 + 0.01).all()
    assert (points[:, 1] >= y0 - 0.01).all() and (points[:, 1] <= y1 + 0.01).all()
    assert hand["handedness"] in ("Left", "Right") and 0.6 <= hand["score"] <= 1


def test_predict_carries_the_hand(hand_serving, samples):
    predictions = rest_predictions(hand_serving, [samples[name] for name in (*HANDS, "no-hand")])
    for name, p in zip(HANDS, predictions, strict=False):
        assert (p["label"], p["path"]) == (name, "pose")
        assert p["scores"]["none"] == 0  # the pose classifier answered: it knows no `none`
        check_hand(p["hand"])
    portrait = predictions[-1]
    assert (portrait["label"], portrait["path"], portrait["hand"]) == ("none", "cnn", None)


def grpc_hand(p: pb.Prediction) -> dict[str, Any]:
    return {"box": list(p.hand.box), "landmarks": [[q.x, q.y, q.z] for q in p.hand.landmarks],
            "handedness": p.hand.handedness, "score": p.hand.score}


def same_hand(got: dict[str, Any], rest: dict[str, Any]) -> None:
    """The same hand as /predict's (which rounds pixels to a hundredth and the score to four places)."""
    np.testing.assert_allclose(got["landmarks"], rest["landmarks"], atol=0.006)
    np.testing.assert_allclose(got["box"], rest["box"], atol=0.006)
    assert got["handedness"] == rest["handedness"] and got["score"] == pytest.approx(rest["score"], abs=6e-5)


def test_classify_carries_the_hand(hand_serving, stub, samples):
    rest = rest_predictions(hand_serving, [samples["rock"], samples["no-hand"]])
    reply = stub.Classify(pb.ClassifyRequest(images=[samples["rock"], samples["no-hand"]]), timeout=60)
    assert list(reply.labels) == ["none", "paper", "rock", "scissors"]
    rock, portrait = reply.predictions
    assert (rock.label, rock.path) == ("rock", "pose") and rock.HasField("hand")
    same_hand(grpc_hand(rock), rest[0]["hand"])
    assert (portrait.label, portrait.path) == ("none", "cnn") and not portrait.HasField("hand")


def test_classify_stream_carries_the_hand(stub, samples):
    frames = [pb.ClassifyRequest(images=[samples[name]], request_id=name) for name in ("scissors", "no-hand", "paper")]
    replies = list(stub.ClassifyStream(iter(frames), timeout=60))
    got = [(r.request_id, r.predictions[0].label, r.predictions[0].path, r.predictions[0].HasField("hand"))
           for r in replies]
    assert got == [("scissors", "scissors", "pose", True), ("no-hand", "none", "cnn", False),
                   ("paper", "paper", "pose", True)]
    assert len(replies[0].predictions[0].hand.landmarks) == 21


def test_the_cli_client_shows_the_hand(hand_serving, samples, capsys):
    reply = classify_grpc(hand_serving.grpc_target, [samples["paper"], samples["no-hand"]])
    paper, portrait = reply["predictions"]
    rest = rest_predictions(hand_serving, [samples["paper"]])[0]
    assert paper["path"] == "pose" and portrait["path"] == "cnn" and portrait["hand"] is None
    same_hand(paper["hand"], rest["hand"])
    print_table(reply, ["paper.jpg", "no-hand.jpg"])
    rows = {line.split()[1]: line for line in capsys.readouterr().out.splitlines() if ".jpg" in line}
    assert "pose" in rows["paper.jpg"] and f"{rest['hand']['handedness']} {rest['hand']['score']:.2f}" in rows[
        "paper.jpg"]
    assert "cnn" in rows["no-hand.jpg"] and " - " in rows["no-hand.jpg"]


@pytest.mark.parametrize("bad", [b"not an image at all", "truncated"])
def test_a_bad_image_is_refused_before_the_hand_stage(hand_serving, stub, samples, bad):
    data = samples["rock"][:600] if bad == "truncated" else bad
    before = stage_runs(hand_serving)
    r = httpx.post(f"{hand_serving.rest_url}/predict", files={"file": ("x.jpg", data)}, timeout=30)
    assert r.status_code == 400, r.text
    with pytest.raises(grpc.RpcError) as info:
        stub.Classify(pb.ClassifyRequest(images=[data]), timeout=30)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert stage_runs(hand_serving) == before
    rest_predictions(hand_serving, [samples["rock"]])
    assert stage_runs(hand_serving) == before + 1  # the metric counts every picture the stage reads


def test_hands_off_answers_with_the_cnn(start_server, tmp_path, sample_pose, samples):
    server = start_server(demo_version(tmp_path, sample_pose), hands="off")
    p = rest_predictions(server, [samples["rock"]])[0]
    assert (p["path"], p["hand"]) == ("cnn", None)
    with grpc.insecure_channel(server.grpc_target) as channel:
        reply = classifier_pb2_grpc.ImageClassifierStub(channel).Classify(
            pb.ClassifyRequest(images=[samples["rock"]]), timeout=60)
    assert reply.predictions[0].path == "cnn" and not reply.predictions[0].HasField("hand")
    assert stage_runs(server) == 0


def test_hands_on_without_a_pose_classifier_reports_the_hand(start_server, tmp_path, samples):
    server = start_server(demo_version(tmp_path), hands="on", hands_budget_ms=1000)
    rock, portrait = rest_predictions(server, [samples["rock"], samples["no-hand"]])
    assert rock["path"] == "cnn" and rock["label"] == "rock"  # the CNN answers: there is no pose classifier
    check_hand(rock["hand"])
    assert (portrait["path"], portrait["hand"]) == ("cnn", None)
    with grpc.insecure_channel(server.grpc_target) as channel:
        reply = classifier_pb2_grpc.ImageClassifierStub(channel).Classify(
            pb.ClassifyRequest(images=[samples["rock"]]), timeout=60)
    assert reply.predictions[0].path == "cnn" and reply.predictions[0].HasField("hand")
    same_hand(grpc_hand(reply.predictions[0]), rock["hand"])


class GatedReader:
    """The server's hand reader, held at the door until the test lets it read (to swap a version meanwhile)."""

    def __init__(self, reader: Any):
        self.reader = reader
        self.entered, self.go = threading.Event(), threading.Event()

    def read(self, *args: Any, **kwargs: Any) -> Any:
        self.entered.set()
        assert self.go.wait(60)
        return self.reader.read(*args, **kwargs)


def test_a_version_swapped_in_during_the_hand_stage_answers_with_its_own_pose_classifier(
        start_server, tmp_path, sample_pose, samples):
    """Version 2's pose classifier calls every hand by the next class's name: its answer tells which one
    scored the hand read while version 1 was served."""
    root = demo_version(tmp_path, sample_pose)
    server = start_server(root, hands_budget_ms=1000)
    gate = GatedReader(server.core.hand_reader)
    server.core.hand_reader = gate
    answer: dict[str, Any] = {}
    ask = threading.Thread(target=lambda: answer.update(r=httpx.post(
        f"{server.rest_url}/predict", files={"file": ("rock.jpg", samples["rock"])}, timeout=90)))
    ask.start()
    try:
        assert gate.entered.wait(30)
        renamed = dataclasses.replace(sample_pose, labels=("rock", "scissors", "paper"))  # paper -> rock, ...
        staged = tmp_path / "staged"
        shutil.copytree(root / "rps" / "1", staged)
        (staged / POSE_FILE).write_text(json.dumps(renamed.to_dict()))
        staged.rename(root / "rps" / "2")
        deadline = time.monotonic() + 60
        while 2 not in server.core.available_versions("rps") and time.monotonic() < deadline:
            time.sleep(0.1)  # the registry's poll loads it, and the newest version takes new requests
        assert 2 in server.core.available_versions("rps")
    finally:
        gate.go.set()
        ask.join(90)
    r = answer["r"]
    assert r.status_code == 200, r.text
    body = r.json()
    p = body["predictions"][0]
    assert body["model_version"] == 2 and (p["label"], p["path"]) == ("scissors", "pose")
    check_hand(p["hand"])
