"""The standard gRPC health service follows readiness (also over REST), and reflection lists every service."""

from __future__ import annotations

import os
import re
import shutil
import time

import grpc
import httpx
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from service.grpc._generated.imgclf.v1 import classifier_pb2 as pb
from service.grpc._generated.imgclf.v1 import classifier_pb2_grpc

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
SERVICES = ["", "imgclf.v1.ImageClassifier", "tensorflow.serving.PredictionService", "tensorflow.serving.ModelService"]


def _check(target: str, service: str = "") -> int:
    with grpc.insecure_channel(target) as channel:
        return health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service),
                                                         timeout=10).status


def test_health_serving_on_the_ready_server(serving):
    for service in SERVICES:
        assert _check(serving.grpc_target, service) == SERVING, service


def test_health_unknown_service_is_not_found(serving):
    with grpc.insecure_channel(serving.grpc_target) as channel:
        try:
            health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service="no.Such"), timeout=10)
        except grpc.RpcError as exc:
            assert exc.code() == grpc.StatusCode.NOT_FOUND
        else:
            raise AssertionError("Check of an unknown service answered")


def _wait_for(condition, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.1)


def test_no_model_means_not_ready_until_one_arrives(start_server, tmp_path, trained_model_root, sample_jpeg):
    srv = start_server(tmp_path)
    url = srv.rest_url

    assert _check(srv.grpc_target) == NOT_SERVING
    assert _check(srv.grpc_target, "imgclf.v1.ImageClassifier") == NOT_SERVING
    r = httpx.get(f"{url}/readyz")
    assert r.status_code == 503 and r.json() == {"ready": False, "versions": []}
    assert httpx.get(f"{url}/v2/health/ready").status_code == 503
    assert httpx.get(f"{url}/v2/models/rps/ready").status_code == 503
    # alive all the same: an orchestrator must not restart it
    assert httpx.get(f"{url}/healthz").status_code == 200
    assert httpx.get(f"{url}/v2/health/live").status_code == 200

    r = httpx.post(f"{url}/predict", content=sample_jpeg, headers={"content-type": "image/jpeg"})
    assert r.status_code == 503 and "no version" in r.json()["error"]
    assert int(r.headers["retry-after"]) >= 1
    with grpc.insecure_channel(srv.grpc_target) as channel:
        try:
            classifier_pb2_grpc.ImageClassifierStub(channel).Classify(pb.ClassifyRequest(images=[sample_jpeg]),
                                                                      timeout=10)
        except grpc.RpcError as exc:
            assert exc.code() == grpc.StatusCode.UNAVAILABLE
            trailing = dict(exc.trailing_metadata() or ())
            assert trailing["retry-after"]
            assert re.fullmatch(r"[0-9a-f]{32}", trailing["x-request-id"])  # generated, kept beside retry-after
        else:
            raise AssertionError("Classify answered without a model")

    # a version appears (moved in whole, as the exporter does): health follows without a restart
    staging = tmp_path / "staging"
    shutil.copytree(trained_model_root / "rps" / "1", staging)
    (tmp_path / "rps").mkdir()
    os.rename(staging, tmp_path / "rps" / "1")
    _wait_for(lambda: _check(srv.grpc_target) == SERVING)
    assert httpx.get(f"{url}/readyz").json() == {"ready": True, "versions": [1]}
    assert httpx.get(f"{url}/v2/health/ready").status_code == 200
    r = httpx.post(f"{url}/predict", content=sample_jpeg, headers={"content-type": "image/jpeg"})
    assert r.status_code == 200 and r.json()["model_version"] == 1


def test_reflection_lists_every_service(serving):
    with grpc.insecure_channel(serving.grpc_target) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        replies = list(stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]),
                                                 timeout=10))
        names = {s.name for s in replies[0].list_services_response.service}
        assert {"imgclf.v1.ImageClassifier", "tensorflow.serving.PredictionService",
                "tensorflow.serving.ModelService", "grpc.health.v1.Health",
                "grpc.reflection.v1alpha.ServerReflection"} <= names

        # what grpcurl does next: fetch the descriptors and find the methods
        db = ProtoReflectionDescriptorDatabase(channel)
        classifier = db.FindFileContainingSymbol("imgclf.v1.ImageClassifier")
        assert [m.name for m in classifier.service[0].method] == ["Classify", "ClassifyStream", "GetModelStatus"]
        for symbol, method in [("tensorflow.serving.PredictionService", "Predict"),
                               ("tensorflow.serving.ModelService", "GetModelStatus"),
                               ("grpc.health.v1.Health", "Check")]:
            file = db.FindFileContainingSymbol(symbol)
            (service,) = [s for s in file.service if symbol.endswith("." + s.name)]
            assert method in [m.name for m in service.method], symbol
