"""The hand stage in front of every local runtime: where a hand is found the version's pose classifier answers
(path "pose"), elsewhere the CNN (path "cnn"); IMGCLF_HANDS switches it, per version and for all."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.service.conftest import demo_version, metric_value
from version_format.layout import POSE_FILE

SAMPLES = Path(__file__).resolve().parents[2] / "service" / "web" / "static" / "samples"
HANDS = ("rock", "paper", "scissors")


@pytest.fixture(scope="module")
def hand_models(tmp_path_factory: pytest.TempPathFactory, sample_pose: Any) -> dict[str, Path]:
    """Model roots: `pose` holds the demo version with the samples' pose classifier, `plain` one without."""
    roots = {"pose": demo_version(tmp_path_factory.mktemp("pose"), sample_pose),
             "plain": demo_version(tmp_path_factory.mktemp("plain"))}
    return roots


def _predict(url: str, name: str) -> dict[str, object]:
    reply = httpx.post(f"{url}/predict", files={"file": (f"{name}.jpg", (SAMPLES / f"{name}.jpg").read_bytes())},
                       timeout=60)
    assert reply.status_code == 200, reply.text
    prediction: dict[str, object] = reply.json()["predictions"][0]
    return prediction


@pytest.mark.parametrize("runtime", ["tensorflow", "litert", "litert-float"])
def test_every_runtime_answers_a_hand_by_its_pose_and_the_portrait_by_the_cnn(start_server, hand_models, runtime):
    server = start_server(hand_models["pose"], runtime=runtime)
    for name in HANDS:
        answer = _predict(server.rest_url, name)
        assert answer["path"] == "pose" and answer["label"] == name, answer
        assert isinstance(answer["hand"], dict) and len(answer["hand"]["landmarks"]) == 21
        assert answer["scores"]["none"] == 0  # the pose classifier knows no `none`: a hand was found
    portrait = _predict(server.rest_url, "no-hand")
    assert portrait["path"] == "cnn" and portrait["hand"] is None and portrait["label"] == "none"
    metrics = httpx.get(f"{server.rest_url}/metrics").text
    assert metric_value(metrics, "imgclf_answers_total", path="pose") == 3
    assert metric_value(metrics, "imgclf_answers_total", path="cnn") == 1
    assert metric_value(metrics, "imgclf_hand_stage_seconds_count") == 4


def test_hands_off_leaves_the_cnn_alone(start_server, hand_models):
    server = start_server(hand_models["pose"], hands="off")
    answer = _predict(server.rest_url, "rock")
    assert answer["path"] == "cnn" and answer["hand"] is None
    assert metric_value(httpx.get(f"{server.rest_url}/metrics").text, "imgclf_hand_stage_seconds_count") == 0


def test_hands_on_reports_the_hand_of_a_version_without_a_pose_classifier(start_server, hand_models):
    auto = start_server(hand_models["plain"])  # auto: no pose classifier, no hand stage
    assert _predict(auto.rest_url, "rock")["hand"] is None
    on = start_server(hand_models["plain"], hands="on")
    answer = _predict(on.rest_url, "rock")
    assert answer["path"] == "cnn" and isinstance(answer["hand"], dict)


def test_a_broken_pose_classifier_fails_its_version_and_the_good_one_keeps_serving(start_server, hand_models,
                                                                                  tmp_path):
    root = tmp_path / "models"
    shutil.copytree(hand_models["pose"], root)
    server = start_server(root)
    assert _predict(server.rest_url, "rock")["path"] == "pose"
    broken = root / "rps" / "2"
    shutil.copytree(root / "rps" / "1", broken)
    pose = json.loads((broken / POSE_FILE).read_text())
    pose["labels"] = ["rock", "paper", "lizard"]  # not the version's labels
    (broken / POSE_FILE).write_text(json.dumps(pose))
    status = server.call(_wait_for_failure(server, 2))
    assert "lizard" in status
    assert _predict(server.rest_url, "rock")["path"] == "pose"
    assert httpx.post(f"{server.rest_url}/predict", params={"version": 1},
                      files={"file": ("rock.jpg", (SAMPLES / "rock.jpg").read_bytes())}).status_code == 200


async def _wait_for_failure(server, version: int, timeout: float = 60) -> str:
    import asyncio
    import time

    until = time.monotonic() + timeout
    while time.monotonic() < until:
        for status in server.core.statuses("rps"):
            if status.version == version and status.error:
                return str(status.error)
        await asyncio.sleep(0.2)
    raise AssertionError(f"version {version} did not fail to load")
