"""The hand behind an answer, drawn by the page (hand.js) over the picture it was found in, in a real Chromium.

The answers are /predict's (`hand`, `path`), recorded in answers/*.json from the hand stage run on the
samples (a test below checks they still are what it finds), or built here from the hand stage on the
fake camera's picture. The drawing is read back from the canvas, pixel by pixel, at the places worked
out here from the landmarks and the picture's layout (object-fit, mirroring).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from tests.service.web.test_page import start_camera

ANSWERS = Path(__file__).with_name("answers")
SAMPLES = Path(__file__).resolve().parents[3] / "service" / "web" / "static" / "samples"

Point = tuple[float, float]


def recorded(name: str) -> dict[str, Any]:
    return json.loads((ANSWERS / f"{name}.json").read_text())


def test_recorded_answers_hold_what_the_hand_stage_finds():
    from hands import HandStage

    stage = HandStage()
    hand = stage.find(Image.open(SAMPLES / "rock.jpg").convert("RGB"))
    assert hand is not None
    kept = recorded("rock")["predictions"][0]["hand"]
    assert np.allclose(kept["box"], hand.box, atol=0.05)
    assert np.allclose(kept["landmarks"], hand.landmarks, atol=0.05)
    assert (kept["handedness"], round(kept["score"], 3)) == (hand.handedness, round(hand.score, 3))
    assert stage.find(Image.open(SAMPLES / "no-hand.jpg").convert("RGB")) is None
    assert recorded("no-hand")["predictions"][0]["hand"] is None


class Layout:
    """Where the picture's pixels are shown in an element of `box` CSS pixels under `fit`, maybe mirrored:
    worked out here on its own, to check the page's drawing against."""

    def __init__(self, box: tuple[float, float], picture: tuple[int, int], fit: str, mirrored: bool) -> None:
        (bw, bh), (pw, ph) = box, picture
        sx, sy = bw / pw, bh / ph
        if fit in ("cover", "contain"):
            sx = sy = max(sx, sy) if fit == "cover" else min(sx, sy)
        self.box, self.scale, self.mirrored = box, (sx, sy), mirrored
        self.offset = ((bw - pw * sx) / 2, (bh - ph * sy) / 2)

    def at(self, x: float, y: float) -> Point:
        shown_x = self.offset[0] + x * self.scale[0]
        return (self.box[0] - shown_x if self.mirrored else shown_x, self.offset[1] + y * self.scale[1])

    def inside(self, point: Point, margin: float = 3) -> bool:
        return margin <= point[0] <= self.box[0] - margin and margin <= point[1] <= self.box[1] - margin


READ_PIXELS = """([selector, points]) => {
  const canvas = document.querySelector(selector);
  const ratio = canvas.width / canvas.clientWidth;
  const ctx = canvas.getContext("2d");
  return points.map(([x, y]) => Array.from(ctx.getImageData(Math.floor(x * ratio), Math.floor(y * ratio), 1, 1).data));
}"""

READ_ALPHA = """(selector) => {
  const canvas = document.querySelector(selector);
  const data = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
  let drawn = 0;
  for (let i = 3; i < data.length; i += 4) if (data[i]) drawn++;
  return { drawn, width: canvas.clientWidth, height: canvas.clientHeight };
}"""


def pixels(page: Any, selector: str, points: list[Point]) -> list[tuple[int, int, int, int]]:
    return [tuple(p) for p in page.evaluate(READ_PIXELS, [selector, [list(p) for p in points]])]


