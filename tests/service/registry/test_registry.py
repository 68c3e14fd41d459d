"""Registry behaviour with real SavedModels: hot reload under load, bad versions, policies, labels."""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

import httpx
import pytest

from training.train import TrainConfig, train


def wait_for(predicate, timeout: float = 60, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout} s")


def copy_version(src_root: Path, dst_root: Path, version: int, src_version: int = 1) -> Path:
    """Publish a copy of a trained version the way export does: temp dir, then rename."""
    base = dst_root / "rps"
    base.mkdir(parents=True, exist_ok=True)
    tmp = base / f".tmp-copy-{version}"
    shutil.copytree(src_root / "rps" / str(src_version), tmp)
    target = base / str(version)
    tmp.rename(target)
    return target


def predict_version(url: str, image: bytes, **params) -> httpx.Response:
    return httpx.post(f"{url}/predict", content=image, headers={"content-type": "image/jpeg"},
                      params=params, timeout=30)


def test_hot_reload_under_load_loses_no_request(tmp_path, trained_model_root, sample_jpeg, start_server):
    root = tmp_path / "models"
    copy_version(trained_model_root, root, 1)
    server = start_server(root, poll_interval_s=0.5)
    stop = threading.Event()
    replies: list[tuple[float, int, int | None]] = []  # (time, status, version)

    def client() -> None:
        with httpx.Client(base_url=server.rest_url, timeout=30) as c:
            while not stop.is_set():
                r = c.post("/predict", content=sample_jpeg, headers={"content-type": "image/jpeg"})
                replies.append((time.monotonic(), r.status_code,
                                r.json().get("model_version") if r.status_code == 200 else None))

    threads = [threading.Thread(target=client) for _ in range(4)]
    for t in threads:
        t.start()
    wait_for(lambda: len(replies) >= 20)
    # the training code writes version 2 while the clients keep going
    written_at = time.monotonic()
    result = train(TrainConfig(data="synthetic", epochs=1, samples_per_class=6, model_root=root, name="rps",
                               seed=1))
    published_at = time.monotonic()
    assert result.version == 2
    wait_for(lambda: any(v == 2 for _, _, v in replies), timeout=60)
    switched_at = min(t for t, _, v in replies if v == 2)
    n_after = len(replies)
    wait_for(lambda: len(replies) >= n_after + 20)
    stop.set()
    for t in threads:
        t.join()
    statuses = [s for _, s, _ in replies]
    assert statuses.count(200) == len(statuses), f"failed requests: {[s for s in statuses if s != 200]}"
    # once version 2 answered, version 1 never answers again
    assert all(v == 2 for t, _, v in replies if t > switched_at + 0.5)
    assert written_at < switched_at
    # picked up within a poll interval plus load and warm-up time
    print(f"version 2 answered {switched_at - published_at:.2f} s after it was published; "
          f"{len(replies)} requests, {statuses.count(200)} answered 200")
    assert switched_at - published_at < 0.5 + 30
    status = httpx.get(f"{server.rest_url}/v1/models/rps").json()["model_version_status"]
    assert {s["version"]: s["state"] for s in status} == {"2": "AVAILABLE", "1": "END"}


