"""Teaching with the hand stage on: each example's landmarks are kept beside it (or that it shows no hand),
deleted with it, and a fine-tune retrains the pose classifier under the same gate."""

from __future__ import annotations

import io
import json
import time

import httpx
import numpy as np
from PIL import Image

from hands.classifier import read_pose_classifier
from tests.service.conftest import HANDS as MOVES
from tests.service.conftest import SAMPLES, sample_jpeg
from version_format.layout import CARD_FILE, POSE_FILE


def _add(server, label: str, data: bytes) -> httpx.Response:
    return httpx.post(f"{server.rest_url}/v1/models/rps/examples", files={"file": ("f.jpg", data, "image/jpeg")},
                      data={"label": label}, timeout=30)


def _listing(server) -> dict:
    return httpx.get(f"{server.rest_url}/v1/models/rps/examples").json()


def test_each_example_keeps_its_hand_and_loses_it_with_itself(start_server, pose_root, tmp_path):
    server = start_server(pose_root, teach=True, data_root=tmp_path / "data")
    rock = _add(server, "rock", sample_jpeg("rock", 0))
    assert rock.status_code == 201 and rock.json()["hand"] is True, rock.text
    portrait = _add(server, "paper", (SAMPLES / "no-hand.jpg").read_bytes())
    assert portrait.status_code == 201 and portrait.json()["hand"] is False
    assert portrait.json()["without_hand"] == {"none": 0, "paper": 1, "rock": 0, "scissors": 0}
    again = _add(server, "rock", sample_jpeg("rock", 0))  # stored once; its record is read, not the picture
    assert again.status_code == 200 and again.json()["hand"] is True

    folder = tmp_path / "data" / "rps" / "examples"
    record = json.loads((folder / ".hands" / "rock" / f"{rock.json()['id']}.json").read_text())
    assert record["hand"] is True and np.array(record["landmarks"]).shape == (21, 3)
    # the landmarks are those of the picture: the version's pose classifier reads them as rock
    pose = read_pose_classifier(pose_root / "rps" / "1" / POSE_FILE)
    assert pose is not None
    assert pose.labels[int(pose.predict_landmarks(np.array([record["landmarks"]])).argmax())] == "rock"
    assert json.loads((folder / ".hands" / "paper" / f"{portrait.json()['id']}.json").read_text()) == {"hand": False}

    listed = _listing(server)
    assert {e["id"]: e["hand"] for e in listed["examples"]} == {rock.json()["id"]: True, portrait.json()["id"]: False}
    assert listed["counts"]["paper"] == 1 and listed["without_hand"]["paper"] == 1
    # neither the store nor a training folder reader sees the records as a label
    assert sorted(p.name for p in folder.iterdir() if not p.name.startswith(".")) == ["paper", "rock"]

    gone = httpx.delete(f"{server.rest_url}/v1/models/rps/examples/{portrait.json()['id']}")
    assert gone.status_code == 200 and gone.json()["without_hand"]["paper"] == 0
    assert not (folder / ".hands" / "paper" / f"{portrait.json()['id']}.json").exists()
    assert httpx.delete(f"{server.rest_url}/v1/models/rps/examples").json()["deleted"] == 1
    assert not list((folder / ".hands").rglob("*.json"))


def test_with_the_stage_off_no_hand_is_read(start_server, pose_root, tmp_path):
    server = start_server(pose_root, teach=True, data_root=tmp_path / "data", hands="off")
    added = _add(server, "scissors", sample_jpeg("scissors", 0))
    assert added.status_code == 201 and added.json()["hand"] is None
    assert _listing(server)["examples"][0]["hand"] is None
    assert not (tmp_path / "data" / "rps" / "examples" / ".hands").exists()


def _wait(server, job_id: str, timeout: float = 300) -> dict:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        job = httpx.get(f"{server.rest_url}/v1/models/rps/finetunes/{job_id}").json()
        if job["state"] != "running":
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} still running: {job}")


def test_a_finetune_retrains_the_pose_classifier_under_the_gate(start_server, pose_root, tmp_path):
    """Every move taught as another: the new pose classifier follows the examples, and the card holds the
    pose classifier's gate figures beside the image model's."""
    from hands import HandStage

    server = start_server(pose_root, teach=True, data_root=tmp_path / "data", teach_epochs=5)
    swap = {"rock": "paper", "paper": "scissors", "scissors": "rock"}
    for label in MOVES:
        for index in range(1, 5):
            assert _add(server, swap[label], sample_jpeg(label, index)).json()["hand"] is True
    assert _add(server, "rock", (SAMPLES / "no-hand.jpg").read_bytes()).json()["hand"] is False
    job = _wait(server, httpx.post(f"{server.rest_url}/v1/models/rps/finetunes").json()["id"])
    assert job["state"] in ("succeeded", "rejected"), job
    version = pose_root / "rps" / str(job["result"]["version"])
    card = json.loads((version / CARD_FILE).read_text())
    pose_gate = card["gate"]["pose"]
    assert pose_gate == job["result"]["gate"]["pose"]
    assert pose_gate["before_from"] == "pose classifier" and pose_gate["holdout_count"] >= 2
    assert pose_gate["holdout_before"] == 0.0 and pose_gate["holdout_after"] == 1.0 and pose_gate["promoted"]
    assert card["pose"]["trained"] and card["pose"]["examples_with_hand"] == 12
    assert card["pose"]["examples_without_hand"] == 1
    new = read_pose_classifier(version / POSE_FILE)
    assert new is not None
    stage = HandStage(threads=1)
    for label in MOVES:  # copies it was never taught on
        hand = stage.find(Image.open(io.BytesIO(sample_jpeg(label, 9))).convert("RGB"))
        assert hand is not None
        assert new.labels[int(new.predict_landmarks(hand.landmarks[None]).argmax())] == swap[label]
