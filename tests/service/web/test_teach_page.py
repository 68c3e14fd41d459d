"""The Teach tab in headless Chromium: a fake camera per class captures frames, Train, gate, swap, rollback."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import httpx
import pytest
from PIL import Image

from tests.service.web.conftest import BASE_ARGS, CHROMIUM, write_y4m

LABELS = ("paper", "rock", "scissors")
PER_LABEL = 12


def write_clip(path: Path, label: str, frames: int = 24) -> None:
    """A clip of one person's hand showing `label`, moving a little from frame to frame, so every captured
    frame is a new example."""
    import io

    from training.synthetic import held_still

    images = [Image.open(io.BytesIO(data)) for data in held_still(label, frames, seed=1)]
    parts = []
    for image in images:
        write_y4m(path, image, frames=2)  # two video frames per pose
        data = path.read_bytes()
        header, _, body = data.partition(b"\n")
        parts.append(body)
    path.write_bytes(header + b"\n" + b"".join(parts))


@pytest.fixture
def teach_server(start_server, tmp_path):
    """The shipped demo version as version 1, teaching on."""
    from service.demo import install_demo

    assert install_demo(tmp_path / "models", "rps") is not None
    return start_server(tmp_path / "models", teach=True, data_root=tmp_path / "data", teach_epochs=40)


def _open(pw, video: Path, url: str):
    browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=[
        *BASE_ARGS, "--use-fake-device-for-media-stream", f"--use-file-for-fake-video-capture={video}"])
    page = browser.new_context(permissions=["camera"], viewport={"width": 1000, "height": 900}).new_page()
    page.set_default_timeout(30_000)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(url)
    page.wait_for_selector('[data-testid="tab-teach"]:not([hidden])')
    page.click('[data-testid="tab-teach"]')
    return browser, page, errors


def _wait_count(button, ok, timeout: float = 30) -> None:
    """Poll the button's count from here: the page's CSP forbids evaluated predicates."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if ok(int(button.get_attribute("data-count") or 0)):
            return
        time.sleep(0.1)
    raise AssertionError(f"count stayed at {button.get_attribute('data-count')}")


def _settled_count(button, quiet: float = 1.0, timeout: float = 30) -> int:
    """The button's count once it has not changed for `quiet` seconds."""
    end = time.monotonic() + timeout
    last, since = button.get_attribute("data-count"), time.monotonic()
    while time.monotonic() < end:
        time.sleep(0.1)
        now = button.get_attribute("data-count")
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return int(last or 0)
    raise AssertionError(f"count kept changing: {last}")


def _assert_no_hand_note(page, listing: dict, thumbs: bool = True) -> None:
    """The tab counts the examples in which the server found no hand, as the listing does, and marks them."""
    no_hand = [e for e in listing["examples"] if e["hand"] is False and e["label"] != "none"]
    note = page.locator('[data-testid="teach-no-hand"]')
    assert no_hand and note.is_visible()
    assert note.text_content() == f"{len(no_hand)} without a hand: used for the image model only."
    if thumbs:
        assert page.locator('[data-testid="teach-thumb"][data-hand="false"]').count() == len(no_hand)


def _predicted_version(server) -> int:
    from tests.service.teach.conftest import hand_jpeg

    r = httpx.post(f"{server.rest_url}/predict", files={"file": ("f.jpg", hand_jpeg("rock", 77), "image/jpeg")})
    return r.json()["model_version"]


def _taught_server(start_server, trained_model_root, tmp_path, per_label: int, key: str = "", **settings):
    """A teach-enabled server on a copy of the tiny model, with `per_label` stored examples per move."""
    from tests.service.teach.conftest import hand_jpeg

    root = tmp_path / "models"
    shutil.copytree(trained_model_root / "rps" / "1", root / "rps" / "1")
    server = start_server(root, teach=True, data_root=tmp_path / "data", **settings)
    for label in LABELS:
        for i in range(per_label):
            httpx.post(f"{server.rest_url}/v1/models/rps/examples", data={"label": label},
                       headers={"X-API-Key": key} if key else {},
                       files={"file": ("f.jpg", hand_jpeg(label, i), "image/jpeg")}).raise_for_status()
    return server


