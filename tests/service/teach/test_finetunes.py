"""Fine-tune jobs on a real server: a promoted version swaps in, a rejected one never serves, cancel,
restart mid-job, rollback and restore."""

from __future__ import annotations

import json
import time

import httpx

from tests.service.teach.conftest import frame_jpeg

LABELS = ("paper", "rock", "scissors")


def _teach(server, per_label: int = 8, swap: dict[str, str] | None = None) -> None:
    from training.synthetic import held_still

    frames = {label: held_still(label, per_label, seed=1) for label in LABELS}
    for label in LABELS:
        for i in range(per_label):
            stored_as = (swap or {}).get(label, label)
            r = httpx.post(f"{server.rest_url}/v1/models/rps/examples", data={"label": stored_as},
                           files={"file": ("f.jpg", frames[label][i], "image/jpeg")}, timeout=30)
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
    r = httpx.post(f"{server.rest_url}/predict", files={"file": ("f.jpg", frame_jpeg("rock", 0, seed=9), "image/jpeg")})
    assert r.status_code == 200, r.text
    return r.json()["model_version"]


def _versions(server) -> dict[int, dict]:
    return {v["version"]: v for v in httpx.get(f"{server.rest_url}/models").json()["versions"]}


def test_finetune_gate_swap_rollback_restore(demo_server, demo_root):
    assert httpx.post(f"{demo_server.rest_url}/v1/models/rps/finetunes").status_code == 409  # no examples yet
    _teach(demo_server)
    started = httpx.post(f"{demo_server.rest_url}/v1/models/rps/finetunes")
    assert started.status_code == 202, started.text
    job_id = started.json()["id"]
    second = httpx.post(f"{demo_server.rest_url}/v1/models/rps/finetunes")
    assert second.status_code == 409 and job_id in second.json()["error"]
    with httpx.stream("GET", f"{demo_server.rest_url}/v1/models/rps/finetunes/{job_id}/events",
                      timeout=60) as events:
        assert events.headers["content-type"].startswith("text/event-stream")
        states = [json.loads(line[5:]) for line in events.iter_lines() if line.startswith("data:")]
    assert states and states[0]["id"] == job_id
    job = _wait(demo_server, job_id)
    assert job["state"] == "succeeded", job
    gate = job["result"]["gate"]
    assert (gate["promoted"] and gate["holdout_after"] > gate["holdout_before"]) or gate["holdout_after"] == 1.0
    assert gate["reference_after"] >= gate["reference_before"] - 0.01
    assert gate["holdout_count"] == 6  # 20% of 8, per label
    assert job["history"] and job["result"]["version"] == 2 and job["result"]["serving"]
    assert _predict_version(demo_server) == 2
    card = json.loads((demo_root / "rps" / "2" / "assets.extra" / "model_card.json").read_text())
    assert card["gate"] == gate and card["reference_set"]["count"] == 120 and card["finetuned_from"]["version"] == 1

    rolled = httpx.post(f"{demo_server.rest_url}/v1/models/rps/rollback")
    assert rolled.status_code == 200 and rolled.json() == {"withdrawn": 2, "serving": [1]}
    assert _predict_version(demo_server) == 1
    assert "withdrawn" in _versions(demo_server)[2]["error"]
    again = httpx.post(f"{demo_server.rest_url}/v1/models/rps/rollback")
    assert again.status_code == 409  # version 1 is all that is left
    restored = httpx.delete(f"{demo_server.rest_url}/v1/models/rps/withdrawn/2")
    assert restored.status_code == 200 and restored.json()["serving"] == [2]
    assert _predict_version(demo_server) == 2
    assert httpx.delete(f"{demo_server.rest_url}/v1/models/rps/withdrawn/2").status_code == 404


def test_a_version_the_gate_rejects_stays_on_disk_and_never_serves(demo_server, demo_root):
    # every move taught as another: the held-back examples follow, the reference set does not
    _teach(demo_server, per_label=30, swap={"rock": "paper", "paper": "scissors", "scissors": "rock"})
    job_id = httpx.post(f"{demo_server.rest_url}/v1/models/rps/finetunes").json()["id"]
    job = _wait(demo_server, job_id)
    assert job["state"] == "rejected", job["result"]
    gate = job["result"]["gate"]
    assert not gate["promoted"] and gate["reason"].startswith("reference accuracy would drop")
    assert (demo_root / "rps" / "2" / "saved_model.pb").exists() and not job["result"]["serving"]
    status = _versions(demo_server)[2]
    assert status["state"] == "END" and status["error"] == f"rejected by the quality gate: {gate['reason']}"
    assert _predict_version(demo_server) == 1
    r = httpx.post(f"{demo_server.rest_url}/predict?version=2",
                   files={"file": ("f.jpg", frame_jpeg("rock", 0, seed=9), "image/jpeg")})
    assert r.status_code == 404 and "quality gate" in r.json()["error"]


def test_cancel_halfway_leaves_no_version(start_server, demo_root, tmp_path):
    server = start_server(demo_root, teach=True, data_root=tmp_path / "data", teach_epochs=1000)
    _teach(server, per_label=4)
    job_id = httpx.post(f"{server.rest_url}/v1/models/rps/finetunes").json()["id"]
    _wait(server, job_id, until=lambda j: j["progress"].get("phase") == "train")
    cancelled = httpx.post(f"{server.rest_url}/v1/models/rps/finetunes/{job_id}/cancel", timeout=60)
    assert cancelled.status_code == 200 and cancelled.json()["state"] == "cancelled"
    assert sorted(p.name for p in (demo_root / "rps").iterdir() if p.name.isdigit()) == ["1"]
    assert not list((demo_root / "rps").glob(".tmp-*"))
    assert httpx.delete(f"{server.rest_url}/v1/models/rps/finetunes/{job_id}").json()["state"] == "cancelled"
    assert httpx.post(f"{server.rest_url}/v1/models/rps/finetunes").status_code == 202  # free again


def test_restart_mid_job_leaves_no_half_version_and_keeps_the_examples(start_server, demo_root, tmp_path):
    data = tmp_path / "data"
    server = start_server(demo_root, teach=True, data_root=data, teach_epochs=1000)  # still training at stop
    _teach(server, per_label=4)
    job_id = httpx.post(f"{server.rest_url}/v1/models/rps/finetunes").json()["id"]
    _wait(server, job_id, until=lambda j: j["progress"].get("phase") == "train")
    server.stop()
    (demo_root / "rps" / ".tmp-crashed").mkdir()  # what an export killed with the machine leaves
    (demo_root / "rps" / ".tmp-crashed" / "saved_model.pb").write_bytes(b"half")
    again = start_server(demo_root, teach=True, data_root=data)
    assert sorted(p.name for p in (demo_root / "rps").iterdir() if p.name.isdigit()) == ["1"]
    assert not list((demo_root / "rps").glob(".tmp-*"))
    job = httpx.get(f"{again.rest_url}/v1/models/rps/finetunes/{job_id}").json()
    assert job["state"] == "interrupted" and "no version" in job["error"]
    assert httpx.get(f"{again.rest_url}/v1/models/rps/examples").json()["counts"] == {"none": 0,
                                                                                    **dict.fromkeys(LABELS, 4)}
