"""IMGCLF_GATE_REFERENCE: every new version is scored against the serving one before it takes traffic."""

from __future__ import annotations

import json
import shutil
import time

import httpx

from tests.service.teach.conftest import hand_jpeg


def _export_with_labels(source, model_root, labels):
    """Version 1's weights exported again under `labels` (a mixed-up label order is a broken version)."""
    import tensorflow as tf

    from training.export import ServingModule, export
    from training.model import make_model

    card = json.loads((source / "assets.extra" / "model_card.json").read_text())
    model = make_model(num_classes=len(card["labels"]), arch=card.get("arch") or "talk")
    holder = ServingModule(model, card["labels"])
    tf.train.Checkpoint(root=holder).restore(str(source / "variables" / "variables")).expect_partial()
    return export(holder.model, labels, model_root, "rps", card={"recipe": "relabelled"})


def _wait_for(check, timeout: float = 60):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if (value := check()) is not None:
            return value
        time.sleep(0.2)
    raise AssertionError("timed out")


def test_every_new_version_passes_the_reference_gate(start_server, teach_root, tmp_path):
    (tmp_path / "reference").mkdir()
    server = start_server(teach_root, gate_reference=tmp_path / "reference", gate_tolerance_points=1.0)
    # the reference set: hands labelled with what version 1 answers, so version 1 scores 100% on it
    for i in range(24):
        image = hand_jpeg(("paper", "rock", "scissors")[i % 3], 300 + i)
        answer = httpx.post(f"{server.rest_url}/predict", files={"file": ("f.jpg", image, "image/jpeg")}).json()
        folder = tmp_path / "reference" / answer["predictions"][0]["label"]
        folder.mkdir(exist_ok=True)
        (folder / f"{i}.jpg").write_bytes(image)
    v1 = teach_root / "rps" / "1"

    same = _export_with_labels(v1, teach_root, ("paper", "rock", "scissors"))  # same answers: promoted
    assert _wait_for(lambda: 2 in httpx.get(f"{server.rest_url}/readyz").json()["versions"] or None)

    # every answer renamed (paper -> rock, ...): right on none of the reference set
    broken = _export_with_labels(v1, teach_root, ("rock", "scissors", "paper"))
    status = _wait_for(lambda: next((v for v in httpx.get(f"{server.rest_url}/models").json()["versions"]
                                     if v["version"] == 3 and v["state"] == "END"), None))
    assert status["error"].startswith("rejected by the quality gate: reference set 100.0% (version 2) -> 0.0% "
                                      "(version 3) on 24 images")
    assert "over the 1-point tolerance" in status["error"]
    assert httpx.get(f"{server.rest_url}/readyz").json()["versions"] == [2]
    assert (broken / "saved_model.pb").exists() and same.name == "2"
    shutil.rmtree(broken)