def test_corrupt_version_leaves_old_one_serving(tmp_path, trained_model_root, sample_jpeg, start_server):
    root = tmp_path / "models"
    copy_version(trained_model_root, root, 1)
    server = start_server(root, poll_interval_s=0.3)
    bad = root / "rps" / ".tmp-bad"
    shutil.copytree(trained_model_root / "rps" / "1", bad)
    (bad / "saved_model.pb").write_bytes(b"this is not a protobuf")
    bad.rename(root / "rps" / "2")

    def failed() -> bool:
        status = httpx.get(f"{server.rest_url}/v1/models/rps").json()["model_version_status"]
        return any(s["version"] == "2" and s["status"]["error_code"] != "OK" for s in status)

    wait_for(failed, timeout=30)
    r = predict_version(server.rest_url, sample_jpeg)
    assert r.status_code == 200 and r.json()["model_version"] == 1
    assert httpx.get(f"{server.rest_url}/readyz").status_code == 200
    status = httpx.get(f"{server.rest_url}/v1/models/rps").json()["model_version_status"]
    by_version = {s["version"]: s for s in status}
    assert by_version["1"]["state"] == "AVAILABLE"
    assert by_version["2"]["state"] == "END" and by_version["2"]["status"]["error_message"]
    # the reason reaches clients; the server's disk layout does not
    assert str(tmp_path) not in by_version["2"]["status"]["error_message"]
    assert "/models/" not in httpx.get(f"{server.rest_url}/models").text
    metrics = httpx.get(f"{server.rest_url}/metrics").text
    assert 'imgclf_model_load_failures_total{model="rps",version="2"} 1.0' in metrics
    # asking for the broken version explains itself
    r = predict_version(server.rest_url, sample_jpeg, version=2)
    assert r.status_code == 404 and "END" in r.json()["error"]


def test_starts_unready_and_picks_up_first_version(tmp_path, trained_model_root, sample_jpeg, start_server):
    root = tmp_path / "models"
    server = start_server(root, poll_interval_s=0.3)
    assert httpx.get(f"{server.rest_url}/readyz").status_code == 503
    r = predict_version(server.rest_url, sample_jpeg)
    assert r.status_code == 503 and r.headers.get("retry-after")
    copy_version(trained_model_root, root, 1)
    wait_for(lambda: httpx.get(f"{server.rest_url}/readyz").status_code == 200, timeout=30)
    assert predict_version(server.rest_url, sample_jpeg).status_code == 200


def test_vanished_version_is_unloaded(tmp_path, trained_model_root, sample_jpeg, start_server):
    root = tmp_path / "models"
    copy_version(trained_model_root, root, 1)
    copy_version(trained_model_root, root, 2)
    server = start_server(root, poll_interval_s=0.3, version_policy="all")
    assert server.core.registry.available_versions() == [1, 2]
    shutil.rmtree(root / "rps" / "2")
    wait_for(lambda: server.core.registry.available_versions() == [1], timeout=30)
    r = predict_version(server.rest_url, sample_jpeg)
    assert r.json()["model_version"] == 1
    assert predict_version(server.rest_url, sample_jpeg, version=2).status_code == 404


@pytest.mark.parametrize(("policy", "extra", "expected"), [
    ("latest", {"latest_versions": 2}, [2, 3]),
    ("all", {}, [1, 2, 3]),
    ("specific", {"specific_versions": "1,3"}, [1, 3]),
])
def test_version_policies(tmp_path, trained_model_root, start_server, policy, extra, expected):
    root = tmp_path / "models"
    for v in (1, 2, 3):
        copy_version(trained_model_root, root, v)
    (root / "rps" / "notes.txt").write_text("ignored")
    (root / "rps" / ".tmp-half-written").mkdir()
    (root / "rps" / "latest").mkdir()
    server = start_server(root, version_policy=policy, **extra)
    assert server.core.registry.available_versions() == expected


def test_labels_route_to_their_versions(tmp_path, trained_model_root, sample_jpeg, start_server):
    root = tmp_path / "models"
    for v in (1, 2):
        copy_version(trained_model_root, root, v)
    server = start_server(root, version_policy="all", version_labels="stable=1,canary=2")
    assert predict_version(server.rest_url, sample_jpeg, label="stable").json()["model_version"] == 1
    assert predict_version(server.rest_url, sample_jpeg, label="canary").json()["model_version"] == 2
    assert predict_version(server.rest_url, sample_jpeg).json()["model_version"] == 2
    r = predict_version(server.rest_url, sample_jpeg, label="nightly")
    assert r.status_code == 404 and "nightly" in r.json()["error"]
