"""API keys on every REST route and gRPC method (exempt ones aside), and TLS / mutual TLS."""

from __future__ import annotations

import re
import ssl
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest
import trustme
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from service.grpc._generated.imgclf.v1 import classifier_pb2 as pb
from service.grpc._generated.imgclf.v1 import classifier_pb2_grpc
from tests.service.conftest import RunningServer, test_settings
from tests.service.surface import (
    EXEMPT_GRPC,
    EXEMPT_REST,
    REFLECTION,
    grpc_methods,
    open_grpc_methods,
    open_rest_routes,
    rest_routes,
)

KEYS = ("old-key-0123456789abcdef", "new-key-fedcba9876543210")


@pytest.fixture(scope="module")
def keyed(trained_model_root, tmp_path_factory) -> Iterator[RunningServer]:
    """Keys on, and every surface there is: teach too."""
    server = RunningServer(test_settings(trained_model_root, api_keys=",".join(KEYS), teach=True,
                                         data_root=tmp_path_factory.mktemp("data"))).start()
    yield server
    server.stop()


def test_every_rest_route_needs_a_key_except_the_exempt_ones(keyed):
    doc = keyed.server.app.openapi()
    routes = rest_routes(doc)
    assert len(routes) >= 40, routes  # native, teach, /v1, /v2, page, docs
    assert {p for _, p in routes} >= {"/v1/models/rps/examples", "/v1/models/rps/finetunes", "/v1/models/rps:predict",
                                      "/v2/models/rps/infer", "/predict", "/", "/docs"}
    opened = open_rest_routes(keyed.rest_url, doc)
    assert {path for _, path, _ in opened} == EXEMPT_REST, opened
    for method, path in routes:
        if path in EXEMPT_REST:
            continue
        r = httpx.request(method, keyed.rest_url + path)
        assert r.json()["error"].startswith("missing or invalid API key")
        assert r.headers["www-authenticate"].startswith("Bearer")
        for wrong in ({"authorization": "Bearer nope"}, {"x-api-key": KEYS[0][:-1]},
                      {"authorization": f"Basic {KEYS[0]}"}):
            assert httpx.request(method, keyed.rest_url + path, headers=wrong).status_code == 401


@pytest.mark.parametrize("headers", [{"authorization": f"Bearer {KEYS[0]}"}, {"x-api-key": KEYS[1]},
                                     {"authorization": f"bearer  {KEYS[1]}"}])
def test_either_key_works_on_every_api(keyed, sample_jpeg, headers):
    url = keyed.rest_url
    import base64

    b64 = base64.b64encode(sample_jpeg).decode()
    assert httpx.post(f"{url}/predict", content=sample_jpeg, headers={**headers, "content-type": "image/jpeg"}
                      ).status_code == 200
    assert httpx.post(f"{url}/v1/models/rps:predict", json={"instances": [{"b64": b64}]},
                      headers=headers).status_code == 200
    assert httpx.post(f"{url}/v2/models/rps/infer", headers=headers, json={"inputs": [
        {"name": "image_bytes", "shape": [1], "datatype": "BYTES", "data": [b64]}]}).status_code == 200
    assert httpx.get(f"{url}/models", headers=headers).status_code == 200


def test_every_grpc_method_needs_a_key_except_health(keyed):
    methods = {m[0] for m in grpc_methods()}
    assert len(methods) >= 20 and REFLECTION in methods
    with grpc.insecure_channel(keyed.grpc_target) as channel:
        for metadata in ((), (("x-api-key", "wrong-key-0123456789"),), (("authorization", KEYS[0]),)):
            opened = set(open_grpc_methods(channel, metadata))
            assert opened <= EXEMPT_GRPC, opened - EXEMPT_GRPC  # reflection too, by default
            assert {"/grpc.health.v1.Health/Check", "/inference.GRPCInferenceService/ServerLive",
                    "/inference.GRPCInferenceService/ServerReady"} <= opened
        health = health_pb2_grpc.HealthStub(channel)
        assert health.Check(health_pb2.HealthCheckRequest(), timeout=10).status == \
            health_pb2.HealthCheckResponse.SERVING
        stub = classifier_pb2_grpc.ImageClassifierStub(channel)
        assert stub.GetModelStatus(pb.ModelStatusRequest(), metadata=(("x-api-key", KEYS[0]),), timeout=10).ready


