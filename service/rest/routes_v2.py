"""KServe V2 / Open Inference Protocol REST routes (/v2/...), with Triton's binary tensor extension."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field, ValidationError

from service import v2
from service.core import ServingCore
from service.errors import InvalidInputError, NotFoundError
from service.rest.scope import DEADLINE, V2_INFER_ROUTE, V2_INFER_VERSION_ROUTE

HEADER_LENGTH = "inference-header-content-length"


class _Tensor(BaseModel):
    name: str
    shape: list[int]
    datatype: str
    parameters: dict[str, Any] | None = None
    data: list[Any] | None = None


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


def _decode_b64(items: list[Any]) -> list[bytes]:
    """JSON BYTES elements carry images as standard base64 strings."""
    images = []
    for i, item in enumerate(items):
        if not isinstance(item, str):
            raise InvalidInputError(f"input element {i}: BYTES data must be base64 strings")
        try:
            images.append(base64.b64decode(item, validate=True))
        except (binascii.Error, ValueError):
            raise InvalidInputError(f"input element {i}: invalid base64") from None
    return images


def _split_body(body: bytes, header: str | None) -> tuple[bytes, bytes]:
    """The JSON header and the binary tail (Triton's binary tensor extension)."""
    if header is None:
        return body, b""
    if not header.strip().isdigit() or int(header) > len(body):
        raise InvalidInputError(f"Inference-Header-Content-Length {header!r} must be a byte count no "
                                f"larger than the {len(body)} byte body")
    n = int(header)
    return body[:n], body[n:]


def _parse(head: bytes) -> InferRequest:
    try:
        return InferRequest.model_validate_json(head, strict=True)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(x) for x in first["loc"])
        hint = ("; a binary tensor body needs the Inference-Header-Content-Length header"
                if first["type"] == "json_invalid" else "")
        raise InvalidInputError(f"malformed inference request: {where}: {first['msg']}{hint}") from None


def _images(req: InferRequest, tail: bytes, limit: int) -> list[bytes]:
    if len(req.inputs) != 1:
        raise InvalidInputError(f"expected one BYTES input {v2.INPUT!r}, got {len(req.inputs)} inputs")
    tensor = req.inputs[0]
    size = (tensor.parameters or {}).get("binary_data_size")
    if size is not None:
        if isinstance(size, bool) or not isinstance(size, int) or size < 0 or size != len(tail):
            raise InvalidInputError(f"input {tensor.name!r}: binary_data_size {size!r} does not match "
                                    f"the {len(tail)} bytes after the JSON header")
        if tensor.data is not None:
            raise InvalidInputError(f"input {tensor.name!r} has both data and binary_data_size")
        images = v2.unpack_bytes(tail, f"input {tensor.name!r}", limit) if tensor.datatype == "BYTES" else []
    else:
        if tail:
            raise InvalidInputError(f"{len(tail)} bytes follow the JSON header but no input has "
                                    "binary_data_size")
        if tensor.data is None:
            raise InvalidInputError(f"input {tensor.name!r} has neither data nor binary_data_size")
        items = _flatten(tensor.data)
        v2.check_input(tensor.name, tensor.datatype, tensor.shape, len(items))
        return _decode_b64(items)
    v2.check_input(tensor.name, tensor.datatype, tensor.shape, len(images))
    return images


def _reply(req: InferRequest, model: str, version: int, tensors: list[v2.OutputTensor],
           wanted: list[v2.Requested]) -> Response:
    binary_default = (req.parameters or {}).get("binary_data_output") is True
    binary_by_name = {w.name: w.binary for w in wanted}
    outputs, tail = [], []
    for t in tensors:
        entry: dict[str, Any] = {"name": t.name, "datatype": t.datatype, "shape": t.shape}
        binary = binary_by_name.get(t.name)
        if binary if binary is not None else binary_default:
            raw = t.raw()
            entry["parameters"] = {"binary_data_size": len(raw)}
            tail.append(raw)
        else:
            entry["data"] = t.json_data()
        outputs.append(entry)
    reply: dict[str, Any] = {"model_name": model, "model_version": str(version), "outputs": outputs}
    if req.id is not None:
        reply["id"] = req.id
    head = json.dumps(reply, separators=(",", ":")).encode()
    if not tail:
        return Response(head, media_type="application/json")
    return Response(b"".join([head, *tail]), media_type="application/octet-stream",
                    headers={"Inference-Header-Content-Length": str(len(head))})


