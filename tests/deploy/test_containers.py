"""The images for real: each target built once with Podman, run by compose (trainer on full, then api on
serve) and on their own.

Needs a working `podman` (and `podman-compose` for the compose test); without one the tests skip
with the reason. `.ci/run` sets Podman up first where the machine offers its setup script.
"""

from __future__ import annotations

import io
import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.container, pytest.mark.slow]


def _podman_works() -> str | None:
    """None when podman can run containers here, else why not."""
    if shutil.which("podman") is None:
        return "podman is not installed (a Podman setup step is in .ci/run)"
    probe = subprocess.run(["podman", "info"], capture_output=True, text=True)
    if probe.returncode != 0:
        return f"podman does not work here: {(probe.stderr or probe.stdout).strip().splitlines()[-1:]}"
    return None


def run(*cmd: str, timeout: float = 600, check: bool = True, env: dict[str, str] | None = None
        ) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=REPO,
                          env={**os.environ, **(env or {})})
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stdout[-2000:]}\n"
                             f"{proc.stderr[-3000:]}")
    return proc


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _build(target: str) -> Iterator[str]:
    reason = _podman_works()
    if reason:
        pytest.skip(reason)
    tag = f"localhost/imgclf:test-{target}-{uuid.uuid4().hex[:8]}"
    started = time.monotonic()
    run("nice", "-n", "10", "podman", "build", "--format", "docker", "--target", target, "-t", tag, ".",
        timeout=1800)
    print(f"\n{target} image build: {time.monotonic() - started:.0f} s")
    yield tag
    run("podman", "rmi", "-f", tag, check=False)


@pytest.fixture(scope="session")
def image() -> Iterator[str]:
    """One build of the Dockerfile's full target (training and every runtime), shared by the container tests."""
    yield from _build("full")


@pytest.fixture(scope="session")
def serve_image() -> Iterator[str]:
    """One build of the serve target (LiteRT, no TensorFlow)."""
    yield from _build("serve")


def refusal(image: str, *settings: str) -> list[str]:
    """The lines a container that must not start prints (podman's own log lines aside); asserts exit 2."""
    refused = run("podman", "run", "--rm", "--no-healthcheck", *settings, image, check=False)
    lines = [line for line in (refused.stdout + refused.stderr).splitlines()
             if line.strip() and not line.startswith("time=")]
    assert refused.returncode == 2, lines
    return lines