def _reflected_services(target: str, metadata: tuple[tuple[str, str], ...] = ()) -> list[str]:
    """What grpcurl's `list` does, with grpcio-reflection's own client (the descriptor database)."""
    with grpc.insecure_channel(target) as channel:
        if metadata:
            channel = grpc.intercept_channel(channel, _Metadata(metadata))
        return sorted(ProtoReflectionDescriptorDatabase(channel).get_services())


class _Metadata(grpc.StreamStreamClientInterceptor):
    def __init__(self, metadata: tuple[tuple[str, str], ...]) -> None:
        self.metadata = metadata

    def intercept_stream_stream(self, continuation, details, requests):  # type: ignore[no-untyped-def]
        return continuation(details._replace(metadata=self.metadata), requests)


def test_reflection_needs_a_key_unless_exempt(keyed, trained_model_root, start_server):
    with pytest.raises(grpc.RpcError) as err:
        _reflected_services(keyed.grpc_target)
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    services = _reflected_services(keyed.grpc_target, (("x-api-key", KEYS[0]),))
    assert {"grpc.health.v1.Health", "inference.GRPCInferenceService", "imgclf.v1.ImageClassifier"} <= set(services)
    opened = start_server(trained_model_root, api_keys=KEYS[0], auth_exempt_reflection=True)
    assert _reflected_services(opened.grpc_target) == services
    with grpc.insecure_channel(opened.grpc_target) as channel:
        assert set(open_grpc_methods(channel)) <= EXEMPT_GRPC | {REFLECTION}
        assert REFLECTION in open_grpc_methods(channel)


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> dict[str, Path]:
    ca = trustme.CA()
    base = tmp_path_factory.mktemp("pki")
    server = ca.issue_cert("127.0.0.1", "localhost")
    client = ca.issue_cert("client@imgclf.test")
    paths = {"ca": base / "ca.pem", "cert": base / "server.pem", "key": base / "server.key",
             "client": base / "client.pem"}
    ca.cert_pem.write_to_path(str(paths["ca"]))
    server.cert_chain_pems[0].write_to_path(str(paths["cert"]))
    server.private_key_pem.write_to_path(str(paths["key"]))
    client.private_key_and_cert_chain_pem.write_to_path(str(paths["client"]))
    return paths


def test_tls_on_rest_and_grpc(trained_model_root, pki, sample_jpeg, start_server):
    server = start_server(trained_model_root, tls_cert_file=pki["cert"], tls_key_file=pki["key"])
    url = server.rest_url.replace("http://", "https://")
    r = httpx.post(f"{url}/predict", content=sample_jpeg, headers={"content-type": "image/jpeg"},
                   verify=ssl.create_default_context(cafile=str(pki["ca"])))
    assert r.status_code == 200, r.text
    with pytest.raises(httpx.HTTPError):  # plain HTTP to a TLS port
        httpx.get(f"{server.rest_url}/healthz", timeout=5)
    creds = grpc.ssl_channel_credentials(root_certificates=pki["ca"].read_bytes())
    with grpc.secure_channel(server.grpc_target, creds) as channel:
        stub = classifier_pb2_grpc.ImageClassifierStub(channel)
        assert len(stub.Classify(pb.ClassifyRequest(images=[sample_jpeg]), timeout=30).predictions) == 1
    with grpc.insecure_channel(server.grpc_target) as channel, pytest.raises(grpc.RpcError):
        classifier_pb2_grpc.ImageClassifierStub(channel).GetModelStatus(pb.ModelStatusRequest(), timeout=5)


