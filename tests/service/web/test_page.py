"""The page at GET / in a real Chromium against a real server: upload, play, camera errors, model choice."""

from __future__ import annotations

import hashlib
import io
import re
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image

pytestmark = pytest.mark.browser

MOVES = ("paper", "rock", "scissors")
BEATS = {"rock": "scissors", "paper": "rock", "scissors": "paper"}


def hand_jpeg(kind: str, seed: int) -> bytes:
    from training import synthetic

    buf = io.BytesIO()
    synthetic.render(kind, np.random.default_rng(seed), size=200).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def upload(page: Any, files: dict[str, tuple[str, bytes]]) -> None:
    page.set_input_files('[data-testid="file-input"]', [
        {"name": name, "mimeType": mime, "buffer": data} for name, (mime, data) in files.items()])


def card(page: Any, filename: str) -> Any:
    return page.locator(f'[data-testid="result-card"][data-filename="{filename}"]')


def shown_percent(text: str) -> float:
    return float(text.strip().rstrip("%")) / 100


def multipart_file(request: Any) -> bytes:
    """The one file part of a multipart/form-data request the page sent."""
    boundary = request.headers["content-type"].split("boundary=")[1].encode()
    parts = [p for p in request.post_data_buffer.split(b"--" + boundary) if b"\r\n\r\n" in p]
    assert len(parts) == 1
    return parts[0].split(b"\r\n\r\n", 1)[1].removesuffix(b"\r\n")


def score(page: Any) -> dict[str, int]:
    return {who: int(page.get_by_test_id(f"score-{who}").inner_text()) for who in ("player", "computer", "draws")}


def test_upload_shows_the_servers_answer(browse, serving):
    b = browse()
    page = b.page
    images = {f"{kind}.jpg": ("image/jpeg", hand_jpeg(kind, seed)) for seed, kind in enumerate(MOVES)}
    upload(page, images)
    for name, (_, data) in images.items():
        expected = httpx.post(f"{serving.rest_url}/predict", files={"file": (name, data)}).json()
        prediction = expected["predictions"][0]
        shown = card(page, name)
        label = shown.get_by_test_id("result-label")
        label.wait_for()
        assert label.get_attribute("data-label") == prediction["label"]
        assert label.inner_text().lower() == prediction["label"]
        confidence = shown_percent(shown.get_by_test_id("result-confidence").inner_text())
        assert round(confidence, 2) == round(prediction["confidence"], 2)
        assert shown.get_by_test_id("result-model").inner_text() == f"{expected['model_name']} v1"
        assert shown.locator(".bar").count() == 3
    b.shot("try-results")

    b.console.allow(r"Failed to load resource: the server responded with a status of 400")
    text = b"these are notes, not a photo"
    upload(page, {"notes.txt": ("text/plain", text)})
    error = card(page, "notes.txt").get_by_test_id("result-error")
    error.wait_for()
    server_says = httpx.post(f"{serving.rest_url}/predict", files={"file": ("notes.txt", text)})
    assert server_says.status_code == 400
    assert error.inner_text() == server_says.json()["error"]
    assert page.get_by_test_id("try-message").inner_text() == "0 classified, 1 failed."
    b.shot("try-not-an-image")
    b.assert_clean_console()


def test_too_large_file_shows_the_servers_limit(browse, start_server, trained_model_root):
    server = start_server(trained_model_root, max_body_bytes=4096)
    b = browse(server=server)
    b.console.allow(r"Failed to load resource: the server responded with a status of 413")
    big = hand_jpeg("rock", 3) + b"\0" * 8192
    upload(b.page, {"big.jpg": ("image/jpeg", big)})
    error = card(b.page, "big.jpg").get_by_test_id("result-error")
    error.wait_for()
    server_says = httpx.post(f"{server.rest_url}/predict", files={"file": ("big.jpg", big)})
    assert server_says.status_code == 413
    # the size in the message is the whole multipart body, whose boundary length differs per client
    assert re.sub(r"\d+ bytes", "N bytes", error.inner_text()) == re.sub(r"\d+ bytes", "N bytes",
                                                                          server_says.json()["error"])
    assert "4096 byte limit" in error.inner_text()
    b.shot("try-too-large")
    b.assert_clean_console()


def record_predicts(page: Any, requests: list[Any]) -> None:
    """Keep each /predict request; intercepted, because only then does Chromium hand over a blob body."""
    def keep(route: Any) -> None:
        requests.append(route.request)
        route.continue_()

    page.route("**/predict*", keep)


def start_camera(page: Any) -> None:
    page.get_by_test_id("tab-play").click()
    page.get_by_test_id("camera-start").click()
    page.wait_for_selector('[data-testid="camera-video"][data-live="true"]')
    assert page.get_by_test_id("play-round").is_enabled()


