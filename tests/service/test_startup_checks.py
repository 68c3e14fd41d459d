"""Settings that must not start a server: unusable TLS files (exit 2, one line naming the file and why) and
teach endpoints open to the network without keys; and `make run`, which binds loopback by default."""

from __future__ import annotations

import datetime as dt
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import trustme

from service.settings import StartupError, is_loopback
from service.tls import TLSFileError, load_tls
from tests.service.conftest import RunningServer, test_settings

REPO = Path(__file__).resolve().parents[2]
IMGCLF = str(Path(sys.executable).parent / "imgclf")


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("tls-files")
    ca = trustme.CA()
    server, other = ca.issue_cert("127.0.0.1"), ca.issue_cert("client@imgclf.test")
    old = ca.issue_cert("127.0.0.1", not_before=dt.datetime(2019, 1, 1), not_after=dt.datetime(2020, 1, 1))
    future = ca.issue_cert("127.0.0.1", not_before=dt.datetime(2090, 1, 1), not_after=dt.datetime(2091, 1, 1))
    out = {name: base / name for name in ("server.pem", "server.key", "other.key", "ca.pem", "old.pem", "old.key",
                                          "future.pem", "future.key")}
    server.cert_chain_pems[0].write_to_path(str(out["server.pem"]))
    server.private_key_pem.write_to_path(str(out["server.key"]))
    other.private_key_pem.write_to_path(str(out["other.key"]))
    ca.cert_pem.write_to_path(str(out["ca.pem"]))
    old.cert_chain_pems[0].write_to_path(str(out["old.pem"]))
    old.private_key_pem.write_to_path(str(out["old.key"]))
    future.cert_chain_pems[0].write_to_path(str(out["future.pem"]))
    future.private_key_pem.write_to_path(str(out["future.key"]))
    texts = {"text.pem": "just some text\n",
             "notb64.pem": "-----BEGIN CERTIFICATE-----\nnot base64 at all!\n-----END CERTIFICATE-----\n",
             "notx509.pem": "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
             "garbage.key": "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
             "encrypted.key": "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n"}
    for name, text in texts.items():
        out[name] = base / name
        out[name].write_text(text)
    out["binary.pem"] = base / "binary.pem"
    out["binary.pem"].write_bytes(os.urandom(512))
    return out


# (cert, key, client CA, the setting named, the reason's words)
BAD = [
    ("server.pem", "other.key", None, "IMGCLF_TLS_KEY_FILE", "key does not match the certificate"),
    ("text.pem", "server.key", None, "IMGCLF_TLS_CERT_FILE", "not a PEM certificate"),
    ("binary.pem", "server.key", None, "IMGCLF_TLS_CERT_FILE", "not a PEM certificate"),
    ("notb64.pem", "server.key", None, "IMGCLF_TLS_CERT_FILE", "not PEM"),
    ("notx509.pem", "server.key", None, "IMGCLF_TLS_CERT_FILE", "not an X.509 certificate"),
    ("old.pem", "old.key", None, "IMGCLF_TLS_CERT_FILE", "expired"),
    ("future.pem", "future.key", None, "IMGCLF_TLS_CERT_FILE", "not valid yet"),
    ("server.pem", "text.pem", None, "IMGCLF_TLS_KEY_FILE", "not a PEM private key"),
    ("server.pem", "garbage.key", None, "IMGCLF_TLS_KEY_FILE", "private key unreadable"),
    ("server.pem", "encrypted.key", None, "IMGCLF_TLS_KEY_FILE", "encrypted"),
    ("server.pem", "server.key", "text.pem", "IMGCLF_TLS_CLIENT_CA_FILE", "not a PEM certificate"),
    ("server.pem", "server.key", "notb64.pem", "IMGCLF_TLS_CLIENT_CA_FILE", "not PEM"),
    ("server.pem", "server.key", "old.pem", "IMGCLF_TLS_CLIENT_CA_FILE", "expired"),
]


def _tls(files: dict[str, Path], cert: str, key: str, ca: str | None) -> dict[str, Path]:
    out = {"tls_cert_file": files[cert], "tls_key_file": files[key]}
    if ca:
        out["tls_client_ca_file"] = files[ca]
    return out


@pytest.mark.parametrize(("cert", "key", "ca", "env", "reason"), BAD)
def test_a_bad_tls_file_is_named_with_its_reason(files, tmp_path, cert, key, ca, env, reason):
    with pytest.raises(TLSFileError) as err:
        load_tls(test_settings(tmp_path, **_tls(files, cert, key, ca)))
    bad = files[{"IMGCLF_TLS_CERT_FILE": cert, "IMGCLF_TLS_KEY_FILE": key}.get(env, ca or "")]
    assert str(err.value).startswith(f"{env}={bad}: ") and reason in str(err.value), str(err.value)


