"""Write the settings table of docs/settings.md from ServeSettings (`--check`: fail when it is out of date)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
START, END = "<!-- settings:start -->", "<!-- settings:end -->"


def table() -> str:
    sys.path.insert(0, str(ROOT))
    from service.settings import ServeSettings, env_name

    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for name, field in ServeSettings.model_fields.items():
        default = field.default_factory() if field.default_factory else field.default  # type: ignore[call-arg]
        if isinstance(default, list):
            default = ",".join(map(str, default)) or "(none)"
        elif isinstance(default, dict):
            default = ",".join(f"{k}={v}" for k, v in default.items()) or "(none)"
        elif default is None:
            default = "(none)"
        elif isinstance(default, bool):
            default = str(default).lower()
        rows.append(f"| `{env_name(name)}` | `{default}` | {field.description or ''} |")
    return "\n".join(rows)


def main() -> int:
    page = ROOT / "docs" / "settings.md"
    text = page.read_text()
    if START not in text or END not in text:
        print(f"docs/settings.md has no {START} ... {END} block to hold the table")
        return 1
    new = re.sub(re.escape(START) + ".*?" + re.escape(END), f"{START}\n{table()}\n{END}", text, flags=re.S)
    if "--check" in sys.argv:
        if new != text:
            print("docs/settings.md settings table is out of date: run python scripts/settings_table.py")
            return 1
        print("docs/settings.md settings table is up to date")
        return 0
    page.write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