def play(b: Any, frames: list[Any], shot: str | None = None) -> dict[str, Any]:
    """One round: the computer's move is committed (hidden) before the frame is sent, then revealed."""
    page = b.page
    page.get_by_test_id("play-round").click()
    move = page.get_by_test_id("computer-move")
    page.wait_for_selector('[data-testid="round"][data-sequence="commit"]')
    assert "Computer has chosen" in page.get_by_test_id("computer-status").inner_text()
    assert move.get_attribute("data-revealed") == "false" and move.inner_text() == "?"
    commitment = page.get_by_test_id("commitment").get_attribute("data-commitment")
    if shot:
        b.shot(shot)
    page.wait_for_selector('[data-testid="round"][data-sequence="commit,capture,classify,reveal"]')
    computer = move.get_attribute("data-move")
    nonce = page.get_by_test_id("commitment").get_attribute("data-nonce")
    # the hidden move shown before the capture is the one revealed after it
    assert hashlib.sha256(f"{computer}:{nonce}".encode()).hexdigest() == commitment
    verdict = page.get_by_test_id("round-result")
    return {"computer": computer, "player": page.get_by_test_id("player-move").get_attribute("data-move"),
            "outcome": verdict.get_attribute("data-outcome"), "text": verdict.inner_text(), "frame": frames[-1]}


def test_play_rounds_with_the_fake_camera(browse, serving):
    b = browse("/?min_confidence=0", camera=True)
    page = b.page
    frames: list[Any] = []
    record_predicts(page, frames)
    start_camera(page)
    b.shot("play-camera-on")

    totals = []
    for round_no in (1, 2):
        played = play(b, frames, shot="play-committed" if round_no == 1 else None)
        assert len(frames) == round_no
        sent = multipart_file(played["frame"])
        assert Image.open(io.BytesIO(sent)).format == "JPEG"
        expected = httpx.post(f"{serving.rest_url}/predict", files={"file": ("frame.jpg", sent)}).json()
        detected = expected["predictions"][0]
        assert played["computer"] in MOVES
        assert played["player"] == detected["label"]
        shown = page.get_by_test_id("player-confidence").inner_text()
        assert round(shown_percent(shown.split()[0]), 2) == round(detected["confidence"], 2)
        you, cpu = played["player"], played["computer"]
        outcome = "draw" if you == cpu else "player" if BEATS[you] == cpu else "computer"
        assert played["outcome"] == outcome
        assert {"draw": "Draw", "player": "You win", "computer": "Computer wins"}[outcome] in played["text"]
        now = score(page)
        totals.append(sum(now.values()))
        b.shot(f"play-round-{round_no}")
    assert totals == [1, 2]
    b.assert_clean_console()


def test_unsure_frame_asks_for_the_hand_again(browse):
    b = browse("/?min_confidence=0.999", camera=True)
    page = b.page
    assert "99.9%" in page.get_by_test_id("threshold-note").inner_text()
    frames: list[Any] = []
    record_predicts(page, frames)
    start_camera(page)
    played = play(b, frames)
    shown = shown_percent(page.get_by_test_id("player-confidence").inner_text().split()[0])
    assert shown < 0.999, "the tiny test model should never be this sure"
    assert played["outcome"] == "retry"
    assert "show your hand again" in played["text"]
    assert score(page) == {"player": 0, "computer": 0, "draws": 0}
    b.shot("play-unsure")
    b.assert_clean_console()


def camera_error(b) -> tuple[str | None, str]:
    """Press "Start camera" and return the (error name, message) the page shows."""
    b.page.get_by_test_id("tab-play").click()
    b.page.get_by_test_id("camera-start").click()
    message = b.page.locator('[data-testid="camera-message"][data-error]')
    message.wait_for()
    assert b.page.get_by_test_id("play-round").is_disabled()
    return message.get_attribute("data-error"), message.inner_text()


def test_camera_refused(browse):
    b = browse()  # no camera permission and no fake prompt: Chromium refuses for real
    name, text = camera_error(b)
    assert name == "NotAllowedError"
    assert "permission was refused" in text
    assert b.page.get_by_test_id("camera-start").is_enabled()
    b.shot("play-camera-refused")
    b.assert_clean_console()


# What Chromium answers on a machine with no camera; faked so the test does not depend on the host.
NO_CAMERA = """
navigator.mediaDevices.getUserMedia = () =>
  Promise.reject(new DOMException("Requested device not found", "NotFoundError"));
"""


def test_no_camera(browse):
    b = browse(camera=True, init_script=NO_CAMERA)
    name, text = camera_error(b)
    assert name == "NotFoundError"
    assert "No camera was found" in text
    b.shot("play-no-camera")
    b.assert_clean_console()