def check_drawing(page: Any, selector: str, hand: dict[str, Any], layout: Layout) -> None:
    """Every joint white on its landmark, every bone drawn between two, the box's corners in the box colour,
    and nothing where the hand is not (the far corners; with a mirror, the unmirrored places)."""
    joints = [layout.at(x, y) for x, y, _ in hand["landmarks"]]
    joints = [p for p in joints if layout.inside(p)]
    assert len(joints) >= 15, "the layout shows too little of the hand to check it"
    for point, (r, g, b, a) in zip(joints, pixels(page, selector, joints), strict=True):
        assert a == 255 and min(r, g, b) >= 235, f"no joint drawn at {point}: {(r, g, b, a)}"

    bones = [(0, 1), (1, 2), (2, 3), (3, 4), (0, 5), (5, 6), (6, 7), (7, 8), (5, 9), (9, 10), (10, 11), (11, 12),
             (9, 13), (13, 14), (14, 15), (15, 16), (13, 17), (0, 17), (17, 18), (18, 19), (19, 20)]
    marks = hand["landmarks"]
    middles = [layout.at((marks[i][0] + marks[j][0]) / 2, (marks[i][1] + marks[j][1]) / 2) for i, j in bones]
    middles = [p for p in middles if layout.inside(p)]
    for point, (_, _, _, a) in zip(middles, pixels(page, selector, middles), strict=True):
        assert a >= 100, f"no bone drawn through {point}"

    x0, y0, x1, y1 = hand["box"]
    corners = [layout.at(x, y) for x, y in ((x0, y0), (x1, y0), (x0, y1), (x1, y1))]
    corners = [p for p in corners if layout.inside(p, 1)]
    assert corners, "no corner of the box in view"
    for point, (r, g, b, a) in zip(corners, pixels(page, selector, corners), strict=True):
        assert a > 0 and r > 200 and b < 160, f"no box corner at {point}: {(r, g, b, a)}"

    (left, top), (right, bottom) = (min(c[0] for c in corners), min(c[1] for c in corners)), (
        max(c[0] for c in corners), max(c[1] for c in corners))
    width, height = layout.box
    # the label's tab sits on the box's top edge: keep clear of it above the box
    away = [p for p in ((1, height - 2), (width - 2, height - 2), (1, 1), (width - 2, 1))
            if not (left - 6 <= p[0] <= right + 6 and top - 30 <= p[1] <= bottom + 6)]
    if layout.mirrored:
        unmirrored = [(width - p[0], p[1]) for p in joints]
        away += [p for p in unmirrored if not (left - 4 <= p[0] <= right + 4) and p[1] > top + 4]
    assert away, "nowhere left to check for an empty canvas"
    for point, (_, _, _, a) in zip(away, pixels(page, selector, away), strict=True):
        assert a == 0, f"something drawn at {point}, away from the hand"


SHOW_ON_A_PICTURE = """async ([hand, fit, mirrored, width, height]) => {
  const { showHand } = await import("/static/hand.js");
  const host = document.createElement("div");
  host.id = "hand-test";
  host.style.position = "relative";
  host.style.width = `${width}px`;
  host.style.height = `${height}px`;
  const img = new Image();
  for (const [key, value] of Object.entries({ display: "block", width: "100%", height: "100%", objectFit: fit })) {
    img.style[key] = value;
  }
  if (mirrored) img.style.transform = "scaleX(-1)";
  const canvas = document.createElement("canvas");
  canvas.className = "hand-overlay";
  host.append(img, canvas);
  document.body.prepend(host);
  showHand(canvas, img, hand); // before the picture has loaded, as a result card does
  img.src = "/static/samples/rock.jpg";
}"""


@pytest.mark.browser
@pytest.mark.parametrize(("fit", "box", "mirrored"), [
    ("fill", (240, 240), False), ("cover", (360, 240), False), ("contain", (360, 240), True),
    ("cover", (200, 300), True), ("fill", (300, 200), False)])
def test_the_hand_is_drawn_where_the_picture_shows_it(browse, fit, box, mirrored):
    b = browse()
    page = b.page
    hand = recorded("rock")["predictions"][0]["hand"]
    page.evaluate(SHOW_ON_A_PICTURE, [hand, fit, mirrored, *box])
    page.wait_for_selector('#hand-test canvas[data-hand="drawn"]')
    assert hand["handedness"] == "Right"
    assert page.get_attribute("#hand-test canvas", "aria-label") == "Left hand found, 95.8%"
    check_drawing(page, "#hand-test canvas", hand, Layout(box, (240, 240), fit, mirrored))
    b.assert_clean_console()


# /predict's handedness is MediaPipe's, for a mirrored picture; the page's pictures are not: it names the other hand
PERSONS_HAND = {"Left": "Right", "Right": "Left"}


def assert_hand_seen(note: Any, handedness: str, score: float) -> None:
    """The note's "Left hand 95.8%" for an answer's "Right" hand: JavaScript rounds 0.xx5 as it does, hence the
    tolerance."""
    shown = note.locator(".hand-seen").inner_text()
    side, word, percent = shown.split()
    assert (side, word) == (PERSONS_HAND[handedness], "hand"), shown
    assert float(percent.rstrip("%")) == pytest.approx(score * 100, abs=0.051), shown


@pytest.mark.browser
def test_a_high_density_screen_gets_a_canvas_of_its_own_pixels(browser, serving):
    context = browser.new_context(device_scale_factor=2, viewport={"width": 800, "height": 600})
    try:
        page = context.new_page()
        page.goto(serving.rest_url + "/")
        page.wait_for_selector('[data-testid="model-status"][data-ready]')
        hand = recorded("rock")["predictions"][0]["hand"]
        page.evaluate(SHOW_ON_A_PICTURE, [hand, "cover", True, 360, 240])
        page.wait_for_selector('#hand-test canvas[data-hand="drawn"]')
        assert page.evaluate("[document.querySelector('#hand-test canvas').width, "
                             "document.querySelector('#hand-test canvas').height]") == [720, 480]
        check_drawing(page, "#hand-test canvas", hand, Layout((360, 240), (240, 240), "cover", True))
    finally:
        context.close()


