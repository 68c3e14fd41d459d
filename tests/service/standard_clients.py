"""Standard inference clients with their default settings, one per process (their protos clash in one).

`python standard_clients.py CLIENT ADDRESS MODEL IMAGE...` classifies the images and prints one JSON
line: the model version, scores, labels and what the client's health and metadata calls returned.
`python standard_clients.py health:CLIENT ADDRESS MODEL` makes only the health calls, without a key.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np


def triton_http(address: str, model: str, images: list[bytes]) -> dict[str, Any]:
    import tritonclient.http as client

    c = client.InferenceServerClient(address)
    inp = client.InferInput("image_bytes", [len(images)], "BYTES")
    inp.set_data_from_numpy(np.array(images, dtype=np.object_))
    result = c.infer(model, [inp])
    top = c.infer(model, [inp], outputs=[client.InferRequestedOutput("scores", class_count=1)])
    return {"live": c.is_server_live(), "ready": c.is_server_ready(), "model_ready": c.is_model_ready(model),
            "inputs": [i["name"] for i in c.get_model_metadata(model)["inputs"]],
            "version": result.get_response()["model_version"],
            "scores": result.as_numpy("scores").tolist(),
            "labels": [x.decode() for x in result.as_numpy("label")],
            "top1": [x.decode() for x in top.as_numpy("scores").ravel()],
            "stats_count": c.get_inference_statistics(model)["model_stats"][0]["inference_count"],
            "index": [m["name"] for m in c.get_model_repository_index()]}


def triton_grpc(address: str, model: str, images: list[bytes]) -> dict[str, Any]:
    import tritonclient.grpc as client

    c = client.InferenceServerClient(address)
    inp = client.InferInput("image_bytes", [len(images)], "BYTES")
    inp.set_data_from_numpy(np.array(images, dtype=np.object_))
    result = c.infer(model, [inp])
    top = c.infer(model, [inp], outputs=[client.InferRequestedOutput("scores", class_count=1)])
    stats = c.get_inference_statistics(model, as_json=True)
    return {"live": c.is_server_live(), "ready": c.is_server_ready(), "model_ready": c.is_model_ready(model),
            "inputs": [i.name for i in c.get_model_metadata(model).inputs],
            "version": result.get_response().model_version,
            "scores": result.as_numpy("scores").tolist(),
            "labels": [x.decode() for x in result.as_numpy("label")],
            "top1": [x.decode() for x in top.as_numpy("scores").ravel()],
            "stats_count": int(stats["model_stats"][0]["inference_count"]),
            "index": [m.name for m in c.get_model_repository_index().models]}


HAND_OUTPUTS = ("label", "path", "hand_box", "hand_landmarks", "hand_score", "handedness")


def triton_hands(which: str, address: str, model: str, images: list[bytes]) -> dict[str, Any]:
    """tritonclient asking for the hand's outputs by name (binary, its default), and the default outputs."""
    import tritonclient.grpc as grpc_client
    import tritonclient.http as http_client

    client: Any = grpc_client if which == "grpc" else http_client
    c = client.InferenceServerClient(address)
    inp = client.InferInput("image_bytes", [len(images)], "BYTES")
    inp.set_data_from_numpy(np.array(images, dtype=np.object_))
    result = c.infer(model, [inp], outputs=[client.InferRequestedOutput(name) for name in HAND_OUTPUTS])
    plain = c.infer(model, [inp])
    names = ([o["name"] for o in plain.get_response()["outputs"]] if which == "http"
             else [o.name for o in plain.get_response().outputs])
    out: dict[str, Any] = {"default_outputs": names}
    for name in HAND_OUTPUTS:
        value = result.as_numpy(name)
        out[name] = [x.decode() for x in value] if value.dtype == np.object_ else value.tolist()
    return out


def _kserve_request(model: str, images: list[bytes]) -> Any:
    from kserve import InferInput, InferRequest

    inp = InferInput("image_bytes", [len(images)], "BYTES")
    inp.set_data_from_numpy(np.array(images, dtype=np.object_))
    return InferRequest(model_name=model, infer_inputs=[inp], request_id="kserve-1")