def make_router(core: ServingCore) -> APIRouter:
    router = APIRouter(prefix="/v2", tags=["kserve-v2"])

    @router.get("", summary="Server metadata")
    async def server_metadata() -> dict[str, Any]:
        return v2.server_metadata()

    @router.get("/health/live")
    async def live() -> JSONResponse:
        return JSONResponse({"live": True})

    @router.get("/health/ready")
    async def ready() -> JSONResponse:
        ok = core.ready()
        return JSONResponse({"ready": ok}, status_code=200 if ok else 503)

    @router.get("/models/stats", summary="Triton's statistics extension, every model")
    async def all_stats() -> dict[str, Any]:
        return {"model_stats": v2.statistics(core, None, None)}

    @router.get("/models/{model}")
    async def model_metadata(model: str) -> dict[str, Any]:
        return v2.model_metadata(core, model, None)

    @router.get("/models/{model}/versions/{ver}")
    async def version_metadata(model: str, ver: int) -> dict[str, Any]:
        return v2.model_metadata(core, model, ver)

    @router.get("/models/{model}/ready")
    async def model_ready(model: str) -> Response:
        ok = core.model_ready(model)
        return JSONResponse({"name": model, "ready": ok}, status_code=200 if ok else 503)

    @router.get("/models/{model}/versions/{ver}/ready")
    async def version_ready(model: str, ver: int) -> Response:
        if not core.has_seen(model, ver):  # never seen: 404, like an unknown model
            raise NotFoundError(f"version {ver} of model {model!r} not found")
        ok = core.model_ready(model, ver)
        return JSONResponse({"name": model, "ready": ok}, status_code=200 if ok else 503)

    @router.get("/models/{model}/stats", summary="Triton's statistics extension")
    async def model_stats(model: str) -> dict[str, Any]:
        return {"model_stats": v2.statistics(core, model, None)}

    @router.get("/models/{model}/versions/{ver}/stats", summary="Triton's statistics extension")
    async def version_stats(model: str, ver: int) -> dict[str, Any]:
        return {"model_stats": v2.statistics(core, model, ver)}

    @router.post("/repository/index", summary="Triton's repository index: every model version")
    async def repository_index(request: Request) -> list[dict[str, Any]]:
        body = await request.body()
        try:
            only_ready = bool(json.loads(body or b"{}").get("ready", False))
        except (ValueError, AttributeError):
            raise InvalidInputError("repository index request must be a JSON object") from None
        return v2.repository_index(core, only_ready)

    async def infer(request: Request, model: str, ver: int | None) -> Response:
        head, tail = _split_body(await request.body(), request.headers.get(HEADER_LENGTH))
        req = _parse(head)
        images = _images(req, tail, core.settings.max_images_per_request)
        wanted = [v2.requested(o.name, o.parameters) for o in req.outputs or []]
        result = await core.classify(model, images, version=ver, deadline=request.scope.get(DEADLINE))
        return _reply(req, model, result.model_version, v2.outputs(result, wanted), wanted)

    @router.post("/models/{model}/infer", name=V2_INFER_ROUTE)
    async def infer_latest(request: Request, model: str) -> Response:
        return await infer(request, model, None)

    @router.post("/models/{model}/versions/{ver}/infer", name=V2_INFER_VERSION_ROUTE)
    async def infer_version(request: Request, model: str, ver: int) -> Response:
        return await infer(request, model, ver)

    return router
