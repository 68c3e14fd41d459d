"""`imgclf serve` as a real process: start-up, graceful SIGTERM, bad settings."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

BIN = Path(sys.executable).parent


def start_serve(env: dict[str, str]) -> tuple[subprocess.Popen[str], list[str], str]:
    """`imgclf serve` on ports 0; the ports are read from its start-up line (no port races)."""
    proc = subprocess.Popen([str(BIN / "imgclf"), "serve"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    found = threading.Event()

    def drain() -> None:  # keeps reading so the server never blocks on a full pipe
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if "REST on" in line:
                found.set()

    threading.Thread(target=drain, daemon=True).start()
    if not found.wait(180):
        proc.kill()
        raise AssertionError("imgclf serve never logged its ports:\n" + "".join(lines))
    match = re.search(r"REST on [^:]+:(\d+)", next(line for line in lines if "REST on" in line))
    assert match
    return proc, lines, f"http://127.0.0.1:{match[1]}"


def test_sigterm_finishes_in_flight_requests_then_exits(trained_model_root, sample_jpeg):
    env = {**os.environ, "IMGCLF_MODEL_ROOT": str(trained_model_root), "IMGCLF_HOST": "127.0.0.1",
           "IMGCLF_REST_PORT": "0", "IMGCLF_GRPC_PORT": "0",
           # a long batch delay keeps requests in flight when the signal arrives
           "IMGCLF_MAX_BATCH_DELAY_MS": "800", "IMGCLF_MAX_BATCH_SIZE": "64"}
    proc, lines, url = start_serve(env)
    try:
        assert httpx.get(f"{url}/readyz", timeout=5).status_code == 200  # ready once it logs its ports
        results: list[int] = []
        # clients made and connected up front: on a busy machine making one can take longer than
        # the wait below, and a request that connects after the signal is rightly refused
        clients = [httpx.Client(base_url=url, timeout=30) for _ in range(6)]
        for client in clients:
            assert client.get("/healthz").status_code == 200

        def call(client: httpx.Client) -> None:
            r = client.post("/predict", content=sample_jpeg, headers={"content-type": "image/jpeg"})
            results.append(r.status_code)

        # one request first: the model is now busy, so the next ones wait for a batch
        threads = [threading.Thread(target=call, args=(client,)) for client in clients]
        for t in threads:
            t.start()
            time.sleep(0.02)
        time.sleep(0.3)  # the requests are queued or in the model now
        proc.send_signal(signal.SIGTERM)
        for t in threads:
            t.join(30)
        assert results == [200] * 6
        assert proc.wait(30) == 0
        # after the drain nothing listens any more
        try:
            httpx.get(f"{url}/healthz", timeout=1)
            raise AssertionError("REST still answering after exit")
        except httpx.ConnectError:
            pass
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    output = "".join(lines)
    assert "Traceback" not in output, output
    assert "finishing in-flight requests" in output
    assert "imgclf.access" not in output  # text logs: no line per request (JSON logs have one)


def test_bad_setting_stops_with_one_line(tmp_path):
    env = {**os.environ, "IMGCLF_MAX_BATCH_SIZE": "0"}
    r = subprocess.run([str(BIN / "imgclf"), "serve", "--model-root", str(tmp_path)], env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert "IMGCLF_MAX_BATCH_SIZE" in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


_ONEDNN = """
import os, sys
from typer.testing import CliRunner
from service.cli import app
result = CliRunner().invoke(app, sys.argv[1:])
on = "-"  # TensorFlow not imported yet: it will read the variable when it is
if "tensorflow" in sys.modules:
    from tensorflow.python.util import _pywrap_util_port
    on = str(int(_pywrap_util_port.IsMklEnabled()))