def _kserve_result(response: Any) -> dict[str, Any]:
    outputs = {o.name: o for o in response.outputs}
    return {"id": response.id, "version": response.model_version,
            "scores": outputs["scores"].as_numpy().tolist(),
            "labels": [x.decode() if isinstance(x, bytes) else x for x in outputs["label"].as_numpy()]}


async def kserve_rest(address: str, model: str, images: list[bytes]) -> dict[str, Any]:
    from kserve import InferenceRESTClient, RESTConfig

    url = f"http://{address}"
    async with InferenceRESTClient(RESTConfig(protocol="v2")) as c:  # the SDK's default is V1
        response = await c.infer(url, _kserve_request(model, images), model_name=model)
        out = {"live": await c.is_server_live(url), "ready": await c.is_server_ready(url),
               "model_ready": await c.is_model_ready(url, model), **_kserve_result(response)}
        out.pop("version")  # the SDK's REST reply object drops model_version
    return out


async def kserve_v1(address: str, model: str, images: list[bytes]) -> dict[str, Any]:
    import base64

    from kserve import InferenceRESTClient

    url = f"http://{address}"
    async with InferenceRESTClient() as c:  # all defaults: protocol V1
        body = {"instances": [{"b64": base64.b64encode(x).decode()} for x in images]}
        reply = await c.infer(url, body, model_name=model)
        return {"live": await c.is_server_live(url),
                "scores": [p["scores"] for p in reply["predictions"]],
                "labels": [p["label"] for p in reply["predictions"]]}


async def kserve_grpc(address: str, model: str, images: list[bytes]) -> dict[str, Any]:
    from kserve import InferenceGRPCClient

    async with InferenceGRPCClient(address) as c:
        response = await c.infer(_kserve_request(model, images))
        return {"live": await c.is_server_live(), "ready": await c.is_server_ready(),
                "model_ready": await c.is_model_ready(model), **_kserve_result(response)}


async def health_only(which: str, address: str, model: str) -> dict[str, Any]:
    """Each client's server health calls, and one model call that is not exempt (as `error` when refused),
    with no key: what a load balancer's or an orchestrator's probe does."""
    out: dict[str, Any] = {}
    try:
        if which == "triton-http":
            import tritonclient.http as http_client

            c: Any = http_client.InferenceServerClient(address)
            out.update(live=c.is_server_live(), ready=c.is_server_ready())
            out["model_ready"] = c.is_model_ready(model)
            c.get_model_metadata(model)
        elif which == "triton-grpc":
            import tritonclient.grpc as grpc_client

            c = grpc_client.InferenceServerClient(address)
            out.update(live=c.is_server_live(), ready=c.is_server_ready())
            out["model_ready"] = c.is_model_ready(model)
        elif which == "kserve-grpc":
            from kserve import InferenceGRPCClient

            async with InferenceGRPCClient(address) as g:
                out.update(live=await g.is_server_live(), ready=await g.is_server_ready())
                out["model_ready"] = await g.is_model_ready(model)
        else:
            from kserve import InferenceRESTClient, RESTConfig

            async with InferenceRESTClient(RESTConfig(protocol="v2")) as r:
                url = f"http://{address}"
                out.update(live=await r.is_server_live(url), ready=await r.is_server_ready(url))
                out["model_ready"] = await r.is_model_ready(url, model)
    except Exception as exc:  # the refusal, in the client's own words
        out["error"] = f"{type(exc).__name__}: {exc}"
    return out


CLIENTS = {"triton-http": triton_http, "triton-grpc": triton_grpc, "kserve-rest": kserve_rest,
           "kserve-v1": kserve_v1, "kserve-grpc": kserve_grpc,
           "triton-hands-http": lambda *a: triton_hands("http", *a),
           "triton-hands-grpc": lambda *a: triton_hands("grpc", *a)}


def main() -> None:
    which, address, model, *paths = sys.argv[1:]
    if which.startswith("health:"):
        print(json.dumps(asyncio.run(health_only(which.split(":", 1)[1], address, model))))
        return
    images = [Path(p).read_bytes() for p in paths]
    out = CLIENTS[which](address, model, images)
    if asyncio.iscoroutine(out):
        out = asyncio.run(out)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
