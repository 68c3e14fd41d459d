"""scripts/make_demo_model.py: a version derived from the demo keeps the demo section's figures and note."""

from __future__ import annotations

import importlib.util
import json
import tarfile
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "make_demo_model.py"


def _script():
    spec = importlib.util.spec_from_file_location("make_demo_model", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _version(root: Path, card: dict) -> Path:
    version = root / "rps" / "2"
    (version / "assets.extra").mkdir(parents=True)
    (version / "saved_model.pb").write_bytes(b"graph")
    (version / "assets.extra" / "model_card.json").write_text(json.dumps(card))
    return version


def _card(archive: Path) -> dict:
    with tarfile.open(archive) as tar:
        member = tar.extractfile("assets.extra/model_card.json")
        assert member is not None
        return json.loads(member.read())


def test_a_derived_version_keeps_the_demo_figures_and_note(tmp_path: Path) -> None:
    script = _script()
    old = {"demo": {"provenance": "trained by `imgclf train --seed 1`; Rock Paper Scissors dataset by Laurence "
                                  "Moroney (laurencemoroney.com, 2019), training split (CC BY 2.0); seven hands",
                    "command": "imgclf train --seed 1", "figures": {"validation": "none", "train_time": "13 min"}}}
    version = _version(tmp_path, old)
    target = script.pack(version, "imgclf train --seed 1 && python -m training.pose_version models/rps/1",
                         {"pose_classifier": "99.76%", "train_time": "13 min 4 s"}, target=tmp_path / "demo.tar.gz")
    demo = _card(target)["demo"]
    assert demo["command"].endswith("python -m training.pose_version models/rps/1")
    assert demo["figures"] == {"validation": "none", "train_time": "13 min 4 s", "pose_classifier": "99.76%"}
    assert demo["note"] == "seven hands" and demo["provenance"].endswith("(CC BY 2.0); seven hands")
    assert demo["provenance"].startswith("trained by `imgclf train --seed 1 && python -m training.pose_version")


def test_a_fresh_version_gets_only_what_is_given(tmp_path: Path) -> None:
    script = _script()
    version = _version(tmp_path, {"name": "rps"})
    demo = _card(script.pack(version, "imgclf train", {"a": "1"}, target=tmp_path / "demo.tar.gz"))["demo"]
    assert demo["figures"] == {"a": "1"} and "note" not in demo
    assert demo["provenance"].endswith("(CC BY 2.0)")