def answer_with(page: Any, answer: dict[str, Any]) -> None:
    """/predict answers `answer` (a recorded one) from now on."""
    page.unroute("**/predict*")
    page.route("**/predict*", lambda route: route.fulfill(json=answer))


def result_card(page: Any, name: str) -> Any:
    return page.locator(f'[data-testid="result-card"][data-filename="{name}"]')


@pytest.mark.browser
def test_try_it_draws_the_hand_on_a_sample_and_says_when_there_is_none(browse, start_server, trained_model_root):
    # a server whose hand stage reads every picture: its /models says so, and an answer's null hand means none
    b = browse(server=start_server(trained_model_root, hands="on"))
    page = b.page
    rock = recorded("rock")
    answer_with(page, rock)
    page.locator('[data-testid="sample"][data-file="rock.jpg"]').click()
    card = result_card(page, "rock.jpg")
    card.locator('[data-testid="hand-overlay"][data-hand="drawn"]').wait_for()
    note = card.get_by_test_id("hand-note")
    assert note.get_attribute("data-hand") == "found" and note.get_attribute("data-path") == "pose"
    assert note.locator(".hand-seen").inner_text() == "Left hand 95.8%"  # the answer's "Right", unmirrored
    assert "pose classifier" in note.locator(".hand-path").inner_text()
    thumb = card.locator(".thumb").bounding_box()
    selector = '[data-filename="rock.jpg"] [data-testid="hand-overlay"]'
    check_drawing(page, selector, rock["predictions"][0]["hand"],
                  Layout((thumb["width"], thumb["height"]), (240, 240), "cover", False))

    answer_with(page, recorded("no-hand"))
    page.locator('[data-testid="sample"][data-file="no-hand.jpg"]').click()
    card = result_card(page, "no-hand.jpg")
    card.locator('[data-testid="hand-overlay"][data-hand="none"]').wait_for()
    note = card.get_by_test_id("hand-note")
    assert note.locator(".hand-seen").inner_text() == "No hand in view"
    assert note.get_attribute("data-hand") == "none" and note.get_attribute("data-path") == "cnn"
    assert "image CNN" in note.locator(".hand-path").inner_text()
    assert page.evaluate(READ_ALPHA, '[data-filename="no-hand.jpg"] [data-testid="hand-overlay"]')["drawn"] == 0
    b.shot("try-hand")
    b.assert_clean_console()


@pytest.fixture(scope="module")
def camera_picture() -> Image.Image:
    """What the fake camera shows (conftest's hand_video)."""
    from training import synthetic

    return synthetic.render("paper", np.random.default_rng(7), size=240).resize((320, 240), Image.Resampling.BILINEAR)


@pytest.mark.browser
def test_play_draws_the_hand_over_the_mirrored_camera(browse, start_server, trained_model_root, camera_picture):
    from hands import HandStage

    found = HandStage().find(camera_picture)
    assert found is not None
    hand = {"box": [float(v) for v in found.box], "landmarks": found.landmarks.tolist(),
            "handedness": found.handedness, "score": float(found.score)}
    answer = {"model_name": "rps", "model_version": 1, "predictions": [
        {"label": "paper", "confidence": 0.97, "scores": {"paper": 0.97, "rock": 0.02, "scissors": 0.01},
         "path": "pose", "hand": hand}]}
    b = browse("/?min_confidence=0", camera=True, server=start_server(trained_model_root, hands="on"))
    page = b.page
    answer_with(page, answer)
    start_camera(page)
    page.get_by_test_id("play-round").click()
    page.wait_for_selector('[data-testid="camera-hand"][data-hand="drawn"]')
    note = page.get_by_test_id("player-hand").get_by_test_id("hand-note")
    assert_hand_seen(note, found.handedness, found.score)
    assert note.get_attribute("data-path") == "pose"
    video = page.get_by_test_id("camera-video").bounding_box()
    assert page.evaluate("getComputedStyle(document.getElementById('camera-video')).transform").startswith(
        "matrix(-1"), "the camera view is no longer mirrored: this test's layout is wrong"
    check_drawing(page, "#camera-hand", hand, Layout((video["width"], video["height"]), (320, 240), "cover", True))
    b.shot("play-hand")

    # the next round clears the hand before its own answer, which has none
    answer_with(page, {**answer, "predictions": [{**answer["predictions"][0], "path": "cnn", "hand": None}]})
    page.get_by_test_id("play-round").click()
    page.wait_for_selector('[data-testid="camera-hand"][data-hand="none"]')
    assert page.get_by_test_id("player-hand").locator(".hand-seen").inner_text() == "No hand in view"
    assert page.evaluate(READ_ALPHA, "#camera-hand")["drawn"] == 0
    page.get_by_test_id("camera-stop").click()
    assert page.get_by_test_id("camera-hand").get_attribute("data-hand") == ""
    b.assert_clean_console()
