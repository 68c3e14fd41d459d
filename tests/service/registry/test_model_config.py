"""Several models from a TF Serving models.config: parsing, routing on every API, edits without a failed request."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc
import httpx
import pytest
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from service.grpc._generated.imgclf.v1 import classifier_pb2, classifier_pb2_grpc
from service.grpc._generated.inference import grpc_predict_v2_pb2 as v2_pb
from service.grpc._generated.inference import grpc_predict_v2_pb2_grpc as v2_grpc
from service.registry.model_config import ConfigError, parse
from service.v2 import pack_bytes
from training.train import TrainConfig, train

from .test_registry import copy_version, wait_for


def _config(*models: str) -> str:
    return "model_config_list {\n" + "".join(f"  config {{ {m} }}\n" for m in models) + "}\n"


RPS_STABLE_1 = ('name: "rps" base_path: "models/rps" model_platform: "tensorflow" '
                'model_version_policy { specific { versions: 1 versions: 2 } } '
                'version_labels { key: "stable" value: 1 } version_labels { key: "canary" value: 2 }')
RPS_STABLE_2 = RPS_STABLE_1.replace('key: "stable" value: 1', 'key: "stable" value: 2')


def test_parse_reads_tf_serving_text_format(tmp_path):
    where = tmp_path / "models.config"
    rps, hands = parse(_config(RPS_STABLE_1, 'name: "hands" base_path: "/srv/hands" '
                                             'model_version_policy { latest { num_versions: 2 } }'), where)
    assert (rps.name, rps.base_path, rps.policy, rps.specific_versions) == (
        "rps", tmp_path / "models" / "rps", "specific", (1, 2))
    assert rps.labels == {"stable": 1, "canary": 2}
    assert (hands.base_path, hands.policy, hands.latest_versions, hands.labels) == (
        Path("/srv/hands"), "latest", 2, {})


@pytest.mark.parametrize("text, fragment", [
    ("model_config_list { config { name: 'a' base_path: '/a' } ", "Expected"),
    ("model_config_list { config { nam: 'a' } }", "nam"),
    ("custom_model_config {}", "no model_config_list"),
    (_config('name: "a" base_path: "/a"', 'name: "a" base_path: "/b"'), "appears twice"),
    (_config('name: "a"'), "no base_path"),
    (_config('name: "a b" base_path: "/a"'), "may only hold"),
    (_config('name: "a" base_path: "/a" model_platform: "onnx"'), "onnx"),
    (_config('name: "a" base_path: "/a" model_version_policy { specific {} }'), "lists no versions"),
    (_config('name: "a" base_path: "/a" version_labels { key: "x-y" value: 1 }'), "bad version label"),
])
def test_parse_errors_are_one_line(tmp_path, text, fragment):
    with pytest.raises(ConfigError) as err:
        parse(text, tmp_path / "models.config")
    message = str(err.value)
    assert fragment in message and "\n" not in message and str(tmp_path) in message


def test_two_models_label_moved_and_model_added_without_a_failed_request(
        tmp_path, trained_model_root, sample_jpeg, start_server):
    root = tmp_path / "models"
    copy_version(trained_model_root, root, 1)
    copy_version(trained_model_root, root, 2)
    hands = train(TrainConfig(data="synthetic", epochs=1, samples_per_class=6, model_root=tmp_path / "other",
                              name="hands", seed=3))
    config = tmp_path / "models.config"
    config.write_text(_config(RPS_STABLE_1))
    server = start_server(root, model_config_file=config, poll_interval_s=0.3)
    assert server.core.models() == ["rps"]
    assert httpx.get(f"{server.rest_url}/v2/models/hands").status_code == 404

    stop = threading.Event()
    rest: list[tuple[int, int | None]] = []  # (status, version) of /predict?label=stable
    rpc: list[tuple[str, str]] = []  # (code, version) of KServe V2 gRPC ModelInfer
    ready: list[int] = []

    def rest_loop() -> None:
        with httpx.Client(base_url=server.rest_url, timeout=30) as c:
            while not stop.is_set():
                r = c.post("/predict", params={"model": "rps", "label": "stable"}, content=sample_jpeg,
                           headers={"content-type": "image/jpeg"})
                rest.append((r.status_code, r.json().get("model_version")))
                ready.append(c.get("/readyz").status_code)

    def grpc_loop() -> None:
        with grpc.insecure_channel(server.grpc_target) as channel:
            stub = v2_grpc.GRPCInferenceServiceStub(channel)
            while not stop.is_set():
                request = v2_pb.ModelInferRequest(model_name="rps", raw_input_contents=[pack_bytes([sample_jpeg])])
                request.inputs.add(name="image_bytes", datatype="BYTES", shape=[1])
                try:
                    rpc.append(("OK", stub.ModelInfer(request, timeout=30).model_version))
                except grpc.RpcError as exc:
                    rpc.append((exc.code().name, ""))

    threads = [threading.Thread(target=rest_loop), threading.Thread(target=grpc_loop)]
    for t in threads:
        t.start()
    try:
        wait_for(lambda: len(rest) >= 10 and len(rpc) >= 10)
        before = len(rest)
        # the edit: `stable` moves to version 2, and a second model appears
        config.write_text(_config(RPS_STABLE_2, f'name: "hands" base_path: "{hands.path.parent}"'))
        wait_for(lambda: any(v == 2 for _, v in rest[before:]), timeout=60)
        wait_for(lambda: "hands" in server.core.models() and server.core.model_ready("hands"), timeout=60)
        n = len(rest)
        wait_for(lambda: len(rest) >= n + 10)
        # a file that does not parse keeps the last good config serving
        config.write_text("model_config_list { config { name: ")
        wait_for(lambda: server.core.models_set.last_config_error is not None, timeout=30)
        n = len(rest)
        wait_for(lambda: len(rest) >= n + 10)
    finally:
        stop.set()
        for t in threads:
            t.join()
    print(f"\nduring the config edits: {len(rest)} REST requests, {len(rpc)} gRPC requests, "
          f"{len(ready)} readiness probes")
    assert [s for s, _ in rest if s != 200] == [] and [c for c, _ in rpc if c != "OK"] == []
    assert set(ready) == {200}
    versions = [v for _, v in rest]
    switch = versions.index(2)
    assert set(versions[:switch]) == {1} and set(versions[switch:]) == {2}  # the label moved once
    assert {v for _, v in rpc} == {"2"}  # no label: the newest version throughout
    assert server.core.models() == ["rps", "hands"]

    # the new model answers on every API surface
    r = httpx.post(f"{server.rest_url}/predict", params={"model": "hands"}, content=sample_jpeg,
                   headers={"content-type": "image/jpeg"})
    assert r.status_code == 200 and r.json()["model_name"] == "hands"
    b64 = base64.b64encode(sample_jpeg).decode()
    assert httpx.post(f"{server.rest_url}/v1/models/hands:predict",
                      json={"instances": [{"b64": b64}]}).status_code == 200
    r = httpx.post(f"{server.rest_url}/v2/models/hands/infer", json={"inputs": [
        {"name": "image_bytes", "shape": [1], "datatype": "BYTES", "data": [b64]}]})
    assert r.status_code == 200 and r.json()["model_name"] == "hands"
    assert httpx.get(f"{server.rest_url}/models", params={"model": "hands"}).json()["models"] == ["rps", "hands"]
    with grpc.insecure_channel(server.grpc_target) as channel:
        reply = classifier_pb2_grpc.ImageClassifierStub(channel).Classify(
            classifier_pb2.ClassifyRequest(images=[sample_jpeg], model_name="hands"))
        assert reply.model_name == "hands" and reply.model_version == 1
        request = predict_pb2.PredictRequest()
        request.model_spec.name = "hands"
        request.inputs["image_bytes"].CopyFrom(tf.make_tensor_proto([sample_jpeg]))
        tfs = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request)
        assert tfs.model_spec.name == "hands" and tfs.model_spec.version.value == 1


def test_model_removed_from_the_config_is_unloaded(tmp_path, trained_model_root, sample_jpeg, start_server):
    root = tmp_path / "models"
    copy_version(trained_model_root, root, 1)
    config = tmp_path / "models.config"
    config.write_text(_config('name: "rps" base_path: "models/rps"', 'name: "other" base_path: "models/rps"'))
    server = start_server(root, model_config_file=config, poll_interval_s=0.3)
    assert server.core.models() == ["rps", "other"]
    config.write_text(_config('name: "rps" base_path: "models/rps"'))
    wait_for(lambda: server.core.models() == ["rps"], timeout=30)
    r = httpx.post(f"{server.rest_url}/predict", params={"model": "other"}, content=sample_jpeg,
                   headers={"content-type": "image/jpeg"})
    assert r.status_code == 404 and "other" in r.json()["error"]


def test_bad_config_at_start_is_one_line(tmp_path):
    config = tmp_path / "models.config"
    config.write_text("model_config_list { config { name: 'a' }")
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", "from service.cli import main; main()", "serve", "--rest-port", "0",
                           "--grpc-port", "0"], env={**os.environ, "IMGCLF_MODEL_CONFIG": str(config)},
                          capture_output=True, text=True, timeout=120, cwd=Path(__file__).resolve().parents[3])
    assert proc.returncode != 0 and time.monotonic() - started < 120
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error:") and str(config) in last and "Traceback" not in proc.stderr
