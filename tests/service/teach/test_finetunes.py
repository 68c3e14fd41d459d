"""Fine-tune jobs on a real server: a promoted version swaps in, a rejected one never serves, cancel,
restart mid-job, rollback and restore."""

from __future__ import annotations

import json
import time

import httpx

from tests.service.teach.conftest import hand_jpeg

LABELS = ("paper", "rock", "scissors")


def _teach(server, per_label: int = 8, swap: dict[str, str] | None = None) -> None:
    for label in LABELS:
        for i in range(per_label):
            stored_as = (swap or {}).get(label, label)
            r = httpx.post(f"{server.rest_url}/v1/models/rps/examples", data={"label": stored_as},
                           files={"file": ("f.jpg", hand_jpeg(label, i), "image/jpeg")}, timeout=30)
            assert r.status_code == 201, r.text


def _wait(server, job_id: str, until=lambda job: job["state"] != "running", timeout: float = 300) -> dict:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        job = httpx.get(f"{server.rest_url}/v1/models/rps/finetunes/{job_id}").json()
        if until(job):
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} did not get there: {job}")


def _predict_version(server) -> int:
    r = httpx.post(f"{server.rest_url}/predict", files={"file": ("f.jpg", hand_jpeg("rock", 50), "image/jpeg")})
    assert r.status_code == 200, r.text
    return r.json()["model_version"]


def _versions(server) -> dict[int, dict]:
    return {v["version"]: v for v in httpx.get(f"{server.rest_url}/models").json()["versions"]}


def test_finetune_gate_swap_rollback_restore(teach_server, teach_root):
    assert httpx.post(f"{teach_server.rest_url}/v1/models/rps/finetunes").status_code == 400  # no examples yet
    _teach(teach_server)
    started = httpx.post(f"{teach_server.rest_url}/v1/models/rps/finetunes")
    assert started.status_code == 202, started.text
    job_id = started.json()["id"]
    second = httpx.post(f"{teach_server.rest_url}/v1/models/rps/finetunes")
    assert second.status_code == 409 and job_id in second.json()["error"]
    with httpx.stream("GET", f"{teach_server.rest_url}/v1/models/rps/finetunes/{job_id}/events",
                      timeout=60) as events:
        assert events.headers["content-type"].startswith("text/event-stream")
        states = [json.loads(line[5:]) for line in events.iter_lines() if line.startswith("data:")]
    assert states and states[0]["id"] == job_id
    job = _wait(teach_server, job_id)
    assert job["state"] == "succeeded", job
    gate = job["result"]["gate"]
    assert (gate["promoted"] and gate["holdout_after"] > gate["holdout_before"]) or gate["holdout_after"] == 1.0
    assert gate["reference_after"] >= gate["reference_before"] - 0.01
    assert gate["holdout_count"] == 6  # 20% of 8, per label
    assert job["history"] and job["result"]["version"] == 2 and job["result"]["serving"]
    assert _predict_version(teach_server) == 2
    card = json.loads((teach_root / "rps" / "2" / "assets.extra" / "model_card.json").read_text())
    assert card["gate"] == gate and card["reference_set"]["count"] == 90 and card["finetuned_from"]["version"] == 1

    rolled = httpx.post(f"{teach_server.rest_url}/v1/models/rps/rollback")
    assert rolled.status_code == 200 and rolled.json() == {"withdrawn": 2, "serving": [1]}
    assert _predict_version(teach_server) == 1
    assert "withdrawn" in _versions(teach_server)[2]["error"]
    again = httpx.post(f"{teach_server.rest_url}/v1/models/rps/rollback")
    assert again.status_code == 409  # version 1 is all that is left
    restored = httpx.delete(f"{teach_server.rest_url}/v1/models/rps/withdrawn/2")
    assert restored.status_code == 200 and restored.json()["serving"] == [2]
    assert _predict_version(teach_server) == 2
    assert httpx.delete(f"{teach_server.rest_url}/v1/models/rps/withdrawn/2").status_code == 404


def test_a_version_the_gate_rejects_stays_on_disk_and_never_serves(teach_server, teach_root):
    # rock taught as paper and paper as rock: the held-back examples follow, the reference set does not
    _teach(teach_server, swap={"rock": "paper", "paper": "rock"})
    job_id = httpx.post(f"{teach_server.rest_url}/v1/models/rps/finetunes").json()["id"]
    job = _wait(teach_server, job_id)
    assert job["state"] == "rejected", job
    gate = job["result"]["gate"]
    assert not gate["promoted"] and (gate["reference_after"] < gate["reference_before"] - 0.01
                                     or gate["holdout_after"] <= gate["holdout_before"])
    assert (teach_root / "rps" / "2" / "saved_model.pb").exists() and not job["result"]["serving"]
    status = _versions(teach_server)[2]
    assert status["state"] == "END" and status["error"] == f"rejected by the quality gate: {gate['reason']}"
    assert _predict_version(teach_server) == 1
    r = httpx.post(f"{teach_server.rest_url}/predict?version=2",
                   files={"file": ("f.jpg", hand_jpeg("rock", 50), "image/jpeg")})
    assert r.status_code == 404 and "quality gate" in r.json()["error"]


def test_cancel_halfway_leaves_no_version(teach_server, teach_root):
    _teach(teach_server, per_label=4)
    job_id = httpx.post(f"{teach_server.rest_url}/v1/models/rps/finetunes").json()["id"]
    _wait(teach_server, job_id, until=lambda j: j["progress"].get("phase") in ("features", "train") or
          j["state"] != "running")
    cancelled = httpx.post(f"{teach_server.rest_url}/v1/models/rps/finetunes/{job_id}/cancel", timeout=60)
    assert cancelled.status_code == 200 and cancelled.json()["state"] == "cancelled"
    assert sorted(p.name for p in (teach_root / "rps").iterdir() if p.name.isdigit()) == ["1"]
    assert not list((teach_root / "rps").glob(".tmp-*"))
    assert httpx.delete(f"{teach_server.rest_url}/v1/models/rps/finetunes/{job_id}").json()["state"] == "cancelled"
    assert httpx.post(f"{teach_server.rest_url}/v1/models/rps/finetunes").status_code == 202  # free again


def test_restart_mid_job_leaves_no_half_version_and_keeps_the_examples(start_server, teach_root, tmp_path):
    data = tmp_path / "data"
    server = start_server(teach_root, teach=True, data_root=data, teach_epochs=5)
    _teach(server, per_label=4)
    job_id = httpx.post(f"{server.rest_url}/v1/models/rps/finetunes").json()["id"]
    _wait(server, job_id, until=lambda j: j["progress"].get("phase") in ("features", "train"))
    server.stop()
    (teach_root / "rps" / ".tmp-crashed").mkdir()  # what an export killed with the machine leaves
    (teach_root / "rps" / ".tmp-crashed" / "saved_model.pb").write_bytes(b"half")
    again = start_server(teach_root, teach=True, data_root=data)
    assert sorted(p.name for p in (teach_root / "rps").iterdir() if p.name.isdigit()) == ["1"]
    assert not list((teach_root / "rps").glob(".tmp-*"))
    job = httpx.get(f"{again.rest_url}/v1/models/rps/finetunes/{job_id}").json()
    assert job["state"] == "interrupted" and "no version" in job["error"]
    assert httpx.get(f"{again.rest_url}/v1/models/rps/examples").json()["counts"] == dict.fromkeys(LABELS, 4)
