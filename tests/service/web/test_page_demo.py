"""The page with the shipped demo version: samples, the model card, and "no hand" in the game."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from service.demo import install_demo
from tests.service.web.conftest import write_y4m
from tests.service.web.test_page import play, record_predicts, start_camera

pytestmark = pytest.mark.browser

SAMPLES = Path(__file__).resolve().parents[3] / "service" / "web" / "static" / "samples"


@pytest.fixture(scope="module")
def hand_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The camera sees a person and no hand."""
    path = tmp_path_factory.mktemp("camera") / "no-hand.y4m"
    write_y4m(path, Image.open(SAMPLES / "no-hand.jpg").convert("RGB").resize((320, 240)))
    return path


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("demo") / "models"
    assert install_demo(root, "rps") is not None
    return root


def test_samples_are_classified_by_the_server(browse, start_server, demo_root, tmp_path):
    # teaching on, as `make run` serves the page (so the docs screenshot shows its Teach tab too)
    server = start_server(demo_root, teach=True, data_root=tmp_path / "data")
    b = browse(server=server)
    page = b.page
    buttons = page.get_by_test_id("sample")
    assert buttons.count() == 4
    for i in range(buttons.count()):
        name = buttons.nth(i).get_attribute("data-file")
        buttons.nth(i).click()
        shown = page.locator(f'[data-testid="result-card"][data-filename="{name}"]').get_by_test_id("result-label")
        shown.wait_for()
        expected = httpx.post(f"{server.rest_url}/predict",
                              files={"file": (name, (SAMPLES / name).read_bytes())}).json()["predictions"][0]
        assert shown.get_attribute("data-label") == expected["label"]
        if expected["label"] == "none":
            assert shown.inner_text() == "No hand"
    b.shot("try-samples", docs=True)
    b.assert_clean_console()


def _open_card(browse: Any, server: Any) -> Any:
    b = browse(server=server)
    b.page.get_by_test_id("tab-model").click()
    b.page.get_by_test_id("model-card").wait_for()
    return b


def _shown_percent(text: str) -> float:
    shown = re.match(r"([0-9.]+)%", text)
    assert shown is not None, text
    return float(shown[1])


def test_model_tab_shows_the_serving_versions_card(browse, start_server, demo_root):
    server = start_server(demo_root)
    b = _open_card(browse, server)
    page = b.page
    assert "v1" in page.locator("#card-title").inner_text()
    assert "Rock Paper Scissors" in page.get_by_test_id("card-trained-on").inner_text()
    provenance = page.get_by_test_id("card-provenance").inner_text()
    assert "CC BY 2.0" in provenance
    assert "real-hands" in page.get_by_test_id("card-recipe").inner_text()
    assert "none" in page.get_by_test_id("card-classes").inner_text()
    # the demo trained on every hand: no unseen-hands figure to show, and the page says so
    version = httpx.get(f"{server.rest_url}/models").json()["versions"][0]
    assert version["val_accuracy"] is None and version["reallike_accuracy"] is None
    assert page.get_by_test_id("card-accuracy").count() == 0
    assert page.get_by_test_id("card-validation").inner_text().startswith("none: every image trained on")
    reallike = page.get_by_test_id("card-real-like-check").inner_text()
    assert "hands it trained on" in reallike
    # the page rounds as JavaScript does (0.9025 -> 90.3), Python's format as binary floats do (90.2)
    assert _shown_percent(reallike) == pytest.approx(version["reallike_seen_hands_accuracy"] * 100, abs=0.051)
    # what the recipe scores on hands it never saw comes from its held-out runs, named in the provenance
    assert "held out" in provenance
    b.shot("model-card")
    b.assert_clean_console()


def test_model_tab_shows_unseen_hand_figures_of_a_validated_version(browse, start_server, tmp_path):
    """A version trained with hands held out (the recipe's default) shows its measured accuracy on them."""
    root = tmp_path / "models"
    path = install_demo(root, "rps")
    assert path is not None
    card_file = path / "assets.extra" / "model_card.json"
    card = json.loads(card_file.read_text())
    card.update(val_accuracy=0.9594, validation="unseen rendered hands paper06, rock02, scissors04",
                reallike_accuracy=0.8717)
    card.pop("reallike_seen_hands_accuracy", None)
    card_file.write_text(json.dumps(card))
    b = _open_card(browse, start_server(root))
    page = b.page
    assert page.get_by_test_id("card-accuracy").inner_text() == (
        "95.9% on unseen rendered hands paper06, rock02, scissors04")
    assert page.get_by_test_id("card-validation").count() == 0
    reallike = page.get_by_test_id("card-real-like-check").inner_text()
    assert _shown_percent(reallike) == 87.2 and "unseen hands in unseen scenes" in reallike
    b.assert_clean_console()


def test_an_empty_frame_asks_for_a_hand(browse, start_server, demo_root):
    server = start_server(demo_root)
    b = browse("/?min_confidence=0", camera=True, server=server)
    page = b.page
    frames: list[Any] = []
    record_predicts(page, frames)
    start_camera(page)
    played = play(b, frames)
    assert played["player"] == "none"
    assert played["outcome"] == "retry"
    assert "No hand seen" in played["text"]
    assert page.get_by_test_id("player-move").inner_text() == "No hand"
    b.shot("play-no-hand")
    b.assert_clean_console()