def test_capture_train_gate_swap_rollback(teach_server, tmp_path):
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing", pytrace=False)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        for label in LABELS:  # one camera per class: Chromium's fake device plays one file
            clip = tmp_path / f"{label}.y4m"
            write_clip(clip, label)
            browser, page, errors = _open(pw, clip, teach_server.rest_url)
            page.click('[data-testid="teach-camera-start"]')
            page.wait_for_selector('[data-testid="teach-video"][data-live="true"]')
            button = page.locator(f'[data-testid="teach-class"][data-label="{label}"]')
            button.hover()
            page.mouse.down()
            _wait_count(button, lambda n: n >= PER_LABEL + 1)
            page.mouse.up()
            count = _settled_count(button)  # a frame sent just before the release is stored after it
            assert page.locator(f'[data-testid="teach-thumb"][data-label="{label}"]').count() >= PER_LABEL + 1
            # one frame too many: delete it from the strip
            page.locator('[data-testid="teach-thumb"] [data-testid="teach-thumb-delete"]').first.click()
            _wait_count(button, lambda n, left=count - 1: n == left)
            assert errors == []
            if label != LABELS[-1]:
                browser.close()
        listing = httpx.get(f"{teach_server.rest_url}/v1/models/rps/examples").json()
        assert all(listing["counts"][label] >= PER_LABEL for label in LABELS), listing["counts"]
        _assert_no_hand_note(page, listing, thumbs=False)  # this page shows only the last move's frames

        page.click('[data-testid="teach-train"]')
        page.wait_for_selector('[data-testid="teach-progress"]:not([hidden])')
        page.wait_for_selector('[data-testid="teach-verdict"][data-state]', timeout=240_000)
        verdict = page.locator('[data-testid="teach-verdict"]')
        assert verdict.get_attribute("data-state") == "succeeded", verdict.text_content()
        assert "now answers every request" in verdict.text_content()
        assert "held-back frames" in verdict.text_content()
        assert page.locator('[data-testid="teach-live"]').text_content().startswith("Epoch 40/40")
        assert _predicted_version(teach_server) == 2
        page.wait_for_selector('[data-testid="model-status"]:has-text("v2 ready")')
        gate = httpx.get(f"{teach_server.rest_url}/v1/models/rps/finetunes").json()["jobs"][0]["result"]["gate"]
        assert gate["holdout_after"] >= 0.95 and gate["reference_after"] >= gate["reference_before"] - 0.01

        page.click('[data-testid="teach-rollback"]')
        page.wait_for_selector('[data-testid="teach-verdict"][data-state="rolled-back"]')
        assert _predicted_version(teach_server) == 1
        page.wait_for_selector('[data-testid="model-status"]:has-text("v1 ready")')
        assert errors == []
        browser.close()


def test_cancel_from_the_page_leaves_no_version(start_server, trained_model_root, tmp_path):
    from playwright.sync_api import sync_playwright

    root = tmp_path / "models"
    server = _taught_server(start_server, trained_model_root, tmp_path, 4, teach_epochs=200)
    clip = tmp_path / "paper.y4m"
    write_clip(clip, "paper", frames=4)
    with sync_playwright() as pw:
        browser, page, errors = _open(pw, clip, server.rest_url)
        page.click('[data-testid="teach-train"]')
        page.wait_for_selector('[data-testid="teach-progress"][data-phase="train"]', timeout=120_000)
        page.click('[data-testid="teach-cancel"]')
        page.wait_for_selector('[data-testid="teach-verdict"][data-state="cancelled"]')
        assert "no version was made" in page.locator('[data-testid="teach-verdict"]').text_content()
        assert errors == []
        browser.close()
    assert sorted(p.name for p in (root / "rps").iterdir() if not p.name.startswith(".")) == ["1"]
    assert not list((root / "rps").glob(".tmp-*"))


def test_capture_past_the_limit_says_why_and_stores_nothing_more(start_server, trained_model_root, tmp_path):
    from playwright.sync_api import sync_playwright

    root = tmp_path / "models"
    shutil.copytree(trained_model_root / "rps" / "1", root / "rps" / "1")
    server = start_server(root, teach=True, data_root=tmp_path / "data", teach_max_examples_per_label=3)
    clip = tmp_path / "rock.y4m"
    write_clip(clip, "rock", frames=12)
    with sync_playwright() as pw:
        browser, page, errors = _open(pw, clip, server.rest_url)
        page.click('[data-testid="teach-camera-start"]')
        page.wait_for_selector('[data-testid="teach-video"][data-live="true"]')
        page.locator('[data-testid="teach-class"][data-label="rock"]').hover()
        page.mouse.down()
        page.wait_for_selector('[data-testid="teach-message"][data-error]')
        page.mouse.up()
        assert "already has 3 examples, the limit" in page.locator('[data-testid="teach-message"]').text_content()
        assert page.locator('[data-testid="teach-thumb"]').count() == 3
        assert errors == []
        browser.close()
    counts = httpx.get(f"{server.rest_url}/v1/models/rps/examples").json()["counts"]
    assert counts["rock"] == 3


