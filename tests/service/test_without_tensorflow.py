"""A server whose versions run on LiteRT never imports TensorFlow (nor Keras): every protocol answers, hand
stage on or off, and `tensorflow` is still missing from sys.modules at the end. Each case runs a real server
(port 0) in a process of its own, whose modules are its own."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.service.conftest import demo_version, sample_jpeg

ROOT = Path(__file__).resolve().parents[2]

# argv[1]: the model root; argv[2]: a JPEG to send; argv[3]: "hands" when the version has a pose classifier
_SERVE_AND_CALL = """
import base64, json, sys
from pathlib import Path
import grpc, httpx
sys.path.insert(0, ".")
from tests.service.conftest import RunningServer, test_settings
from service.grpc._generated.imgclf.v1 import classifier_pb2, classifier_pb2_grpc
from service.grpc._generated.inference import grpc_predict_v2_pb2 as v2, grpc_predict_v2_pb2_grpc as v2_grpc
from service.grpc._generated.tensorflow_serving.apis import (
    get_model_metadata_pb2, get_model_status_pb2, model_service_pb2_grpc, predict_pb2,
    prediction_service_pb2_grpc)
from service.tensors import make_ndarray, make_tensor_proto

root, image, hands = Path(sys.argv[1]), Path(sys.argv[2]).read_bytes(), sys.argv[3] == "hands"
server = RunningServer(test_settings(root, runtime="litert", hands_budget_ms=1000)).start()
seen = {}
try:
    url, b64 = server.rest_url, base64.b64encode(image).decode()
    r = httpx.post(f"{url}/predict", files={"file": ("a.jpg", image, "image/jpeg")}, timeout=60)
    assert r.status_code == 200, r.text
    seen["rest"] = r.json()
    r = httpx.post(f"{url}/v1/models/rps:predict", json={"instances": [{"b64": b64}]}, timeout=60)
    assert r.status_code == 200, r.text
    seen["tfs_rest"] = r.json()["predictions"][0]["scores"]
    r = httpx.get(f"{url}/v1/models/rps/metadata", timeout=60)
    assert r.status_code == 200 and "serving_default" in r.text, r.text
    r = httpx.post(f"{url}/v2/models/rps/infer", timeout=60, json={"inputs": [
        {"name": "image_bytes", "shape": [1], "datatype": "BYTES", "data": [b64]}]})
    assert r.status_code == 200, r.text
    seen["v2_rest"] = [o["name"] for o in r.json()["outputs"]]
    assert httpx.get(f"{url}/v2/models/rps", timeout=60).status_code == 200
    with grpc.insecure_channel(server.grpc_target) as channel:
        tfs = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        request = predict_pb2.PredictRequest()
        request.model_spec.name = "rps"
        request.inputs["image_bytes"].CopyFrom(make_tensor_proto([image]))
        if hands:
            request.output_filter.extend(["scores", "path", "hand_landmarks"])
        reply = tfs.Predict(request, timeout=60)
        seen["tfs_grpc"] = make_ndarray(reply.outputs["scores"]).tolist()
        if hands:
            seen["path"] = make_ndarray(reply.outputs["path"]).tolist()[0].decode()
            assert make_ndarray(reply.outputs["hand_landmarks"]).shape == (1, 21, 3)
        meta = tfs.GetModelMetadata(get_model_metadata_pb2.GetModelMetadataRequest(
            model_spec={"name": "rps"}, metadata_field=["signature_def"]), timeout=60)
        assert meta.model_spec.version.value == 1
        status = model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(
            get_model_status_pb2.GetModelStatusRequest(model_spec={"name": "rps"}), timeout=60)
        assert status.model_version_status[0].state == get_model_status_pb2.ModelVersionStatus.AVAILABLE
        kserve = v2_grpc.GRPCInferenceServiceStub(channel)
        infer = v2.ModelInferRequest(model_name="rps")
        infer.inputs.add(name="image_bytes", datatype="BYTES", shape=[1]).contents.bytes_contents.append(image)
        seen["v2_grpc"] = [o.name for o in kserve.ModelInfer(infer, timeout=60).outputs]
        assert kserve.ModelMetadata(v2.ModelMetadataRequest(name="rps"), timeout=60).name == "rps"
        classified = classifier_pb2_grpc.ImageClassifierStub(channel).Classify(
            classifier_pb2.ClassifyRequest(images=[image]), timeout=60)
        seen["classify"] = classified.predictions[0].label
        seen["runtime"] = server.core.model_info("rps", None, None).runtime
finally:
    server.stop()
seen["loaded"] = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras", "tf_keras"))
print(json.dumps(seen))
"""


def serve_and_call(root: Path, image: bytes, hands: bool, tmp_path: Path) -> dict[str, Any]:
    (tmp_path / "image.jpg").write_bytes(image)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    r = subprocess.run([sys.executable, "-c", _SERVE_AND_CALL, str(root), str(tmp_path / "image.jpg"),
                        "hands" if hands else "plain"], cwd=ROOT, capture_output=True, text=True, timeout=300,
                       env=env)
    assert r.returncode == 0, r.stderr[-4000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_litert_server_answers_every_protocol_without_tensorflow(tmp_path: Path) -> None:
    seen = serve_and_call(demo_version(tmp_path / "models"), sample_jpeg("rock", 0), False, tmp_path)
    assert seen["loaded"] == [], f"TensorFlow was imported: {seen['loaded'][:5]}"
    assert seen["runtime"] == "litert"
    assert len(seen["tfs_rest"]) == len(seen["tfs_grpc"][0]) == 4  # none, paper, rock, scissors
    assert "scores" in seen["v2_rest"] and "scores" in seen["v2_grpc"] and seen["classify"]


@pytest.mark.usefixtures("sample_pose")
def test_hand_stage_without_tensorflow(tmp_path: Path, sample_pose: Any) -> None:
    seen = serve_and_call(demo_version(tmp_path / "models", sample_pose), sample_jpeg("rock", 0), True, tmp_path)
    assert seen["loaded"] == [], f"TensorFlow was imported: {seen['loaded'][:5]}"
    assert seen["path"] == "pose" and seen["classify"] == "rock"
