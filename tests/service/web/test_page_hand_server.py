"""The hand through a real server: the hand stage and a pose classifier behind /predict, the page drawing what
they found (on the canvas, read back pixel by pixel), GET /models' hand_stage and pose figures."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.service.web.test_page import start_camera
from tests.service.web.test_page_hand import (
    READ_ALPHA,
    SAMPLES,
    Layout,
    assert_hand_seen,
    check_drawing,
    result_card,
)

pytestmark = pytest.mark.browser

POSE_FIGURES = {"held_out_by_hand_accuracy": 0.9976, "hand_found_rate": 0.979, "pictures": 2520, "hands": 33,
                "features": "pose", "landmark_cache": "/home/someone/.cache/imgclf/landmarks",
                "fold_accuracy": [0.99, 1.0]}


@pytest.fixture(scope="module")
def pose_root(tmp_path_factory: pytest.TempPathFactory, sample_pose: Any) -> Path:
    """The demo version given a pose classifier fitted on the three hand samples (as the runtime tests do), and
    the pose classifier's figures in its card (a server path and a list among them, which stay home)."""
    from tests.service.conftest import demo_version
    from version_format.layout import CARD_FILE

    root = demo_version(tmp_path_factory.mktemp("pose") / "models", sample_pose)
    path = root / "rps" / "1"
    card = json.loads((path / CARD_FILE).read_text())
    (path / CARD_FILE).write_text(json.dumps({**card, "pose": POSE_FIGURES}))
    return root


def click_sample(page: Any, name: str) -> Any:
    page.locator(f'[data-testid="sample"][data-file="{name}"]').click()
    card = result_card(page, name)
    card.get_by_test_id("result-label").wait_for()
    return card


def test_a_sample_through_the_hand_stage_and_the_pose_classifier(browse, start_server, pose_root):
    server = start_server(pose_root)  # IMGCLF_HANDS=auto: the stage runs for a version with a pose classifier
    version = httpx.get(f"{server.rest_url}/models").json()["versions"][0]
    assert version["hand_stage"] is True
    assert version["pose"] == {k: v for k, v in POSE_FIGURES.items() if k not in ("landmark_cache", "fold_accuracy")}
    b = browse(server=server)
    page = b.page

    card = click_sample(page, "rock.jpg")
    answer = httpx.post(f"{server.rest_url}/predict",
                        files={"file": ("rock.jpg", (SAMPLES / "rock.jpg").read_bytes())}).json()["predictions"][0]
    assert answer["path"] == "pose" and answer["hand"] is not None
    assert card.get_by_test_id("result-label").get_attribute("data-label") == answer["label"]
    card.locator('[data-testid="hand-overlay"][data-hand="drawn"]').wait_for()
    note = card.get_by_test_id("hand-note")
    assert note.get_attribute("data-path") == "pose" and "pose classifier" in note.inner_text()
    assert_hand_seen(note, answer["hand"]["handedness"], answer["hand"]["score"])
    thumb = card.locator(".thumb").bounding_box()
    check_drawing(page, '[data-filename="rock.jpg"] [data-testid="hand-overlay"]', answer["hand"],
                  Layout((thumb["width"], thumb["height"]), (240, 240), "cover", False))

    card = click_sample(page, "no-hand.jpg")
    card.locator('[data-testid="hand-overlay"][data-hand="none"]').wait_for()
    note = card.get_by_test_id("hand-note")
    assert note.locator(".hand-seen").inner_text() == "No hand in view"
    assert note.get_attribute("data-path") == "cnn" and "image CNN" in note.inner_text()
    assert page.evaluate(READ_ALPHA, '[data-filename="no-hand.jpg"] [data-testid="hand-overlay"]')["drawn"] == 0
    b.shot("try-hand-server")

    page.get_by_test_id("tab-model").click()
    figures = page.get_by_test_id("card-pose-classifier").inner_text()
    for shown in ("99.8% on hands it never saw", "a hand found in 97.9% of pictures", "2,520 pictures of 33 hands",
                  "features: pose"):
        assert shown in figures
    assert "cache" not in figures and "fold" not in figures
    b.shot("model-pose")
    b.assert_clean_console()


def test_without_the_hand_stage_the_page_claims_no_hand(browse, serving):
    """A version with no pose classifier (IMGCLF_HANDS=auto): its answers' null hand means the stage did not
    look, so the page draws nothing and says only what answered."""
    assert httpx.get(f"{serving.rest_url}/models").json()["versions"][0]["hand_stage"] is False
    b = browse()
    page = b.page
    card = click_sample(page, "rock.jpg")
    note = card.get_by_test_id("hand-note")
    assert note.get_attribute("data-path") == "cnn" and note.get_attribute("data-hand") is None
    assert note.locator(".hand-seen").count() == 0
    assert card.get_by_test_id("hand-overlay").get_attribute("data-hand") == ""
    page.get_by_test_id("tab-model").click()
    page.get_by_test_id("model-card").wait_for()
    assert page.get_by_test_id("card-pose-classifier").count() == 0
    b.assert_clean_console()


def test_a_round_of_play_draws_the_hand_the_server_found_in_the_frame(browse, start_server, pose_root):
    """The fake camera's hand (conftest's hand_video) through the hand stage: drawn over the mirrored view."""
    b = browse("/?min_confidence=0", camera=True, server=start_server(pose_root))
    page = b.page
    start_camera(page)
    with page.expect_response(lambda r: "/predict" in r.url) as answered:
        page.get_by_test_id("play-round").click()
    answer = answered.value.json()["predictions"][0]
    assert answer["hand"] is not None and answer["path"] == "pose"
    page.wait_for_selector('[data-testid="camera-hand"][data-hand="drawn"]')
    note = page.get_by_test_id("player-hand").get_by_test_id("hand-note")
    assert_hand_seen(note, answer["hand"]["handedness"], answer["hand"]["score"])
    assert page.get_by_test_id("player-move").get_attribute("data-move") == answer["label"]
    video = page.get_by_test_id("camera-video").bounding_box()
    check_drawing(page, "#camera-hand", answer["hand"],
                  Layout((video["width"], video["height"]), (320, 240), "cover", True))
    b.shot("play-hand-server")
    b.assert_clean_console()
