"""Native routes: POST /predict, GET /models, health, readiness and metrics."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse

from service.core import ServingCore
from service.errors import InvalidInputError
from service.rest.multipart import check_multipart, split_form
from service.rest.schemas import ERROR_RESPONSES, ModelsResponse, PredictResponse, VersionOut
from service.rest.scope import DEADLINE, PREDICT_ROUTE
from version_format.card import POSE_KEY

_PREDICT_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {"schema": {
                "type": "object", "required": ["file"],
                "properties": {"file": {"type": "array",
                                        "items": {"type": "string", "format": "binary"},
                                        "description": "One or more images"}}}},
            "image/*": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}


def make_router(core: ServingCore) -> APIRouter:
    router = APIRouter()

    @router.post("/predict", name=PREDICT_ROUTE, response_model=PredictResponse, responses=ERROR_RESPONSES,
                 openapi_extra=_PREDICT_BODY, tags=["classify"],
                 summary="Classify one or more images (multipart field `file` or a raw image body)")
    async def predict(request: Request,
                      version: int | None = Query(None, ge=1, description="Pin a version"),
                      label: str | None = Query(None, description="Pin a version label"),
                      model: str | None = Query(None, description="Model name (default: IMGCLF_MODEL_NAME)")
                      ) -> Response:
        return await predict_reply(core, request, version=version, label=label, model=model)

    @router.get("/models", response_model=ModelsResponse, tags=["models"],
                summary="Versions seen, their state and labels")
    async def models(model: str | None = Query(None, description="Model name (default: IMGCLF_MODEL_NAME)")
                     ) -> ModelsResponse:
        name = model or core.default_model
        versions = []
        loaded = core.registry_for(name).versions
        for v in core.statuses(name, allow_empty=True):
            runtime: dict[str, Any] = {"runtime": v.runtime, "runtime_note": v.runtime_note} if v.runtime else {}
            # the core's own rule: whether an answer's `hand: null` means "no hand found" or "not looked for"
            hand_stage = v.version in loaded and core.hand_reader_for(loaded[v.version]) is not None
            versions.append(VersionOut(version=v.version, state=v.state, error=v.error, labels=list(v.labels),
                                       hand_stage=hand_stage, **card_summary(v.card), **runtime))
        available = core.available_versions(name)
        return ModelsResponse(name=name, ready=core.model_ready(name),
                              default_version=available[-1] if available else None,
                              version_labels=core.version_labels(name), versions=versions, models=core.models(),
                              teach=core.settings.teach)

    @router.get("/healthz", tags=["health"], summary="Liveness: 200 while the process runs")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/readyz", tags=["health"],
                summary="Readiness: 200 once a version is loaded and warm, else 503")
    async def readyz() -> JSONResponse:
        ready = core.ready()
        return JSONResponse({"ready": ready, "versions": core.available_versions(core.default_model)},
                            status_code=200 if ready else 503)

    @router.get("/metrics", tags=["health"], summary="Prometheus metrics")
    async def metrics() -> Response:
        return Response(core.metrics.render(), media_type="text/plain; version=0.0.4")

    return router


async def predict_reply(core: ServingCore, request: Request, *, version: int | None = None,
                        label: str | None = None, model: str | None = None) -> Response:
    images = await read_images(request)
    result = await core.classify(model or core.default_model, images, version=version, label=label,
                                 deadline=request.scope.get(DEADLINE))
    # the reply as bytes at once: validating it through PredictResponse costs more than the model call
    # on the int8 runtime; PredictResponse still describes it in the OpenAPI schema
    return Response(json.dumps({
        "model_name": result.model_name, "model_version": result.model_version,
        "predictions": [{"label": p.label, "confidence": p.confidence, "scores": p.scores, "path": p.path,
                         "hand": p.hand.as_dict() if p.hand else None} for p in result.predictions]},
        separators=(",", ":")).encode(),
        media_type="application/json")


def card_summary(card: dict[str, Any]) -> dict[str, Any]:
    """The model card's fields a person choosing a version wants; server paths never leave the server."""
    demo: dict[str, Any] = card["demo"] if isinstance(card.get("demo"), dict) else {}
    source = str(card.get("trained_on") or demo.get("data") or card.get("data_source") or "") or None
    if source and source.startswith("/"):
        source = source.rstrip("/").rsplit("/", 1)[-1] + " (a folder on the training machine)"

    def number(key: str) -> float | None:
        value = card.get(key)
        return value if isinstance(value, int | float) else None

    return {"val_accuracy": number("val_accuracy"), "created": card.get("created"),
            "recipe": card.get("recipe"), "arch": card.get("arch"), "trained_on": source,
            "validation": card.get("validation"), "reallike_accuracy": number("reallike_accuracy"),
            "reallike_seen_hands_accuracy": number("reallike_seen_hands_accuracy"),
            "provenance": demo.get("provenance"), "int8": _int8_summary(card.get("int8")),
            "pose": _pose_summary(card.get(POSE_KEY))}


def _int8_summary(record: Any) -> dict[str, Any] | None:
    if not isinstance(record, dict):
        return None
    return {k: record.get(k) for k in ("fp32_accuracy", "int8_accuracy", "drop_points", "max_drop_points")}


def _pose_summary(record: Any) -> dict[str, Any] | None:
    """The pose entry's plain figures (numbers, flags, words); lists, tables and server paths stay home."""
    if not isinstance(record, dict):
        return None
    kept = {str(k): v for k, v in record.items()
            if isinstance(v, int | float | bool) or (isinstance(v, str) and not v.startswith("/"))}
    return kept or None


async def read_images(request: Request) -> list[bytes]:
    """Multipart `file` fields (one or several) or a raw image/* body."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype == "multipart/form-data":
        body = await request.body()
        boundary = check_multipart(request.headers["content-type"], body)
        parts = split_form(body, boundary)
        if parts is not None:
            uploads = [(content, upload) for name, upload, content in parts if name == "file"]
            if not uploads:
                fields = ", ".join(sorted({name for name, _, _ in parts})) or "none"
                raise InvalidInputError(f"multipart field must be named 'file' (got: {fields})")
            if not all(upload for _, upload in uploads):
                raise InvalidInputError("field 'file' must be a file upload, not text")
            return [content for content, _ in uploads]
        form = await request.form()  # what the one-pass reader does not take: parses the body read above
        files = form.getlist("file")
        if not files:
            fields = ", ".join(sorted(set(form.keys()))) or "none"
            raise InvalidInputError(f"multipart field must be named 'file' (got: {fields})")
        images = []
        for item in files:
            if isinstance(item, str):
                raise InvalidInputError("field 'file' must be a file upload, not text")
            images.append(await item.read())
        return images
    if ctype.startswith("image/") or ctype == "application/octet-stream":
        body = await request.body()
        if not body:
            raise InvalidInputError("empty body: send an image")
        return [body]
    raise InvalidInputError(
        f"unsupported content type {ctype or 'none'!r}: send multipart/form-data with a 'file' "
        "field or a raw image/* body")
