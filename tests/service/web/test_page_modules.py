"""The page's scripts are ES modules: explicit imports, no globals, one camera module for Play and Teach."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import httpx
import pytest

STATIC = Path(__file__).resolve().parents[3] / "service" / "web" / "static"
IMPORT = re.compile(r'^import\s+(?:\{([^}]*)\}\s+from\s+)?"([^"]+)";', re.MULTILINE)
EXPORT = re.compile(r"^export\s+(?:async\s+)?(?:function|const|let|class)\s+([\w$]+)", re.MULTILINE)


class ScriptTags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[dict[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "script":
            self.scripts.append(dict(attrs))


def page_scripts() -> list[dict[str, str | None]]:
    parser = ScriptTags()
    parser.feed((STATIC / "index.html").read_text())
    return parser.scripts


def imports(name: str) -> dict[str, set[str]]:
    """The modules `name` imports (file names in STATIC), each with the names it takes from it."""
    found: dict[str, set[str]] = {}
    for names, target in IMPORT.findall((STATIC / name).read_text()):
        assert target.startswith("./"), f"{name} imports {target}: the page's modules import each other relatively"
        found[target.removeprefix("./")] = {n.strip() for n in names.split(",") if n.strip()}
    return found


def test_every_script_tag_is_a_module():
    scripts = page_scripts()
    assert scripts, "index.html loads no script"
    for attrs in scripts:
        assert attrs.get("type") == "module", attrs
        assert (attrs.get("src") or "").startswith("/static/"), attrs  # no inline script: the CSP forbids it


def test_the_import_graph_resolves_and_reaches_every_script():
    entries = [str(attrs["src"]).removeprefix("/static/") for attrs in page_scripts()]
    reached, todo = set(), list(entries)
    while todo:
        name = todo.pop()
        if name in reached:
            continue
        reached.add(name)
        exported = set(EXPORT.findall((STATIC / name).read_text()))
        assert exported or name in entries, f"{name} is imported but exports nothing"
        for target, names in imports(name).items():
            assert (STATIC / target).is_file(), f"{name} imports the missing {target}"
            missing = names - set(EXPORT.findall((STATIC / target).read_text()))
            assert not missing, f"{name} imports {sorted(missing)} that {target} does not export"
            todo.append(target)
    assert reached == {p.name for p in STATIC.glob("*.js")}, "a script the page never loads"


def test_play_and_teach_share_one_camera_module():
    for tab in ("play.js", "teach.js"):
        assert {"startCamera", "grabFrame"} <= imports(tab).get("camera.js", set()), tab
    # the camera is started and read in camera.js only
    for script in STATIC.glob("*.js"):
        if script.name != "camera.js":
            text = script.read_text()
            assert "getUserMedia(" not in text and "drawImage(" not in text, script.name


def test_scripts_are_served_as_javascript(serving):
    # a module script with any other Content-Type is refused by the browser
    for script in sorted(STATIC.glob("*.js")):
        response = httpx.get(f"{serving.rest_url}/static/{script.name}")
        assert response.status_code == 200, script.name
        assert response.headers["content-type"].split(";")[0] in {"text/javascript", "application/javascript"}


# Run before any of the page's scripts: the window's own properties of a page that has none yet.
RECORD_BEFORE = "Object.defineProperty(window, '__ownBefore', {value: Object.getOwnPropertyNames(window)});"


@pytest.mark.browser
def test_the_page_defines_no_globals(browse, start_server, trained_model_root, tmp_path):
    """Every tab in use (teaching on, both cameras started), the page has put nothing in the global scope:
    no property on window and no global let/const/class (what classic scripts share by load order)."""
    server = start_server(trained_model_root, teach=True, data_root=tmp_path / "data")
    b = browse(server=server, camera=True, init_script=RECORD_BEFORE)
    page = b.page
    page.wait_for_selector('[data-testid="tab-teach"]:not([hidden])')
    page.get_by_test_id("tab-play").click()
    page.get_by_test_id("camera-start").click()
    page.wait_for_selector('[data-testid="camera-video"][data-live="true"]')
    page.get_by_test_id("camera-stop").click()
    page.get_by_test_id("tab-model").click()
    page.locator('[data-testid="version-row"]').first.wait_for()
    page.get_by_test_id("tab-teach").click()
    page.get_by_test_id("teach-camera-start").click()
    page.wait_for_selector('[data-testid="teach-video"][data-live="true"]')
    assert page.locator('[data-testid="teach-class"]').first.is_enabled()

    added = page.evaluate("Object.getOwnPropertyNames(window).filter((n) => !window.__ownBefore.includes(n))")
    assert added == ["__ownBefore"]
    session = page.context.new_cdp_session(page)
    assert session.send("Runtime.globalLexicalScopeNames")["names"] == []
    assert page.locator("script").count() == page.locator('script[type="module"]').count() > 0
    b.assert_clean_console()


# A page served over plain http to another host: the browser gives it no navigator.mediaDevices at all.
NO_CAMERA_API = "Object.defineProperty(Navigator.prototype, 'mediaDevices', {get: () => undefined});"


@pytest.mark.browser
def test_play_and_teach_say_the_browser_gives_no_camera(browse, start_server, trained_model_root, tmp_path):
    server = start_server(trained_model_root, teach=True, data_root=tmp_path / "data")
    b = browse(server=server, camera=True, init_script=NO_CAMERA_API)
    page = b.page
    page.get_by_test_id("tab-play").click()
    page.get_by_test_id("camera-start").click()
    page.locator('[data-testid="camera-message"]', has_text="needs https or localhost").wait_for()
    assert page.get_by_test_id("camera-start").is_enabled() and page.get_by_test_id("play-round").is_disabled()
    page.wait_for_selector('[data-testid="tab-teach"]:not([hidden])')
    page.get_by_test_id("tab-teach").click()
    page.get_by_test_id("teach-camera-start").click()
    message = page.locator('[data-testid="teach-message"][data-error="true"]')
    message.wait_for()
    assert "needs https or localhost" in message.inner_text()
    assert page.locator('[data-testid="teach-class"]').first.is_disabled()
    b.assert_clean_console()
