"""Headless Chromium (Debian's) driven by Playwright, with a fake camera fed from a rendered hand."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

CHROMIUM = Path("/usr/bin/chromium")
REPO = Path(__file__).resolve().parents[3]
ARTIFACTS = REPO / "test-artifacts" / "web"
DOCS_SCREENSHOT = REPO / "docs" / "screenshot.png"
BASE_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def write_y4m(path: Path, image: Image.Image, frames: int = 10) -> None:
    """A YUV4MPEG2 (C420jpeg: full-range BT.601, 2x2 chroma) clip of one still image, looped by Chromium."""
    rgb = np.asarray(image.convert("RGB"), dtype=np.float64)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    y = 0.299 * r + 0.587 * g + 0.114 * b
    cb = 128 - 0.168736 * r - 0.331264 * g + 0.5 * b
    cr = 128 + 0.5 * r - 0.418688 * g - 0.081312 * b

    def plane(p: np.ndarray) -> bytes:
        return np.clip(np.rint(p), 0, 255).astype(np.uint8).tobytes()

    def half(p: np.ndarray) -> np.ndarray:
        return p.reshape(p.shape[0] // 2, 2, p.shape[1] // 2, 2).mean(axis=(1, 3))

    frame = b"FRAME\n" + plane(y) + plane(half(cb)) + plane(half(cr))
    header = f"YUV4MPEG2 W{image.width} H{image.height} F15:1 Ip A1:1 C420jpeg\n".encode()
    path.write_bytes(header + frame * frames)


@dataclass
class Console:
    """Console errors and uncaught exceptions of one page; CSP violations are console errors too."""

    errors: list[str] = field(default_factory=list)
    allowed: list[re.Pattern[str]] = field(default_factory=list)

    def allow(self, pattern: str) -> None:
        """Expect messages like this one (e.g. the browser's note about a deliberate 400)."""
        self.allowed.append(re.compile(pattern))

    def unexpected(self) -> list[str]:
        return [e for e in self.errors if not any(p.search(e) for p in self.allowed)]


@dataclass
class Browsing:
    page: Any
    console: Console
    base_url: str

    def goto(self, path: str = "/") -> None:
        self.page.goto(self.base_url + path)
        # loaded once the model list has arrived (it fills the status pill)
        self.page.wait_for_selector('[data-testid="model-status"][data-ready]')

    def shot(self, name: str, *, docs: bool = False) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        if docs and os.environ.get("IMGCLF_UPDATE_SCREENSHOT") == "1":
            DOCS_SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, DOCS_SCREENSHOT)
        return path

    def assert_clean_console(self) -> None:
        assert self.console.unexpected() == [], "errors in the browser console"


@pytest.fixture(scope="module")
def hand_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from training import synthetic

    image = synthetic.render("paper", np.random.default_rng(7), size=240).resize(
        (320, 240), Image.Resampling.BILINEAR)
    path = tmp_path_factory.mktemp("camera") / "hand.y4m"
    write_y4m(path, image)
    return path


@pytest.fixture(scope="module")
def browser(hand_video: Path) -> Iterator[Any]:
    """One Chromium per module. A fake camera device plays `hand_video`; there is no fake
    permission prompt, so a context that is not granted "camera" gets a real refusal."""
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: run the project's setup "
                    "(apt-get install -y chromium, then pip install -e '.[dev]')", pytrace=False)
    from playwright.sync_api import sync_playwright

    args = [*BASE_ARGS, "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-video-capture={hand_video}"]
    with sync_playwright() as pw:
        launched = pw.chromium.launch(executable_path=str(CHROMIUM), args=args)
        yield launched
        launched.close()


@pytest.fixture
def browse(browser: Any, serving: Any) -> Iterator[Callable[..., Browsing]]:
    """Open pages in fresh contexts; `camera=True` grants the camera, `server=` targets another server."""
    contexts: list[Any] = []

    def open_page(path: str = "/", *, camera: bool = False, viewport: tuple[int, int] = (1000, 800),
                  init_script: str | None = None, server: Any = None, dark: bool = False) -> Browsing:
        base_url = (server or serving).rest_url
        context = browser.new_context(viewport={"width": viewport[0], "height": viewport[1]},
                                      permissions=["camera"] if camera else [],
                                      color_scheme="dark" if dark else "light")
        contexts.append(context)
        if init_script:
            context.add_init_script(init_script)
        page = context.new_page()
        page.set_default_timeout(20_000)
        console = Console()
        page.on("console", lambda m: console.errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda exc: console.errors.append(f"uncaught: {exc}"))
        browsing = Browsing(page, console, base_url)
        browsing.goto(path)
        return browsing

    yield open_page
    for context in contexts:
        context.close()