def test_server_restart_mid_job_leaves_no_half_version_and_the_page_keeps_the_examples(
        start_server, trained_model_root, tmp_path):
    from playwright.sync_api import sync_playwright

    root, data = tmp_path / "models", tmp_path / "data"
    server = _taught_server(start_server, trained_model_root, tmp_path, 3, teach_epochs=1000)
    clip = tmp_path / "paper.y4m"
    write_clip(clip, "paper", frames=4)
    with sync_playwright() as pw:
        browser, page, errors = _open(pw, clip, server.rest_url)
        page.click('[data-testid="teach-train"]')
        page.wait_for_selector('[data-testid="teach-progress"][data-phase="train"]', timeout=120_000)
        server.stop()  # mid-job: the job is stopped with the server
        again = start_server(root, teach=True, data_root=data)
        page.goto(again.rest_url)
        page.wait_for_selector('[data-testid="tab-teach"]:not([hidden])')
        page.click('[data-testid="tab-teach"]')
        page.wait_for_selector('[data-testid="teach-thumb"]')
        for label in LABELS:
            assert page.locator(f'[data-testid="teach-class"][data-label="{label}"]').get_attribute("data-count") == "3"
        assert page.locator('[data-testid="teach-thumb"]').count() == 9
        assert page.locator('[data-testid="teach-train"]').is_enabled()  # no job left running
        listing = httpx.get(f"{again.rest_url}/v1/models/rps/examples").json()
        assert listing["without_hand"]["rock"] == 3  # the hand stage finds none of these rendered fists
        _assert_no_hand_note(page, listing)
        assert errors == []
        browser.close()
    assert sorted(p.name for p in (root / "rps").iterdir() if not p.name.startswith(".")) == ["1"]
    assert not list((root / "rps").glob(".tmp-*"))
    jobs = httpx.get(f"{again.rest_url}/v1/models/rps/finetunes").json()["jobs"]
    assert [j["state"] for j in jobs] == ["interrupted"]


def test_teach_tab_with_a_key_shows_examples_and_follows_the_job(start_server, trained_model_root, tmp_path):
    """With keys on, the Teach tab appears once the page has one; stored examples (images an <img> could not
    fetch with a key) and the job's progress stream (which EventSource could not open with one) both work."""
    from playwright.sync_api import sync_playwright

    key = "teach-page-key-0123456789abcdef"
    server = _taught_server(start_server, trained_model_root, tmp_path, 3, key=key, api_keys=key,
                            auth_exempt_paths="/healthz,/readyz,/metrics,/,/static/", teach_epochs=200)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=BASE_ARGS)
        page = browser.new_context(viewport={"width": 1000, "height": 900}).new_page()
        page.set_default_timeout(30_000)
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(server.rest_url)
        page.wait_for_selector('[data-testid="key-form"]:not([hidden])')
        assert page.locator('[data-testid="tab-teach"]').is_hidden()
        page.fill('[data-testid="key-input"]', key)
        page.click('[data-testid="key-save"]')
        page.wait_for_selector('[data-testid="tab-teach"]:not([hidden])')
        page.click('[data-testid="tab-teach"]')
        # polled from Python: the page's CSP forbids the eval a wait_for_function string may need
        thumbs = page.locator('[data-testid="teach-thumb"] img')
        deadline = time.monotonic() + 30
        while not (thumbs.count() == 9 and all(thumbs.evaluate_all(
                "imgs => imgs.map((img) => img.complete && img.naturalWidth > 0)"))):
            assert time.monotonic() < deadline, "the stored examples' images did not load"
            time.sleep(0.1)
        page.click('[data-testid="teach-train"]')
        page.wait_for_selector('[data-testid="teach-progress"][data-phase="train"]', timeout=120_000)
        page.locator('[data-testid="teach-live"]', has_text="Epoch").wait_for()
        page.click('[data-testid="teach-cancel"]')
        page.wait_for_selector('[data-testid="teach-verdict"][data-state="cancelled"]')
        assert errors == []
        browser.close()