def test_good_files_load(files, tmp_path):
    loaded = load_tls(test_settings(tmp_path, **_tls(files, "server.pem", "server.key", "ca.pem")))
    assert loaded is not None and loaded.client_ca == files["ca.pem"].read_bytes()
    assert load_tls(test_settings(tmp_path)) is None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _serve(env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([IMGCLF, "serve"], env={**os.environ, **env}, capture_output=True, text=True,
                          timeout=timeout)


@pytest.mark.parametrize(("cert", "key", "ca", "env", "reason"),
                         [BAD[0], BAD[3], BAD[5], BAD[9], BAD[10]])  # each setting and kind of failure
def test_imgclf_serve_exits_2_with_one_line_before_binding(files, tmp_path, cert, key, ca, env, reason):
    """The false "[Errno 98] gRPC port N ... already in use" is gone: the file and its fault, before any bind."""
    rest, grpc_port = _free_port(), _free_port()
    settings = {"IMGCLF_TLS_CERT_FILE": str(files[cert]), "IMGCLF_TLS_KEY_FILE": str(files[key]),
                "IMGCLF_MODEL_ROOT": str(tmp_path / "models"), "IMGCLF_HOST": "127.0.0.1",
                "IMGCLF_REST_PORT": str(rest), "IMGCLF_GRPC_PORT": str(grpc_port)}
    if ca:
        settings["IMGCLF_TLS_CLIENT_CA_FILE"] = str(files[ca])
    r = _serve(settings)
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert r.returncode == 2, r.stderr
    assert len(lines) == 1 and lines[0].startswith(f"error: {env}=") and reason in lines[0], r.stderr
    assert "in use" not in r.stderr
    assert not (tmp_path / "models").exists()  # refused before the demo version was installed


def test_the_server_checks_tls_before_binding_too(files, tmp_path):
    """However it is started (here ImgclfServer itself), the ports stay free."""
    port = _free_port()
    with pytest.raises(TLSFileError, match="key does not match"):
        RunningServer(test_settings(tmp_path, rest_port=port, **_tls(files, "server.pem", "other.key", None))).start()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))  # still free


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.7", "imgclf.example"])
def test_open_teach_on_the_network_refuses_to_start(tmp_path, host):
    settings = test_settings(tmp_path, teach=True, host=host)
    with pytest.raises(StartupError, match="IMGCLF_API_KEYS") as err:
        settings.check_exposure()
    assert "IMGCLF_UNSAFE_OPEN_TEACH" in str(err.value) and "IMGCLF_HOST=127.0.0.1" in str(err.value)
    test_settings(tmp_path, teach=True, host=host, api_keys="k" * 24).check_exposure()
    test_settings(tmp_path, teach=True, host=host, unsafe_open_teach=True).check_exposure()
    test_settings(tmp_path, teach=False, host=host).check_exposure()


@pytest.mark.parametrize("host", ["127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost"])
def test_loopback_is_safe_without_keys(tmp_path, host):
    assert is_loopback(host)
    test_settings(tmp_path, teach=True, host=host).check_exposure()


def test_imgclf_serve_refuses_open_teach_in_one_line(tmp_path):
    r = _serve({"IMGCLF_TEACH": "true", "IMGCLF_HOST": "0.0.0.0", "IMGCLF_MODEL_ROOT": str(tmp_path / "m"),
                "IMGCLF_API_KEYS": ""})
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert r.returncode == 2 and len(lines) == 1, r.stderr
    assert "IMGCLF_API_KEYS" in lines[0] and "0.0.0.0" in lines[0]


def test_make_run_binds_loopback_and_takes_keys(tmp_path):
    """`make run` (teach on) listens on 127.0.0.1 unless IMGCLF_HOST says otherwise, and keys set in the
    environment guard its teach endpoints."""
    key = "make-run-key-0123456789"
    env = {**os.environ, "IMGCLF_MODEL_ROOT": str(tmp_path / "models"), "IMGCLF_DATA_ROOT": str(tmp_path / "data"),
           "IMGCLF_REST_PORT": "0", "IMGCLF_GRPC_PORT": "0", "IMGCLF_API_KEYS": key}
    env.pop("IMGCLF_HOST", None)
    proc = subprocess.Popen(["make", "--no-print-directory", "run", f"VENV={Path(sys.executable).parent.parent}"],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    seen: list[str] = []
    try:
        deadline = time.monotonic() + 180
        assert proc.stdout is not None
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            seen.append(line)
            if match := re.search(r"REST on (\S+):(\d+), gRPC on (\S+):(\d+)", line):
                assert match[1] == match[3] == "127.0.0.1", line
                examples = f"http://127.0.0.1:{match[2]}/v1/models/rps/examples"
                assert httpx.get(examples, timeout=30).status_code == 401
                assert httpx.get(examples, headers={"x-api-key": key}, timeout=30).status_code == 200
                return
        pytest.fail("make run did not start serving:\n" + "".join(seen[-20:]))
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(60)