def wait_healthy(container: str, timeout: float = 240) -> float:
    """Runs the image's HEALTHCHECK by hand (no systemd timers here) until it passes; seconds taken."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if run("podman", "healthcheck", "run", container, check=False).returncode == 0:
            return time.monotonic() - started
        state = run("podman", "inspect", "-f", "{{.State.Status}}", container, check=False).stdout.strip()
        if state in ("exited", "stopped"):
            logs = run("podman", "logs", container, check=False)
            raise AssertionError(f"{container} {state} before it was healthy:\n{logs.stderr[-3000:]}")
        time.sleep(2)
    raise AssertionError(f"{container} not healthy after {timeout} s")


def a_png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (120, 90), (200, 160, 120)).save(buf, format="PNG")
    return buf.getvalue()


def classify_both(rest_port: int, grpc_port: int, jpeg: bytes, key: str | None = None) -> None:
    """REST /predict and gRPC imgclf.v1 Classify from the host, plus KServe V2 gRPC readiness."""
    from service.grpc._generated.imgclf.v1 import classifier_pb2, classifier_pb2_grpc
    from service.grpc._generated.inference import grpc_predict_v2_pb2 as v2_pb
    from service.grpc._generated.inference import grpc_predict_v2_pb2_grpc as v2_grpc

    headers = {"x-api-key": key} if key else {}
    metadata = (("authorization", f"Bearer {key}"),) if key else ()
    r = httpx.post(f"http://127.0.0.1:{rest_port}/predict", files=[("file", ("a.jpg", jpeg)),
                                                                   ("file", ("b.png", a_png()))],
                   headers=headers, timeout=30)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model_name"] == "rps" and len(body["predictions"]) == 2
    assert {p["label"] for p in body["predictions"]} <= {"none", "paper", "rock", "scissors"}
    with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
        reply = classifier_pb2_grpc.ImageClassifierStub(channel).Classify(
            classifier_pb2.ClassifyRequest(images=[jpeg]), metadata=metadata, timeout=30)
        assert reply.model_version == body["model_version"] and len(reply.predictions) == 1
        assert reply.predictions[0].label == body["predictions"][0]["label"]
        assert v2_grpc.GRPCInferenceServiceStub(channel).ModelReady(v2_pb.ModelReadyRequest(name="rps"),
                                                                    metadata=metadata).ready


def assert_locked(rest_port: int, grpc_port: int, key: str, jpeg: bytes) -> None:
    """With a key set: 401 / UNAUTHENTICATED without it on every REST route and gRPC method but the documented
    exemptions (enumerated from the served app's own document and the registered services), 200 with it."""
    from service.grpc._generated.imgclf.v1 import classifier_pb2, classifier_pb2_grpc
    from tests.service.surface import EXEMPT_GRPC, EXEMPT_REST, open_grpc_methods, open_rest_routes

    url = f"http://127.0.0.1:{rest_port}"
    assert httpx.get(f"{url}/openapi.json", timeout=30).status_code == 401
    doc = httpx.get(f"{url}/openapi.json", headers={"x-api-key": key}, timeout=30).json()
    opened = open_rest_routes(url, doc)
    assert {path for _, path, _ in opened} <= EXEMPT_REST, opened
    # the teach routes of the report: no example stored, none deleted without a key
    r = httpx.post(f"{url}/v1/models/rps/examples", files={"file": ("rock.jpg", jpeg)}, data={"label": "rock"})
    assert r.status_code == 401, r.text
    assert httpx.delete(f"{url}/v1/models/rps/examples").status_code == 401
    assert httpx.post(f"{url}/v1/models/rps/examples", files={"file": ("rock.jpg", jpeg)}, data={"label": "rock"},
                      headers={"x-api-key": key}).status_code == 201
    with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
        assert set(open_grpc_methods(channel)) <= EXEMPT_GRPC
        with pytest.raises(grpc.RpcError) as err:
            classifier_pb2_grpc.ImageClassifierStub(channel).Classify(
                classifier_pb2.ClassifyRequest(images=[jpeg]), timeout=30)
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    classify_both(rest_port, grpc_port, jpeg, key)


def test_compose_trainer_then_api(image, serve_image, sample_jpeg, tmp_path):
    """`podman-compose up` of the default services with teach on and a key: the trainer (full image) installs
    the demo version 1, the api (serve image) serves it, and nothing but the health checks and /metrics
    answers without the key."""
    if shutil.which("podman-compose") is None:
        pytest.skip("podman-compose is not installed (the Podman setup step in .ci/run installs it)")
    project = f"imgclftest{uuid.uuid4().hex[:6]}"
    rest_port, grpc_port = free_port(), free_port()
    key = uuid.uuid4().hex
    env = {"IMGCLF_FULL_IMAGE": image, "IMGCLF_SERVE_IMAGE": serve_image,
           "IMGCLF_TEACH": "true", "IMGCLF_MODELS_MOUNT": "rw", "IMGCLF_API_KEYS": key,
           "IMGCLF_REST_HOST_PORT": str(rest_port), "IMGCLF_GRPC_HOST_PORT": str(grpc_port)}
    compose = ["podman-compose", "-p", project, "-f", str(REPO / "docker-compose.yml")]
    try:
        started = time.monotonic()
        run(*compose, "up", "-d", env=env, timeout=900)
        trainer = run("podman", "wait", f"{project}_trainer_1", timeout=600).stdout.strip()
        logs = run("podman", "logs", f"{project}_trainer_1", check=False)
        assert trainer == "0", f"trainer exited {trainer}:\n{(logs.stdout + logs.stderr)[-3000:]}"
        healthy = wait_healthy(f"{project}_api_1")
        print(f"\ncompose: trainer done and api healthy {time.monotonic() - started:.0f} s after `up` "
              f"({healthy:.0f} s from the trainer's end)")
        assert_locked(rest_port, grpc_port, key, sample_jpeg)
    finally:
        run(*compose, "down", "-v", env=env, check=False, timeout=300)


def test_image_train_into_a_volume_then_serve(image, sample_jpeg):
    """The image alone: `train` into a named volume, then the default command (`serve`) on it."""
    suffix = uuid.uuid4().hex[:6]
    volume, container = f"imgclf-test-models-{suffix}", f"imgclf-test-api-{suffix}"
    rest_port, grpc_port = free_port(), free_port()
    train = ["train", "--data", "synthetic", "--epochs", "1", "--samples-per-class", "12",
             "--model-root", "/models"]
    try:
        run("podman", "volume", "create", volume)
        # a volume the non-root user may not write: one line saying so, no traceback
        ro = run("podman", "run", "--rm", "-v", f"{volume}:/models:ro", image, *train, check=False)
        output = ro.stdout + ro.stderr
        assert ro.returncode != 0 and "Traceback" not in output, output[-3000:]
        last = output.strip().splitlines()[-1]
        assert last.startswith("error: cannot write") and "/models" in last, output[-3000:]

        trained = run("podman", "run", "--rm", "-v", f"{volume}:/models", image, *train, timeout=600)
        assert "wrote /models/rps/1 (version 1" in trained.stdout, trained.stdout[-2000:]
        # teach on, no key, on the image's 0.0.0.0: refused in one line (and so is an unusable TLS file)
        not_pem = ["-e", "IMGCLF_TLS_CERT_FILE=/etc/hostname", "-e", "IMGCLF_TLS_KEY_FILE=/etc/hostname"]
        for settings, words in ((["-e", "IMGCLF_TEACH=true"], "IMGCLF_API_KEYS"),
                                (not_pem, "IMGCLF_TLS_CERT_FILE=/etc/hostname: not a PEM certificate")):
            lines = refusal(image, *settings, "-v", f"{volume}:/models:ro")
            assert len(lines) == 1 and words in lines[0], lines
        key = uuid.uuid4().hex
        run("podman", "run", "-d", "--name", container, "-p", f"127.0.0.1:{rest_port}:8000",
            "-p", f"127.0.0.1:{grpc_port}:8500", "-e", f"IMGCLF_API_KEYS={key}", "-e", "IMGCLF_TEACH=true",
            "-e", "IMGCLF_DATA_ROOT=/tmp/data", "-v", f"{volume}:/models:ro", image)
        print(f"\nimage: api healthy {wait_healthy(container):.0f} s after `podman run`")
        assert_locked(rest_port, grpc_port, key, sample_jpeg)
    finally:
        run("podman", "rm", "-f", container, check=False)
        run("podman", "volume", "rm", "-f", volume, check=False)


_DISTRIBUTIONS = """
import importlib.metadata, json, platform, sys
env = {"python_full_version": platform.python_version(), "python_version": "%d.%d" % sys.version_info[:2],
       "platform_machine": platform.machine(), "sys_platform": sys.platform}
dists = {d.metadata["Name"]: d.version for d in importlib.metadata.distributions()}
print(json.dumps({"env": env, "dists": dists}))
"""


def test_serve_image_serves_without_tensorflow(serve_image, sample_jpeg):
    """The serve image: no TensorFlow to import; the tensorflow runtime and the TF Serving backend refused in
    one line naming imgclf:full; with no volume it installs the demo version and answers REST and gRPC."""
    found = run("podman", "run", "--rm", "--entrypoint", "python", serve_image, "-c",
                "import importlib.util as u; print([u.find_spec(m) is None for m in ('tensorflow', 'keras')])")
    assert found.stdout.strip() == "[True, True]", found.stdout
    for setting in ("IMGCLF_RUNTIME=tensorflow", "IMGCLF_BACKEND=tfserving"):
        lines = refusal(serve_image, "-e", setting)
        assert len(lines) == 1 and setting in lines[0] and "imgclf:full" in lines[0], lines
    container = f"imgclf-test-serve-{uuid.uuid4().hex[:6]}"
    rest_port, grpc_port = free_port(), free_port()
    try:
        run("podman", "run", "-d", "--name", container, "-p", f"127.0.0.1:{rest_port}:8000",
            "-p", f"127.0.0.1:{grpc_port}:8500", serve_image)
        print(f"\nserve image: healthy {wait_healthy(container):.0f} s after `podman run`")
        classify_both(rest_port, grpc_port, sample_jpeg)
    finally:
        run("podman", "rm", "-f", container, check=False)


@pytest.mark.parametrize(("target", "pip_file"), [("full", "requirements.txt"), ("serve", "requirements-serve.txt")])
def test_image_holds_exactly_the_locked_versions(request, target, pip_file):
    """Every distribution in the image is the one its pip file (uv.lock) pins for its Python and machine,
    and nothing else is there but pip (the venv's own) and imgclf itself. The serve image leaves out pip and
    setuptools, which only install and build."""
    import json

    from packaging.utils import canonicalize_name

    from tests.test_dependencies import lockfile

    image = request.getfixturevalue("image" if target == "full" else "serve_image")
    found = json.loads(run("podman", "run", "--rm", "--entrypoint", "python", image, "-c", _DISTRIBUTIONS).stdout)
    expected = lockfile().pinned(REPO / pip_file, found["env"])
    installed = {str(canonicalize_name(k)): v for k, v in found["dists"].items()}
    assert installed.pop("imgclf", None), "the package itself is not installed"
    if target == "serve":
        assert "pip" not in installed and expected.pop("setuptools", None), installed
    installed.pop("pip", None)
    assert installed == expected, {k: (installed.get(k), expected.get(k)) for k in installed.keys() | expected.keys()
                                   if installed.get(k) != expected.get(k)}


def test_serve_image_answers_every_protocol_and_standard_client(serve_image, sample_jpeg, tmp_path):
    """Against the serve image (no TensorFlow inside): KServe V2 through tritonclient and the KServe SDK (REST
    and gRPC), the KServe V1 SDK, TF Serving's gRPC Predict through tensorflow-serving-api's stubs and its REST
    predict, all give the scores the container's own `/predict` gives for the same pictures."""
    import base64
    import json
    import sys

    import numpy as np

    clients = REPO / "tests" / "service" / "standard_clients.py"
    files = [tmp_path / "hand.jpg", tmp_path / "blue.png"]
    files[0].write_bytes(sample_jpeg)
    files[1].write_bytes(a_png())
    container = f"imgclf-test-protocols-{uuid.uuid4().hex[:6]}"
    rest_port, grpc_port = free_port(), free_port()
    try:
        run("podman", "run", "-d", "--name", container, "-p", f"127.0.0.1:{rest_port}:8000",
            "-p", f"127.0.0.1:{grpc_port}:8500", serve_image)
        wait_healthy(container)
        rest = f"http://127.0.0.1:{rest_port}"
        native = httpx.post(f"{rest}/predict", files=[("file", (p.name, p.read_bytes())) for p in files],
                            timeout=60).json()
        labels = [p["label"] for p in native["predictions"]]
        order = sorted(native["predictions"][0]["scores"])
        scores = np.array([[p["scores"][x] for x in order] for p in native["predictions"]])
        for client, address in (("triton-http", f"127.0.0.1:{rest_port}"), ("triton-grpc", f"127.0.0.1:{grpc_port}"),
                                ("kserve-rest", f"127.0.0.1:{rest_port}"), ("kserve-grpc", f"127.0.0.1:{grpc_port}"),
                                ("kserve-v1", f"127.0.0.1:{rest_port}")):
            proc = subprocess.run([sys.executable, str(clients), client, address, "rps", *map(str, files)],
                                  capture_output=True, text=True, timeout=120)
            assert proc.returncode == 0, f"{client}: {proc.stderr[-2000:]}"
            got = json.loads(proc.stdout.strip().splitlines()[-1])
            np.testing.assert_allclose(np.array(got["scores"]), scores, atol=1e-5, err_msg=client)
            assert got["labels"] == labels, client
        # TF Serving REST, row format, and gRPC through the official stubs
        body = {"instances": [{"b64": base64.b64encode(p.read_bytes()).decode()} for p in files]}
        tfs = httpx.post(f"{rest}/v1/models/rps:predict", json=body, timeout=60).json()
        assert [row["label"] for row in tfs["predictions"]] == labels
        from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

        request = predict_pb2.PredictRequest()
        request.model_spec.name = "rps"
        request.inputs["image_bytes"].dtype = 7  # DT_STRING
        request.inputs["image_bytes"].tensor_shape.dim.add().size = len(files)
        request.inputs["image_bytes"].string_val.extend(p.read_bytes() for p in files)
        with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
            reply = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request, timeout=60)
        assert [x.decode() for x in reply.outputs["label"].string_val] == labels
        out = reply.outputs["scores"]  # packed in tensor_content, as TF Serving packs floats, or listed
        values = np.frombuffer(out.tensor_content, "<f4") if out.tensor_content else np.array(out.float_val)
        np.testing.assert_allclose(values.reshape(len(files), -1), scores, atol=1e-5)
    finally:
        run("podman", "rm", "-f", container, check=False)
