"""KServe V2 / Open Inference Protocol REST routes (/v2/...)."""

from __future__ import annotations

import base64
import binascii
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import numpy as np
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field, ValidationError

from service.core import ServingCore
from service.errors import InvalidInputError, NotFoundError
from service.rest.guards import DEADLINE

_OUTPUTS = ("scores", "label")


class _Tensor(BaseModel):
    name: str
    shape: list[int]
    datatype: str
    parameters: dict[str, Any] | None = None
    data: list[Any]


class _Requested(BaseModel):
    name: str
    parameters: dict[str, Any] | None = None


class InferRequest(BaseModel):
    id: str | None = None
    parameters: dict[str, Any] | None = None
    inputs: list[_Tensor] = Field(min_length=1)
    outputs: list[_Requested] | None = None


def _flatten(data: list[Any]) -> list[Any]:
    out: list[Any] = []
    for x in data:
        out.extend(_flatten(x) if isinstance(x, list) else [x])
    return out


def _decode(items: list[Any]) -> list[bytes]:
    images = []
    for i, item in enumerate(items):
        if not isinstance(item, str):
            raise InvalidInputError(f"input element {i}: BYTES data must be base64 strings")
        try:
            images.append(base64.b64decode(item, validate=True))
        except (binascii.Error, ValueError):
            raise InvalidInputError(f"input element {i}: invalid base64") from None
    return images


def _classification(out: _Requested) -> int:
    """The requested output's class count (0: plain tensor); checked before any inference."""
    if out.name not in _OUTPUTS:
        raise InvalidInputError(f"unknown output {out.name!r}; outputs are {list(_OUTPUTS)}")
    k = (out.parameters or {}).get("classification", 0)
    # a bad value is the client's mistake (400), not an internal error
    if isinstance(k, bool) or not isinstance(k, int) or k < 0:
        raise InvalidInputError(f"output {out.name!r}: parameter 'classification' must be a "
                                f"non-negative integer, got {k!r}")
    return k


def make_router(core: ServingCore) -> APIRouter:
    router = APIRouter(prefix="/v2", tags=["kserve-v2"])
    name = core.settings.model_name

    def metadata(model: str, ver: int | None) -> dict[str, Any]:
        info = core.model_info(model, ver)
        n = len(info.labels)
        return {
            "name": model, "versions": [str(v) for v in core.registry.available_versions()],
            "platform": "tensorflow_savedmodel",
            "inputs": [{"name": "image_bytes", "datatype": "BYTES", "shape": [-1]}],
            "outputs": [{"name": "scores", "datatype": "FP32", "shape": [-1, n]},
                        {"name": "label", "datatype": "BYTES", "shape": [-1]}],
            "parameters": {"labels": list(info.labels)},
        }

    @router.get("", summary="Server metadata")
    async def server_metadata() -> dict[str, Any]:
        try:
            v = version("imgclf")
        except PackageNotFoundError:
            v = "0"
        return {"name": "imgclf", "version": v, "extensions": ["classification"]}

    @router.get("/health/live")
    async def live() -> JSONResponse:
        return JSONResponse({"live": True})

    @router.get("/health/ready")
    async def ready() -> JSONResponse:
        ok = core.ready()
        return JSONResponse({"ready": ok}, status_code=200 if ok else 503)

    @router.get("/models/{model}")
    async def model_metadata(model: str) -> dict[str, Any]:
        return metadata(model, None)

    @router.get("/models/{model}/versions/{ver}")
    async def version_metadata(model: str, ver: int) -> dict[str, Any]:
        return metadata(model, ver)

    @router.get("/models/{model}/ready")
    async def model_ready(model: str) -> Response:
        core.check_name(model)
        ok = core.ready()
        return JSONResponse({"name": model, "ready": ok}, status_code=200 if ok else 503)

    @router.get("/models/{model}/versions/{ver}/ready")
    async def version_ready(model: str, ver: int) -> Response:
        core.check_name(model)
        if ver not in core.registry.versions:  # never seen: 404, like an unknown model
            raise NotFoundError(f"version {ver} of model {model!r} not found")
        ok = ver in core.registry.available_versions()
        return JSONResponse({"name": model, "ready": ok}, status_code=200 if ok else 503)

    async def infer(request: Request, model: str, ver: int | None) -> dict[str, Any]:
        try:
            req = InferRequest.model_validate_json(await request.body(), strict=True)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(x) for x in first["loc"])
            raise InvalidInputError(f"malformed inference request: {where}: {first['msg']}") from None
        if len(req.inputs) != 1 or req.inputs[0].datatype != "BYTES" or req.inputs[0].name != "image_bytes":
            raise InvalidInputError("expected one BYTES input 'image_bytes' of base64 images")
        tensor = req.inputs[0]
        items = _flatten(tensor.data)
        if int(np.prod(tensor.shape)) != len(items):
            raise InvalidInputError(f"input shape {tensor.shape} does not match its "
                                    f"{len(items)} data elements")
        wanted = [(out, _classification(out)) for out in req.outputs or [_Requested(name=n) for n in _OUTPUTS]]
        result = await core.classify(model, _decode(items), version=ver, deadline=request.scope.get(DEADLINE))
        outputs = []
        for out, k in wanted:
            n = len(result.scores)
            if k > 0:  # Triton's classification extension: "score:index:label", best first
                rows = [[f"{row[j]:.6f}:{j}:{result.labels[j]}" for j in np.argsort(-row)[:k]]
                        for row in result.scores]
                outputs.append({"name": out.name, "datatype": "BYTES", "shape": [n, min(k, len(result.labels))],
                                "data": _flatten(rows)})
            elif out.name == "scores":
                outputs.append({"name": "scores", "datatype": "FP32",
                                "shape": list(result.scores.shape),
                                "data": result.scores.ravel().tolist()})
            else:
                outputs.append({"name": "label", "datatype": "BYTES", "shape": [n],
                                "data": [p.label for p in result.predictions]})
        reply: dict[str, Any] = {"model_name": model, "model_version": str(result.model_version),
                                 "outputs": outputs}
        if req.id is not None:
            reply["id"] = req.id
        return reply

    @router.post("/models/{model}/infer")
    async def infer_latest(request: Request, model: str) -> dict[str, Any]:
        return await infer(request, model, None)

    @router.post("/models/{model}/versions/{ver}/infer")
    async def infer_version(request: Request, model: str, ver: int) -> dict[str, Any]:
        return await infer(request, model, ver)

    del name
    return router
