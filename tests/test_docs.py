"""The README and docs/ document what the code does: every setting with its default, the two commands, every
module named in the README's map, and no link to a file that is not there."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
PAGES = sorted((ROOT / "docs").glob("*.md"))
MODULE_PACKAGES = ("service", "training", "version_format", "hands")
README_MAX_LINES = 250
# [text](target) and ![alt](target); code (fenced or inline) is not prose and is dropped first
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)
INLINE_CODE = re.compile(r"`[^`\n]*`")
EXTERNAL = re.compile(r"^[a-z][a-z0-9+.-]*:", re.IGNORECASE)  # https:, mailto:, ...


def links_of(text: str) -> list[str]:
    prose = INLINE_CODE.sub("", FENCE.sub("", text))
    return LINK.findall(prose)


def relative_links(path: Path) -> list[str]:
    return [target for target in links_of(path.read_text()) if not EXTERNAL.match(target)]


def section(text: str, heading: str) -> str:
    """The text under a `## heading`, up to the next heading of the same level (its ### subsections included)."""
    match = re.search(rf"^## {re.escape(heading)}\n(.*?)(?=^## |\Z)", text, re.MULTILINE | re.DOTALL)
    assert match, f"README.md has no '## {heading}' section"
    return match.group(1)


def project_modules() -> list[str]:
    r = subprocess.run(["git", "ls-files", *(f"{p}/*.py" for p in MODULE_PACKAGES)], cwd=ROOT,
                       capture_output=True, text=True, timeout=60)
    if r.returncode == 0 and r.stdout.strip():
        paths = r.stdout.split()
    else:  # not a git checkout (an unpacked archive): the files on disk
        paths = [str(p.relative_to(ROOT)) for package in MODULE_PACKAGES for p in (ROOT / package).rglob("*.py")]
    return sorted(p for p in paths if "_generated" not in Path(p).parts and Path(p).name != "__init__.py")


def test_settings_table_matches_the_code():
    r = subprocess.run([sys.executable, "scripts/settings_table.py", "--check"], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr


def test_quick_start_is_the_two_make_targets_ci_runs():
    readme = README.read_text()
    assert "make run" in readme and "make test" in readme
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in ci
    makefile = (ROOT / "Makefile").read_text()
    assert "serve --bootstrap" in makefile


def test_the_readme_is_a_map_of_at_most_250_lines():
    lines = len(README.read_text().splitlines())
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines; move detail into a docs/ page and link it"


def test_every_relative_link_points_to_a_file_without_an_anchor():
    broken = []
    for path in [README, *PAGES]:
        for target in relative_links(path):
            where = f"{path.relative_to(ROOT)}: ({target})"
            if "#" in target:
                broken.append(f"{where} has an anchor, which breaks silently when a heading changes: link the file")
            elif not (path.parent / target).resolve().is_file():
                broken.append(f"{where} names no file")
    assert not broken, "\n".join(broken)


def test_every_docs_page_is_linked_from_the_readme():
    linked = {(ROOT / target).resolve() for target in relative_links(README)}
    assert PAGES
    assert not [p.name for p in PAGES if p.resolve() not in linked], "docs pages the README does not link"


def test_every_module_is_named_in_the_readme_architecture():
    architecture = section(README.read_text(), "Architecture")
    modules = project_modules()
    assert len(modules) > 40, modules  # the listing itself worked
    missing = [m for m in modules if f"`{m}`" not in architecture]
    assert not missing, "modules without their line in README.md's architecture section: " + ", ".join(missing)


def test_the_link_checks_see_what_they_check():
    # the checks above pass vacuously if the link pattern stops matching: hold it to known cases
    text = "[a](docs/x.md) ![b](docs/y.png) [c](https://e.org/z) `[d](no.md)`\n```\n[e](no.md)\n```\n"
    assert links_of(text) == ["docs/x.md", "docs/y.png", "https://e.org/z"]
    assert "docs/screenshot.png" in relative_links(README)