print(result.exit_code, os.environ.get("TF_ENABLE_ONEDNN_OPTS"), on)
"""


@pytest.mark.parametrize("command", [["serve"], ["train", "--data", "no-such-folder"]])
@pytest.mark.parametrize(("users", "expected"), [(None, "1"), ("0", "0")])
def test_serve_and_train_turn_onednn_on_unless_the_user_chose(tmp_path, command, users, expected):
    # TensorFlow reads the variable once, when it is imported: the command must set it before that.
    # Both commands stop on a bad setting here; train has imported TensorFlow by then, so its kernels
    # are checked too.
    env = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    env.update({"IMGCLF_MAX_BATCH_SIZE": "0", **({"TF_ENABLE_ONEDNN_OPTS": users} if users else {})})
    r = subprocess.run([sys.executable, "-c", _ONEDNN, *command, "--model-root", str(tmp_path)], env=env,
                       capture_output=True, text=True, timeout=120, cwd=tmp_path)
    code, value, on = r.stdout.split()
    assert code == "2" and value == expected, r.stdout + r.stderr
    assert on == ("-" if command == ["serve"] else expected), r.stdout + r.stderr


def test_version_flag():
    r = subprocess.run([str(BIN / "imgclf"), "--version"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and re.fullmatch(r"imgclf \d+\.\d+\.\d+\S*\n", r.stdout), r.stdout + r.stderr


@pytest.mark.parametrize("which, variable", [("REST", "IMGCLF_REST_PORT"), ("gRPC", "IMGCLF_GRPC_PORT")])
def test_port_in_use_names_the_port_and_the_setting(tmp_path, which, variable):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        env = {**os.environ, "IMGCLF_HOST": "127.0.0.1", "IMGCLF_MODEL_ROOT": str(tmp_path),
               "IMGCLF_REST_PORT": "0", "IMGCLF_GRPC_PORT": "0", variable: port}
        r = subprocess.run([str(BIN / "imgclf"), "serve"], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr[-2000:]
    last = r.stderr.strip().splitlines()[-1]
    assert f"{which} port {port}" in last and "already in use" in last and variable in last, last


def test_json_logs_one_line_per_request_with_its_id(trained_model_root, sample_jpeg):
    import json

    import grpc

    from service.grpc._generated.imgclf.v1 import classifier_pb2, classifier_pb2_grpc

    env = {**os.environ, "IMGCLF_MODEL_ROOT": str(trained_model_root), "IMGCLF_HOST": "127.0.0.1",
           "IMGCLF_REST_PORT": "0", "IMGCLF_GRPC_PORT": "0", "IMGCLF_LOG_FORMAT": "json"}
    proc, lines, url = start_serve(env)
    try:
        r = httpx.post(f"{url}/predict", content=sample_jpeg, headers={"content-type": "image/jpeg",
                                                                     "x-request-id": "rest-42"}, timeout=30)
        assert r.status_code == 200 and r.headers["x-request-id"] == "rest-42"
        generated = httpx.get(f"{url}/healthz").headers["x-request-id"]
        assert re.fullmatch(r"[0-9a-f]{32}", generated)
        grpc_port = re.search(r"gRPC on [^:]+:(\d+)", "".join(lines))[1]  # type: ignore[index]
        with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
            stub = classifier_pb2_grpc.ImageClassifierStub(channel)
            call = stub.Classify.with_call(
                classifier_pb2.ClassifyRequest(images=[sample_jpeg]), metadata=[("x-request-id", "grpc-7")])
            assert ("x-request-id", "grpc-7") in call[1].trailing_metadata()
            # a refused call carries it too, with its status
            with pytest.raises(grpc.RpcError) as refused:
                stub.Classify(classifier_pb2.ClassifyRequest(images=[b"not an image"]),
                              metadata=[("x-request-id", "grpc-8")])
            assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert ("x-request-id", "grpc-8") in refused.value.trailing_metadata()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    # every line is JSON except TensorFlow's own C++ start-up lines and LiteRT's one line when the hand stage
    # makes its first interpreter, which bypass Python logging (uvicorn's plain "INFO:" lines would not pass)
    native = re.compile(r"^([IWEF]\d{4} |WARNING: All log messages before absl|INFO: Created TensorFlow Lite "
                        r"XNNPACK delegate for CPU\.$)")
    ours = [x for x in lines if x.strip() and not native.match(x)]
    records = [json.loads(line) for line in ours]
    by_id = {r.get("request_id"): r for r in records if r["logger"] == "imgclf.access"}
    rest = by_id["rest-42"]
    assert (rest["model"], rest["version"], rest["status"], rest["protocol"], rest["route"]) == (
        "rps", 1, 200, "rest", "/predict")
    assert rest["batch_size"] >= 1 and rest["latency_ms"] > 0 and rest["images"] == 1
    rpc = by_id["grpc-7"]
    assert (rpc["model"], rpc["version"], rpc["status"], rpc["protocol"]) == ("rps", 1, "OK", "grpc")
    assert by_id[generated]["route"] == "/healthz"


def test_first_start_shows_only_imgclfs_own_lines(tmp_path, sample_jpeg):
    # a new user's `make run`: no TF_CPP_MIN_LOG_LEVEL of their own, an empty model root (the demo version
    # is installed) and a matplotlib config folder never used (its font cache would be built and logged)
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    env.update({"IMGCLF_MODEL_ROOT": str(tmp_path / "models"), "IMGCLF_HOST": "127.0.0.1",
                "IMGCLF_REST_PORT": "0", "IMGCLF_GRPC_PORT": "0", "MPLCONFIGDIR": str(tmp_path / "mpl")})
    proc, lines, url = start_serve(env)
    try:
        r = httpx.post(f"{url}/predict", files={"file": ("rock.jpg", sample_jpeg)}, timeout=60)
        assert r.status_code == 200, r.text
    finally:
        proc.terminate()
        proc.wait(60)
    text = "".join(lines)
    for noise in ("I0000", "E0000", "W0000", "cuInit", "absl::InitializeLog", "fontManager", "oneDNN"):
        assert noise not in text, f"{noise!r} in the start-up output:\n{text}"
    assert not (tmp_path / "mpl").exists(), "the server imported matplotlib"
    assert "installed the demo version" in text and "REST on" in text


_SERVING_IMPORTS = """
import json, sys
from pathlib import Path
from service.quiet import quiet_start
quiet_start()
import service.cli, service.server
from service.server import make_backend
from service.settings import ServeSettings
for runtime in ("auto", "litert", "tensorflow"):
    make_backend(ServeSettings(model_root=Path(sys.argv[1]), runtime=runtime)).load("rps", 1).close()
print(json.dumps(sorted(sys.modules)))
"""


def test_serving_loads_no_training_stack_and_no_plotting(trained_model_root):
    # what `imgclf serve` imports on its way to loading a version on each runtime: the CLI's own light
    # modules of training/, never its data pipeline, model, trainer or quantizer, and no matplotlib
    import json

    r = subprocess.run([sys.executable, "-c", _SERVING_IMPORTS, str(trained_model_root)], capture_output=True,
                       text=True, timeout=300, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert r.returncode == 0, r.stderr[-3000:]
    modules = set(json.loads(r.stdout.strip().splitlines()[-1]))
    loaded = sorted(m for m in modules if m.startswith("training."))
    assert set(loaded) <= {"training.cli", "training.errors", "training.finetune"}, loaded
    assert not any(m == "matplotlib" or m.startswith("matplotlib.") for m in modules)