def test_mutual_tls_needs_a_client_certificate(trained_model_root, pki, sample_jpeg, start_server):
    server = start_server(trained_model_root, tls_cert_file=pki["cert"], tls_key_file=pki["key"],
                          tls_client_ca_file=pki["ca"])
    ca = pki["ca"].read_bytes()
    client_pem = pki["client"].read_bytes()
    with_cert = grpc.ssl_channel_credentials(root_certificates=ca, private_key=client_pem, certificate_chain=client_pem)
    with grpc.secure_channel(server.grpc_target, with_cert) as channel:
        reply = classifier_pb2_grpc.ImageClassifierStub(channel).Classify(
            pb.ClassifyRequest(images=[sample_jpeg]), timeout=30)
        assert len(reply.predictions) == 1
    with grpc.secure_channel(server.grpc_target, grpc.ssl_channel_credentials(root_certificates=ca)) as channel:
        with pytest.raises(grpc.RpcError) as err:
            classifier_pb2_grpc.ImageClassifierStub(channel).GetModelStatus(pb.ModelStatusRequest(), timeout=5)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    url = server.rest_url.replace("http://", "https://")
    with_cert_ctx = ssl.create_default_context(cafile=str(pki["ca"]))
    with_cert_ctx.load_cert_chain(str(pki["client"]))
    assert httpx.get(f"{url}/readyz", verify=with_cert_ctx).status_code == 200
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{url}/readyz", verify=ssl.create_default_context(cafile=str(pki["ca"])), timeout=5)


def test_tls_settings_are_checked_at_start_up(pki, tmp_path):
    with pytest.raises(ValueError, match="IMGCLF_TLS_KEY_FILE"):
        test_settings(tmp_path, tls_cert_file=pki["cert"])
    with pytest.raises(ValueError, match="mutual TLS"):
        test_settings(tmp_path, tls_client_ca_file=pki["ca"])
    with pytest.raises(ValueError, match="16 characters"):
        test_settings(tmp_path, api_keys="short")


def test_the_page_can_be_exempt_without_opening_every_route(tmp_path):
    """`/` in the exempt list is the page's own path, not a prefix of every route (the lock-down
    recipe in docs/operations.md exempts `/` and `/static/` so the page loads and then asks for a key)."""
    from service.auth import KeyChecker

    checker = KeyChecker(test_settings(tmp_path, api_keys=KEYS[0], auth_exempt_paths="/,/static/,/healthz"))
    assert checker.allowed("/", None, None)
    assert checker.allowed("/static/common.js", None, None)
    assert checker.allowed("/healthz", None, None)
    for path in ("/predict", "/models", "/v1/models/rps:predict", "/v2/models/rps/infer", "/healthz/x"):
        assert not checker.allowed(path, None, None), path
        assert checker.allowed(path, None, KEYS[0].encode()), path


def test_openapi_declares_the_keys_for_docs_authorize(keyed):
    """With keys on, /openapi.json declares both ways to send one, on every route that needs it, so /docs
    offers "Authorize" and its calls carry the key."""
    doc = httpx.get(f"{keyed.rest_url}/openapi.json", headers={"X-API-Key": KEYS[0]}).json()
    assert doc["components"]["securitySchemes"] == {
        "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
        "bearer": {"type": "http", "scheme": "bearer"}}
    assert doc["paths"]["/predict"]["post"]["security"] == [{"apiKey": []}, {"bearer": []}]
    assert doc["paths"]["/v1/models/{name}:predict"]["post"]["security"] == [{"apiKey": []}, {"bearer": []}]
    assert "security" not in doc["paths"]["/healthz"]["get"]
    assert "security" not in doc["paths"]["/metrics"]["get"]


@pytest.mark.parametrize("client", ["triton-http", "triton-grpc", "kserve-rest", "kserve-grpc"])
def test_standard_clients_reach_health_without_a_key(keyed, client):
    """One exemption list for both transports: KServe V2 server liveness and readiness answer without a key on
    REST and gRPC alike; the model calls next to them do not."""
    import json
    import subprocess
    import sys

    address = keyed.grpc_target if client.endswith("grpc") else keyed.rest_url.removeprefix("http://")
    script = Path(__file__).with_name("standard_clients.py")
    r = subprocess.run([sys.executable, str(script), f"health:{client}", address, "rps"], capture_output=True,
                       text=True, timeout=120, cwd=Path(__file__).resolve().parents[2])
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.splitlines()[-1])
    assert out["live"] is True and out["ready"] is True, out
    refused = out.get("error", "") + str(out.get("model_ready"))
    assert re.search(r"401|UNAUTHENTICATED|Unauthorized|API key|False", refused), out
