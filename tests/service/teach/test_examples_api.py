"""The examples API: store, list, delete; duplicates once; bad input is a clear 4xx that changes nothing."""

from __future__ import annotations

import httpx

from tests.service.teach.conftest import hand_jpeg


def _add(server, label: str, data: bytes, name: str = "rps") -> httpx.Response:
    return httpx.post(f"{server.rest_url}/v1/models/{name}/examples", files={"file": ("f.jpg", data, "image/jpeg")},
                      data={"label": label}, timeout=30)


def _counts(server) -> dict[str, int]:
    return httpx.get(f"{server.rest_url}/v1/models/rps/examples").json()["counts"]


def test_store_list_delete_and_layout(teach_server, tmp_path):
    first = _add(teach_server, "rock", hand_jpeg("rock", 0))
    assert first.status_code == 201, first.text
    again = _add(teach_server, "rock", hand_jpeg("rock", 0))
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]  # stored once
    assert _add(teach_server, "paper", hand_jpeg("paper", 0)).status_code == 201
    listed = httpx.get(f"{teach_server.rest_url}/v1/models/rps/examples").json()
    assert listed["counts"] == {"paper": 1, "rock": 1, "scissors": 0} and listed["total"] == 2
    # the layout is a training folder: one sub-folder per label, nothing else visible
    folder = tmp_path / "data" / "rps" / "examples"
    assert sorted(p.name for p in folder.iterdir() if not p.name.startswith(".")) == ["paper", "rock"]
    assert (folder / "rock" / f"{first.json()['id']}.jpg").read_bytes() == hand_jpeg("rock", 0)
    image = httpx.get(f"{teach_server.rest_url}/v1/models/rps/examples/{first.json()['id']}")
    assert image.status_code == 200 and image.content == hand_jpeg("rock", 0)
    gone = httpx.delete(f"{teach_server.rest_url}/v1/models/rps/examples/{first.json()['id']}")
    assert gone.status_code == 200 and gone.json()["counts"]["rock"] == 0
    assert httpx.delete(f"{teach_server.rest_url}/v1/models/rps/examples/{first.json()['id']}").status_code == 404
    cleared = httpx.delete(f"{teach_server.rest_url}/v1/models/rps/examples")
    assert cleared.status_code == 200 and cleared.json()["deleted"] == 1
    assert _counts(teach_server) == {"paper": 0, "rock": 0, "scissors": 0}


def test_bad_inputs_are_4xx_and_change_nothing(teach_server, tmp_path):
    assert _add(teach_server, "rock", hand_jpeg("rock", 1)).status_code == 201
    before = _counts(teach_server)
    wrong_label = _add(teach_server, "lizard", hand_jpeg("rock", 2))
    assert wrong_label.status_code == 400 and "lizard" in wrong_label.json()["error"]
    not_image = _add(teach_server, "rock", b"this is not an image at all")
    assert not_image.status_code == 400 and "not a readable image" in not_image.json()["error"]
    no_label = httpx.post(f"{teach_server.rest_url}/v1/models/rps/examples",
                          files={"file": ("f.jpg", hand_jpeg("rock", 3), "image/jpeg")})
    assert no_label.status_code == 400 and "label" in no_label.json()["error"]
    raw = httpx.post(f"{teach_server.rest_url}/v1/models/rps/examples", content=hand_jpeg("rock", 3),
                     headers={"content-type": "image/jpeg"})
    assert raw.status_code == 400
    relabel = _add(teach_server, "paper", hand_jpeg("rock", 1))
    assert relabel.status_code == 409 and "already an example of 'rock'" in relabel.json()["error"]
    assert _add(teach_server, "rock", hand_jpeg("rock", 1), name="hands").status_code == 404
    assert _counts(teach_server) == before
    # up to the per-label limit (12 in this server), then 413 and nothing stored
    for i in range(4, 4 + 11):
        assert _add(teach_server, "rock", hand_jpeg("rock", i)).status_code == 201
    too_many = _add(teach_server, "rock", hand_jpeg("rock", 99))
    assert too_many.status_code == 413 and "limit" in too_many.json()["error"]
    assert _counts(teach_server)["rock"] == 12
    assert not [p for p in (tmp_path / "data" / "rps" / "examples").rglob(".tmp-*")]


def test_examples_survive_a_restart(start_server, teach_root, tmp_path):
    server = start_server(teach_root, teach=True, data_root=tmp_path / "data")
    assert _add(server, "scissors", hand_jpeg("scissors", 0)).status_code == 201
    server.stop()
    again = start_server(teach_root, teach=True, data_root=tmp_path / "data")
    assert _counts(again)["scissors"] == 1


def test_off_unless_enabled_and_key_when_keys_are_set(start_server, teach_root, tmp_path):
    off = start_server(teach_root, data_root=tmp_path / "data")
    assert _add(off, "rock", hand_jpeg("rock", 0)).status_code == 404
    assert not (tmp_path / "data").exists()
    key = "k" * 24
    locked = start_server(teach_root, teach=True, data_root=tmp_path / "data", api_keys=key)
    assert _add(locked, "rock", hand_jpeg("rock", 0)).status_code == 401
    ok = httpx.post(f"{locked.rest_url}/v1/models/rps/examples", headers={"X-API-Key": key},
                    files={"file": ("f.jpg", hand_jpeg("rock", 0), "image/jpeg")}, data={"label": "rock"})
    assert ok.status_code == 201