def test_model_section_and_label_choice(browse, sample_jpeg):
    b = browse()
    page = b.page
    page.get_by_test_id("tab-model").click()
    row = page.locator('[data-testid="version-row"][data-version="1"]')
    assert row.get_by_test_id("version-state").inner_text() == "AVAILABLE"
    assert row.get_by_test_id("version-labels").inner_text() == "stable"
    assert row.get_by_test_id("version-runtime").inner_text() == "tensorflow"  # IMGCLF_RUNTIME's default
    assert page.get_by_test_id("card-runtime").inner_text().startswith("tensorflow (IMGCLF_RUNTIME=tensorflow")
    assert "paper, rock, scissors" in row.inner_text()
    b.shot("model")

    page.get_by_test_id("model-select").select_option("label:stable")
    urls: list[str] = []
    page.on("request", lambda r: urls.append(r.url) if "/predict" in r.url else None)
    page.get_by_test_id("tab-try").click()
    upload(page, {"hand.jpg": ("image/jpeg", sample_jpeg)})
    card(page, "hand.jpg").get_by_test_id("result-label").wait_for()
    assert len(urls) == 1 and httpx.URL(urls[0]).params.get("label") == "stable"
    assert card(page, "hand.jpg").get_by_test_id("result-model").inner_text().endswith("v1")
    b.assert_clean_console()


def test_tabs_work_from_the_keyboard(browse):
    b = browse()
    page = b.page
    page.get_by_test_id("tab-try").focus()
    page.keyboard.press("ArrowRight")
    assert page.get_by_test_id("tab-play").get_attribute("aria-selected") == "true"
    assert page.get_by_test_id("panel-play").is_visible() and not page.get_by_test_id("panel-try").is_visible()
    page.keyboard.press("End")
    assert page.evaluate("document.activeElement.id") == "tab-model"
    assert page.get_by_test_id("panel-model").is_visible()
    page.keyboard.press("ArrowRight")  # wraps around
    assert page.get_by_test_id("panel-try").is_visible()
    b.assert_clean_console()


def test_phone_width_has_no_horizontal_scroll(browse, sample_jpeg):
    b = browse(camera=True, viewport=(375, 740), dark=True)
    page = b.page
    b.console.allow(r"Failed to load resource: the server responded with a status of 400")
    upload(page, {"a-photo-with-a-rather-long-file-name-from-a-phone-camera.jpg": ("image/jpeg", sample_jpeg),
                  "notes.txt": ("text/plain", b"not an image")})
    page.get_by_test_id("result-label").wait_for()
    page.get_by_test_id("result-error").wait_for()
    widths = {}
    for tab in ("try", "play", "model"):
        page.get_by_test_id(f"tab-{tab}").click()
        if tab == "play":
            start_camera(page)
        if tab == "model":
            page.locator('[data-testid="version-row"]').first.wait_for()
        assert page.get_by_test_id(f"panel-{tab}").is_visible()
        widths[tab] = page.evaluate("document.scrollingElement.scrollWidth")
        b.shot(f"phone-{tab}")
    assert all(width <= 375 for width in widths.values()), widths
    b.assert_clean_console()


# A paste and a drop as the browser delivers them: events carrying a DataTransfer with the image.
DELIVER = """
([kind, bytes]) => {
  const data = new DataTransfer();
  data.items.add(new File([new Uint8Array(bytes)], kind === "paste" ? "image.png" : "dropped.jpg",
                          { type: "image/jpeg" }));
  const target = kind === "paste" ? document.body : document.getElementById("dropzone");
  const event = kind === "paste" ? new ClipboardEvent("paste", { clipboardData: data, bubbles: true })
                                 : new DragEvent("drop", { dataTransfer: data, bubbles: true, cancelable: true });
  target.dispatchEvent(event);
}
"""


def test_paste_and_drop(browse, serving, sample_jpeg):
    b = browse()
    page = b.page
    page.get_by_test_id("tab-model").click()  # a paste switches back to Try it
    expected = httpx.post(f"{serving.rest_url}/predict", files={"file": ("hand.jpg", sample_jpeg)}).json()
    page.evaluate(DELIVER, ["paste", list(sample_jpeg)])
    assert page.get_by_test_id("panel-try").is_visible()
    page.evaluate(DELIVER, ["drop", list(sample_jpeg)])
    for name in ("pasted-1.jpeg", "dropped.jpg"):
        label = card(page, name).get_by_test_id("result-label")
        label.wait_for()
        assert label.get_attribute("data-label") == expected["predictions"][0]["label"]
    b.assert_clean_console()


