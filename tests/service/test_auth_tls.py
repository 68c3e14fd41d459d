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
from google.protobuf import descriptor_pool
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from starlette.routing import Mount, Route

from service.grpc._generated.imgclf.v1 import classifier_pb2 as pb
from service.grpc._generated.imgclf.v1 import classifier_pb2_grpc
from tests.service.conftest import RunningServer, test_settings

KEYS = ("old-key-0123456789abcdef", "new-key-fedcba9876543210")
EXEMPT = {"/healthz", "/readyz", "/metrics", "/v2/health/live", "/v2/health/ready"}


@pytest.fixture(scope="module")
def keyed(trained_model_root) -> Iterator[RunningServer]:
    server = RunningServer(test_settings(trained_model_root, api_keys=",".join(KEYS))).start()
    yield server
    server.stop()


def _rest_routes(server: RunningServer) -> list[tuple[str, str]]:
    """Every (method, concrete path): the OpenAPI paths plus the page, its files and the docs."""
    app = server.server.app
    fill = {"model": "rps", "ver": "1", "tail": "rps:predict"}
    out = []
    for path, ops in app.openapi()["paths"].items():
        for method in ops:
            concrete = re.sub(r"\{(\w+)(:\w+)?\}", lambda m: fill.get(m[1], "x"), path)
            if path == "/v1/models/{tail}" and method == "get":
                concrete = "/v1/models/rps"
            out.append((method.upper(), concrete))
    for route in app.routes:
        if isinstance(route, Mount):
            out.append(("GET", f"{route.path}/app.js"))
        elif isinstance(route, Route):
            out.append(("GET", route.path))
    return out


def test_every_rest_route_needs_a_key_except_the_exempt_ones(keyed, sample_jpeg):
    routes = _rest_routes(keyed)
    assert len(routes) >= 20, routes  # native, /v1, /v2, page, docs
    for method, path in routes:
        r = httpx.request(method, keyed.rest_url + path)
        if path in EXEMPT:
            assert r.status_code != 401, (method, path)
        else:
            assert r.status_code == 401, (method, path, r.status_code)
            assert r.json()["error"].startswith("missing or invalid API key")
            assert r.headers["www-authenticate"].startswith("Bearer")
        for wrong in ({"authorization": "Bearer nope"}, {"x-api-key": KEYS[0][:-1]},
                      {"authorization": f"Basic {KEYS[0]}"}):
            if path not in EXEMPT:
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


def _grpc_methods(channel: grpc.Channel, metadata: tuple) -> list[tuple[str, bool, bool]]:
    """(full method path, client streaming, server streaming) of every service the server lists."""
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    (reply,) = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]),
                                         metadata=metadata, timeout=10)
    names = [s.name for s in reply.list_services_response.service]
    methods = []
    for name in names:
        service = descriptor_pool.Default().FindServiceByName(name)
        methods.extend((f"/{name}/{m.name}", m.client_streaming, m.server_streaming) for m in service.methods)
    return methods


def test_every_grpc_method_needs_a_key_except_health(keyed):
    channel = grpc.insecure_channel(keyed.grpc_target)
    good = (("authorization", f"Bearer {KEYS[1]}"),)
    methods = _grpc_methods(channel, good)
    services = {m[0].split("/")[1] for m in methods}
    assert {"imgclf.v1.ImageClassifier", "tensorflow.serving.PredictionService", "tensorflow.serving.ModelService",
            "grpc.reflection.v1alpha.ServerReflection", "grpc.health.v1.Health"} <= services
    identity = {"request_serializer": lambda b: b, "response_deserializer": lambda b: b}
    for path, client_streaming, server_streaming in methods:
        for metadata in ((), (("x-api-key", "wrong-key-0123456789"),), (("authorization", KEYS[0]),)):
            kind = {(False, False): channel.unary_unary, (False, True): channel.unary_stream,
                    (True, False): channel.stream_unary, (True, True): channel.stream_stream}
            call = kind[(client_streaming, server_streaming)](path, **identity)
            request = iter([b""]) if client_streaming else b""
            code = grpc.StatusCode.OK
            try:
                result = call(request, metadata=metadata, timeout=2)
                if server_streaming:
                    next(iter(result))  # Health/Watch streams forever: the first message is enough
            except grpc.RpcError as err:
                code = err.code()
            if path.startswith("/grpc.health.v1.Health/"):  # exempt, and working (List is not in this grpcio)
                assert code in (grpc.StatusCode.OK, grpc.StatusCode.UNIMPLEMENTED), (path, code)
            else:
                assert code == grpc.StatusCode.UNAUTHENTICATED, (path, code)
    health = health_pb2_grpc.HealthStub(channel)
    assert health.Check(health_pb2.HealthCheckRequest(), timeout=10).status == health_pb2.HealthCheckResponse.SERVING
    stub = classifier_pb2_grpc.ImageClassifierStub(channel)
    assert stub.GetModelStatus(pb.ModelStatusRequest(), metadata=(("x-api-key", KEYS[0]),), timeout=10).ready
    channel.close()


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
    """`/` in the exempt list is the page's own path, not a prefix of every route (the README's lock-down
    recipe exempts `/` and `/static/` so the page loads and then asks for a key)."""
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
