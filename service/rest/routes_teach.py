"""Teach routes (IMGCLF_TEACH): examples, fine-tune jobs with a server-sent event stream, rollback."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Path, Request
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse

from service.errors import InvalidInputError
from service.rest.multipart import check_multipart
from service.rest.scope import DEADLINE
from service.teach.core import TeachCore

_EXAMPLE_BODY = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "required": ["file", "label"],
    "properties": {"file": {"type": "string", "format": "binary", "description": "One image"},
                   "label": {"type": "string", "description": "One of the model's labels"}}}}}}}
_JSON = {"application/json": {"schema": {"type": "object"}}}
_SSE: dict[int | str, dict[str, Any]] = {"200": {
    "description": "The job's state now and after every change (event `job`), until it ends",
                "content": {"text/event-stream": {"schema": {"type": "string"}}}}}
_ID = Path(description="An example's id (the SHA-256 of its bytes, 32 hex digits)")
SSE_SLICE_S = 20.0  # a stream ends before the request deadline; EventSource reconnects by itself


def make_router(teach: TeachCore) -> APIRouter:
    router = APIRouter(tags=["teach"])

    @router.post("/v1/models/{name}/examples", status_code=201, openapi_extra=_EXAMPLE_BODY,
                 summary="Store one labelled example (multipart `file` and `label`); a duplicate is stored once",
                 responses={200: {"description": "Already stored under this label", "content": _JSON}})
    async def add_example(name: str, request: Request) -> JSONResponse:
        label, data = await _read_example(request)
        out = await teach.add_example(name, label, data)
        return JSONResponse(out, status_code=201 if out["created"] else 200)

    @router.get("/v1/models/{name}/examples",
                summary="Examples per label, with their ids and whether a hand was found in each")
    async def list_examples(name: str) -> dict[str, Any]:
        return await teach.list_examples(name)

    @router.get("/v1/models/{name}/examples/{example_id}", summary="One example's image",
                response_class=FileResponse, responses={200: {"content": {"image/*": {}}}})
    async def get_example(name: str, example_id: str = _ID) -> FileResponse:
        return FileResponse(teach.example_file(name, example_id))

    @router.delete("/v1/models/{name}/examples/{example_id}", summary="Delete one example")
    async def delete_example(name: str, example_id: str = _ID) -> dict[str, Any]:
        return teach.delete_example(name, example_id)

    @router.delete("/v1/models/{name}/examples", summary="Delete every example of the model")
    async def clear_examples(name: str) -> dict[str, Any]:
        return teach.clear_examples(name)

    @router.post("/v1/models/{name}/finetunes", status_code=202,
                 summary="Start a fine-tune of the serving version on the examples (one job at a time: 409)")
    async def start_finetune(name: str) -> dict[str, Any]:
        return (await teach.start_finetune(name)).public()

    @router.get("/v1/models/{name}/finetunes", summary="Fine-tune jobs, newest first")
    async def list_finetunes(name: str) -> dict[str, Any]:
        teach.core.check_model(name)
        return {"jobs": [j.public() for j in teach.runner.of_model(name)]}

    @router.get("/v1/models/{name}/finetunes/{job_id}", summary="A job's state, progress and result")
    async def get_finetune(name: str, job_id: str) -> dict[str, Any]:
        return teach.runner.get(name, job_id).public()

    @router.delete("/v1/models/{name}/finetunes/{job_id}", summary="Cancel a job (no version is published)")
    async def delete_finetune(name: str, job_id: str) -> dict[str, Any]:
        return (await teach.runner.cancel(name, job_id)).public()

    @router.post("/v1/models/{name}/finetunes/{job_id}/cancel", summary="Cancel a job (no version is published)")
    async def cancel_finetune(name: str, job_id: str) -> dict[str, Any]:
        return (await teach.runner.cancel(name, job_id)).public()

    @router.get("/v1/models/{name}/finetunes/{job_id}/events", responses=_SSE, response_class=StreamingResponse,
                summary="Server-sent events: the job's state after every change")
    async def finetune_events(name: str, job_id: str, request: Request) -> StreamingResponse:
        teach.runner.get(name, job_id)  # 404 before the stream starts
        deadline = request.scope.get(DEADLINE)
        until = time.monotonic() + SSE_SLICE_S
        if deadline is not None:
            until = min(until, deadline - 1.0)

        async def stream() -> AsyncIterator[bytes]:
            yield b"retry: 500\n\n"
            async for job in teach.runner.events(name, job_id, until=until):
                if teach.core.draining:
                    return
                yield f"event: job\ndata: {json.dumps(job)}\n\n".encode()

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    @router.post("/v1/models/{name}/rollback",
                 summary="Withdraw the version serving by default; the newest earlier one takes over")
    async def rollback(name: str) -> dict[str, Any]:
        return await teach.rollback(name)

    @router.get("/v1/models/{name}/withdrawn", summary="Versions withdrawn by a rollback")
    async def withdrawn(name: str) -> dict[str, Any]:
        return teach.withdrawn(name)

    @router.delete("/v1/models/{name}/withdrawn/{version}", summary="Put a withdrawn version back into service")
    async def restore(name: str, version: int = Path(ge=1)) -> dict[str, Any]:
        return await teach.restore(name, version)

    return router


async def _read_example(request: Request) -> tuple[str, bytes]:
    content_type = request.headers.get("content-type", "")
    if content_type.split(";")[0].strip().lower() != "multipart/form-data":
        raise InvalidInputError("send multipart/form-data with a 'file' field and a 'label' field")
    check_multipart(content_type, await request.body())
    form = await request.form()
    files = form.getlist("file")
    label = form.get("label")
    if len(files) != 1 or isinstance(files[0], str):
        raise InvalidInputError(f"send exactly one image in the 'file' field (got {len(files)})")
    if not isinstance(label, str) or not label:
        raise InvalidInputError("the 'label' field is missing: one of the model's labels")
    return label, await files[0].read()