def test_console_check_sees_csp_violations(browse):
    b = browse()
    with b.page.expect_console_message(lambda m: m.type == "error"):
        b.page.evaluate("""() => {
          const script = document.createElement("script");
          script.textContent = "window.injected = 1";
          document.body.append(script);
        }""")
    assert any("Content Security Policy" in e for e in b.console.unexpected())
    assert b.page.evaluate("window.injected") is None


PAGE_KEY = "page-test-key-0123456789abcdef"


def test_a_server_with_keys_asks_for_one_and_sends_it(browse, start_server, trained_model_root, sample_jpeg):
    """With IMGCLF_API_KEYS and the page's own files exempt (docs/operations.md), the page asks
    for a key on the first 401, then sends it with every call: models, classify."""
    exempt = "/healthz,/readyz,/metrics,/,/static/"
    server = start_server(trained_model_root, api_keys=PAGE_KEY, auth_exempt_paths=exempt)
    b = browse(server=server)
    page = b.page
    b.console.allow(r"Failed to load resource: the server responded with a status of 401")
    form = page.get_by_test_id("key-form")
    form.wait_for()
    assert "needs an API key" in form.inner_text()
    assert page.get_by_test_id("model-status").get_attribute("data-ready") == "false"

    page.get_by_test_id("key-input").fill("not-the-key")
    page.get_by_test_id("key-save").click()
    # locators, not wait_for_function: the page's CSP forbids the eval Playwright's polling may need
    page.locator("#key-label", has_text="refused").wait_for()
    assert form.is_visible()

    sent: list[Any] = []
    page.on("request", lambda r: sent.append(r) if r.url.endswith(("/models", "/predict")) else None)
    page.get_by_test_id("key-input").fill(PAGE_KEY)
    page.get_by_test_id("key-save").click()
    page.wait_for_selector('[data-testid="model-status"][data-ready="true"]')
    assert form.is_hidden()
    upload(page, {"hand.jpg": ("image/jpeg", sample_jpeg)})
    label = card(page, "hand.jpg").get_by_test_id("result-label")
    label.wait_for()
    expected = httpx.post(f"{server.rest_url}/predict", files={"file": ("hand.jpg", sample_jpeg)},
                          headers={"X-API-Key": PAGE_KEY}).json()["predictions"][0]["label"]
    assert label.get_attribute("data-label") == expected
    assert {r.url.rsplit("/", 1)[1] for r in sent} == {"models", "predict"}
    assert all(r.headers.get("x-api-key") == PAGE_KEY for r in sent)
    # kept for this tab: a reload needs no new prompt
    b.goto()
    page.wait_for_selector('[data-testid="model-status"][data-ready="true"]')
    assert page.get_by_test_id("key-form").is_hidden()
    b.shot("key-accepted")
    b.assert_clean_console()


def test_docs_authorize_sends_the_key(browse, start_server, trained_model_root):
    """With keys on and /docs exempt, Swagger UI (served offline) offers Authorize; a call it then sends
    carries the key and is answered."""
    exempt = "/healthz,/readyz,/metrics,/docs,/docs/,/openapi.json,/,/static/"
    server = start_server(trained_model_root, api_keys=PAGE_KEY, auth_exempt_paths=exempt)
    b = browse(server=server)
    page = b.page
    page.goto(f"{server.rest_url}/docs")
    page.locator("button.authorize").first.click()
    page.locator('.modal-ux input[type="text"], .modal-ux input[type="password"]').first.fill(PAGE_KEY)
    page.locator(".modal-ux button.authorize").first.click()
    page.locator(".modal-ux button.close-modal").first.click()
    sent: list[Any] = []
    page.on("request", lambda r: sent.append(r) if r.url.endswith("/models") else None)
    page.locator("#operations-models-models_models_get button.opblock-summary-control").click()
    page.get_by_role("button", name="Try it out").click()
    page.get_by_role("button", name="Execute").click()
    page.locator("#operations-models-models_models_get .live-responses-table .response-col_status").first.wait_for()
    assert sent and sent[-1].headers.get("x-api-key") == PAGE_KEY
    status = page.locator("#operations-models-models_models_get .live-responses-table tbody .response-col_status")
    assert status.first.inner_text().strip().startswith("200")
    b.console.allow(r"status of 401")  # the page at / that browse() opened first, before it had a key
    b.assert_clean_console()


def test_docs_render_offline(browse, serving):
    """/docs draws every operation of the OpenAPI 3.1 document from the installed assets, with no
    console error (CSP included). Swagger UI 4 showed "Unable to render this definition" here."""
    b = browse()
    page = b.page
    page.goto(f"{serving.rest_url}/docs")
    page.locator("#operations-classify-predict_predict_post").wait_for()
    assert "Unable to render" not in page.inner_text("#swagger-ui")
    assert page.locator(".opblock").count() >= 20
    b.shot("docs")
    b.assert_clean_console()
