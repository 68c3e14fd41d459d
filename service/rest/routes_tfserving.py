"""TensorFlow Serving's REST API (/v1/models/...), so its existing clients work unchanged."""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from google.protobuf.json_format import MessageToDict
from starlette.exceptions import HTTPException as StarletteHTTPException

from service.core import ClassifyResult, ServingCore
from service.errors import InvalidInputError, NotFoundError
from service.rest.scope import DEADLINE, TFSERVING_ROUTE

# TF Serving's own route patterns (http_rest_api_util.cc), matched case-insensitively.
_POST = re.compile(r"^/v1/models/([^/:]+)(?:/versions/(\d+)|/labels/([^/:]+))?:(classify|regress|predict)$",
                   re.IGNORECASE)
_GET = re.compile(r"^/v1/models(?:/([^/:]+))?(?:/versions/(\d+)|/labels/([^/:]+))?(?:/(metadata))?$",
                  re.IGNORECASE)
_INPUT = "image_bytes"
_SIGNATURES = ("", "serving_default")


def classify_target(path: str) -> tuple[str, int | None, str | None] | None:
    """(model, version, label) of a `:predict` or `:classify` path (what takes a version's batcher, or
    gets refused for it); None for any other path."""
    m = _POST.match(path)
    if m is None or m[4].lower() == "regress" or len(m[2] or "") > 18:  # out of range: the route says so
        return None
    return m[1], int(m[2]) if m[2] else None, m[3]


def b64decode(value: Any, where: str) -> bytes:
    """Standard base64 as TF Serving expects; the web-safe alphabet is accepted too."""
    if not isinstance(value, dict) or set(value) != {"b64"} or not isinstance(value["b64"], str):
        raise InvalidInputError(f'{where}: expected {{"b64": "<base64 image>"}}')
    text = value["b64"]
    try:
        if "-" in text or "_" in text:
            return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInputError(f"{where}: Unable to base64 decode") from None


def _images_from_row(instances: Any) -> list[bytes]:
    if not isinstance(instances, list) or not instances:
        raise InvalidInputError("'instances' must be a non-empty list")
    images = []
    for i, inst in enumerate(instances):
        if isinstance(inst, dict) and "b64" not in inst:
            unknown = set(inst) - {_INPUT}
            if unknown or _INPUT not in inst:
                raise InvalidInputError(f"instance {i}: the only input is '{_INPUT}'; got "
                                        f"{sorted(inst)}")
            inst = inst[_INPUT]
        images.append(b64decode(inst, f"instance {i}"))
    return images


def _images_from_columns(inputs: Any) -> list[bytes]:
    if isinstance(inputs, dict) and "b64" not in inputs:
        if set(inputs) != {_INPUT}:
            raise InvalidInputError(f"'inputs' must name the one input '{_INPUT}'; got {sorted(inputs)}")
        inputs = inputs[_INPUT]
    values = inputs if isinstance(inputs, list) else [inputs]
    if not values:
        raise InvalidInputError("'inputs' is empty")
    return [b64decode(v, f"input {i}") for i, v in enumerate(values)]


def _parse_predict(body: bytes) -> tuple[list[bytes], bool]:
    try:
        doc = json.loads(body)
    except ValueError as exc:  # also UnicodeDecodeError, and ints over Python's 4,300 digits
        raise InvalidInputError(f"JSON Parse error: {exc}") from None
    except RecursionError:  # e.g. "[[[[...": a client error, not a 500
        raise InvalidInputError("JSON Parse error: nested too deeply") from None
    if not isinstance(doc, dict):
        raise InvalidInputError("request body must be a JSON object")
    if doc.get("signature_name", "") not in _SIGNATURES:
        raise InvalidInputError(f"Serving signature name: \"{doc['signature_name']}\" not found "
                                "in signature def")
    has_rows, has_cols = "instances" in doc, "inputs" in doc
    if has_rows == has_cols:
        raise InvalidInputError("request must have exactly one of 'instances' (row format) or "
                                "'inputs' (columnar format)")
    if has_rows:
        return _images_from_row(doc["instances"]), True
    return _images_from_columns(doc["inputs"]), False


def _predict_reply(result: ClassifyResult, row: bool) -> dict[str, Any]:
    labels = [p.label for p in result.predictions]
    scores = result.scores.tolist()
    if row:
        return {"predictions": [{"scores": s, "label": lab} for s, lab in zip(scores, labels,
                                                                             strict=True)]}
    return {"outputs": {"scores": scores, "label": labels}}


def _version(text: str | None) -> int | None:
    if not text:
        return None
    if len(text) > 18:  # int64, as TF Serving; also keeps int() away from 4,300-digit strings
        raise InvalidInputError(f"version {text[:20]}... is out of range")
    return int(text)


_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


def make_router(core: ServingCore) -> APIRouter:
    router = APIRouter(tags=["tensorflow-serving"])

    # One route for TF Serving's two URL families (documented path by path in service/rest/openapi.py),
    # so a wrong method gets 405 with exactly the methods that path takes.
    @router.api_route("/v1/models/{tail:path}", methods=_METHODS, include_in_schema=False, name=TFSERVING_ROUTE)
    async def dispatch(request: Request, tail: str) -> JSONResponse:
        # the ASGI path is already percent-decoded: decoding again would let %2572 mean "r"
        path = request.scope["path"]
        allowed = "POST" if _POST.match(path) else "GET" if _GET.match(path) else None
        if allowed is None:
            raise NotFoundError(f"Malformed request: {request.method} {path}")
        if request.method != allowed:
            raise StarletteHTTPException(405, "Method Not Allowed", headers={"Allow": allowed})
        return await (post(request) if allowed == "POST" else get(request))

    async def post(request: Request) -> JSONResponse:
        m = _POST.match(request.scope["path"])
        assert m is not None
        name, version, label, verb = m[1], _version(m[2]), m[3], m[4].lower()
        if verb != "predict":
            raise InvalidInputError(f"{verb} is not supported by this model; use :predict")
        images, row = _parse_predict(await request.body())
        result = await core.classify(name, images, version=version, label=label,
                                     deadline=request.scope.get(DEADLINE))
        return JSONResponse(_predict_reply(result, row))

    async def get(request: Request) -> JSONResponse:
        path = request.scope["path"]
        m = _GET.match(path)
        if not m or not m[1]:
            raise NotFoundError(f"Malformed request: GET {path}")
        name, version, label = m[1], _version(m[2]), m[3]
        if m[4]:
            info = core.model_info(name, version, label or None)
            signature_map = {"signature_def": {
                k: MessageToDict(v, preserving_proto_field_name=True,
                                 always_print_fields_with_no_presence=True)
                for k, v in info.signature_defs.items()}}
            return JSONResponse({
                "model_spec": {"name": name, "signature_name": "", "version": str(info.version)},
                "metadata": {"signature_def": signature_map,
                             "runtime": {"name": info.runtime, "note": info.runtime_note}}})
        statuses = core.statuses(name, version, label or None)
        return JSONResponse({"model_version_status": [
            {"version": str(s.version), "state": s.state,
             "status": {"error_code": "UNKNOWN" if s.error else "OK",
                        "error_message": s.error or ""}} for s in statuses]})

    return router
