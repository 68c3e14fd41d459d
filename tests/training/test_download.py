import hashlib
import http.server
import io
import socket
import threading
import zipfile

import numpy as np
import pytest
from PIL import Image

from training.data import load_folder
from training.download import RemoteFile, cache_dir, fetch_rps
from training.errors import DataError


def _png(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


RPS_ZIP = _zip({f"rps/{kind}/{kind}{i:02d}.png": _png(c * 10 + i)
                for c, kind in enumerate(("rock", "paper", "scissors")) for i in range(3)})


class _Server:
    """A real HTTP server on the loopback interface serving `files` (path -> bytes)."""

    def __init__(self, files: dict[str, bytes]):
        self.files = files
        self.requests: list[str] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                outer.requests.append(self.path)
                data = outer.files.get(self.path)
                if data is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,),
                                       daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch):
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "*")


@pytest.fixture
def server():
    srv = _Server({})
    srv.thread.start()
    yield srv
    srv.httpd.shutdown()
    srv.httpd.server_close()


def _remote(server: _Server, name: str, data: bytes, sha: str | None = None) -> RemoteFile:
    server.files[f"/{name}"] = data
    return RemoteFile(server.url(f"/{name}"), sha or hashlib.sha256(data).hexdigest(), len(data))


def test_download_extract_and_load(server, tmp_path):
    remote = _remote(server, "rps.zip", RPS_ZIP)
    folder = fetch_rps("train", files={"train": remote}, root=tmp_path, show_progress=False)
    images = load_folder(folder)
    assert images.labels == ("paper", "rock", "scissors")
    assert images.counts() == {"paper": 3, "rock": 3, "scissors": 3}
    assert (tmp_path / "rps.zip").read_bytes() == RPS_ZIP
    assert not list(tmp_path.glob("*.part"))
    assert server.requests == ["/rps.zip"]


def test_second_fetch_uses_the_cache(server, tmp_path):
    remote = _remote(server, "rps.zip", RPS_ZIP)
    first = fetch_rps("train", files={"train": remote}, root=tmp_path, show_progress=False)
    second = fetch_rps("train", files={"train": remote}, root=tmp_path, show_progress=False)
    assert first == second
    assert len(server.requests) == 1


def test_a_corrupt_cached_archive_is_downloaded_again(server, tmp_path):
    remote = _remote(server, "rps.zip", RPS_ZIP)
    (tmp_path / "rps.zip").write_bytes(b"half a download")
    folder = fetch_rps("train", files={"train": remote}, root=tmp_path, show_progress=False)
    assert len(server.requests) == 1
    assert load_folder(folder).labels == ("paper", "rock", "scissors")


def test_checksum_mismatch_is_refused_and_leaves_no_file(server, tmp_path):
    remote = _remote(server, "rps.zip", RPS_ZIP, sha="0" * 64)
    with pytest.raises(DataError, match="checksum mismatch"):
        fetch_rps("train", files={"train": remote}, root=tmp_path, show_progress=False)
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_http_error_is_a_data_error(server, tmp_path):
    remote = RemoteFile(server.url("/missing.zip"), "0" * 64, 1)
    with pytest.raises(DataError, match="could not download"):
        fetch_rps("train", files={"train": remote}, root=tmp_path, show_progress=False)
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_unreachable_host_says_offline(tmp_path):
    with socket.socket() as sock:  # bind, then close: nothing listens on that port any more
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    remote = RemoteFile(f"http://127.0.0.1:{port}/rps.zip", "0" * 64, 1)
    with pytest.raises(DataError, match="offline") as info:
        fetch_rps("train", files={"train": remote}, root=tmp_path, show_progress=False)
    assert "--data synthetic" in str(info.value)
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_zip_slip_member_is_refused(server, tmp_path):
    evil = _zip({"rps/rock/a.png": _png(1), "rps/paper/b.png": _png(2),
                 "rps/../../escaped.txt": b"owned"})
    remote = _remote(server, "evil.zip", evil)
    root = tmp_path / "cache"
    with pytest.raises(DataError, match="unsafe path"):
        fetch_rps("train", files={"train": remote}, root=root, show_progress=False)
    assert not list(tmp_path.rglob("escaped.txt"))
    assert not [p for p in root.iterdir() if p.is_dir()]


def test_absolute_member_is_refused(server, tmp_path):
    evil = _zip({"rps/rock/a.png": _png(1), "/tmp/abs.txt": b"owned"})
    remote = _remote(server, "abs.zip", evil)
    with pytest.raises(DataError, match="unsafe path"):
        fetch_rps("train", files={"train": remote}, root=tmp_path, show_progress=False)


def test_archive_without_class_folders_is_a_data_error(server, tmp_path):
    remote = _remote(server, "flat.zip", _zip({"a.png": _png(1), "b.png": _png(2)}))
    with pytest.raises(DataError, match="no folder of class folders"):
        fetch_rps("train", files={"train": remote}, root=tmp_path, show_progress=False)


def test_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("IMGCLF_CACHE_DIR", str(tmp_path / "c"))
    assert cache_dir() == tmp_path / "c"
    monkeypatch.delenv("IMGCLF_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "imgclf"
