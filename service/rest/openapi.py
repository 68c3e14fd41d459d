"""The OpenAPI document, corrected to what the server really does: bodies, statuses, media types."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from service.auth import KeyChecker
from service.rest.routes_v2 import InferRequest
from service.settings import ServeSettings

_ERROR_TEXT = {400: "Bad input", 401: "Missing or invalid API key", 404: "Unknown model, version or label",
               409: "Conflicts with the current state (a fine-tune job runs; nothing to roll back to)",
               413: "Body, image count or pixels over the limit", 429: "Queue full; see Retry-After",
               503: "No version loaded, or draining; see Retry-After", 504: "Deadline exceeded"}
CLASSIFY = (400, 404, 413, 429, 503, 504)
LOOKUP = (400, 404, 503)

_B64 = {"type": "object", "required": ["b64"], "additionalProperties": False,
        "properties": {"b64": {"type": "string", "description": "Standard (or web-safe) base64 of an image"}}}
_B64_LIST = {"type": "array", "minItems": 1, "items": {"$ref": "#/components/schemas/B64"}}
_TFS_REQUEST = {
    "type": "object", "description": "TensorFlow Serving predict: exactly one of `instances` and `inputs`",
    "properties": {
        "signature_name": {"type": "string", "enum": ["", "serving_default"]},
        "instances": {"type": "array", "minItems": 1, "items": {"oneOf": [
            {"$ref": "#/components/schemas/B64"},
            {"type": "object", "required": ["image_bytes"], "additionalProperties": False,
             "properties": {"image_bytes": {"$ref": "#/components/schemas/B64"}}}]}},
        "inputs": {"oneOf": [
            {"$ref": "#/components/schemas/B64"}, _B64_LIST,
            {"type": "object", "required": ["image_bytes"], "additionalProperties": False,
             "properties": {"image_bytes": {"oneOf": [{"$ref": "#/components/schemas/B64"}, _B64_LIST]}}}]}},
    "oneOf": [{"required": ["instances"], "not": {"required": ["inputs"]}},
              {"required": ["inputs"], "not": {"required": ["instances"]}}]}
_TFS_PREDICT_REPLY = {"type": "object", "properties": {
    "predictions": {"type": "array", "items": {"type": "object", "properties": {
        "scores": {"type": "array", "items": {"type": "number"}}, "label": {"type": "string"}}}},
    "outputs": {"type": "object"}}}


def _param(name: str, kind: str = "string") -> dict[str, Any]:
    schema: dict[str, Any] = {"type": kind}
    if kind == "integer":
        schema["minimum"] = 0
    else:
        schema["pattern"] = "^[A-Za-z0-9_.-]+$"
    return {"name": name, "in": "path", "required": True, "schema": schema}


def _tf_serving_paths() -> dict[str, Any]:
    """TF Serving's URL families, path by path (one route serves them all)."""
    paths: dict[str, Any] = {}
    pins = [("", []), ("/versions/{version}", [_param("version", "integer")]),
            ("/labels/{label}", [_param("label")])]
    for pin, params in pins:
        base = [_param("name"), *params]
        paths[f"/v1/models/{{name}}{pin}:predict"] = {"post": {
            "tags": ["tensorflow-serving"], "summary": "TF Serving predict", "parameters": base,
            "requestBody": {"required": True, "content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/TFServingPredictRequest"}}}},
            "responses": {"200": {"description": "Scores and labels", "content": {"application/json": {
                "schema": _TFS_PREDICT_REPLY}}}}}}
        for tail, what in (("", "model version status"), ("/metadata", "signature_def metadata")):
            paths[f"/v1/models/{{name}}{pin}{tail}"] = {"get": {
                "tags": ["tensorflow-serving"], "summary": f"TF Serving {what}", "parameters": base,
                "responses": {"200": {"description": what, "content": {"application/json": {
                    "schema": {"type": "object"}}}}}}}
    return paths


def _statuses(path: str, method: str, op: dict[str, Any]) -> tuple[int, ...]:
    if "teach" in op.get("tags", ()):  # examples, fine-tunes, rollback: never queued, may conflict
        return {"post": (400, 404, 409, 413, 503), "delete": (400, 404, 409, 503)}.get(method, LOOKUP)
    if method == "post":
        return CLASSIFY
    if path in ("/readyz", "/v2/health/ready"):
        return (503,)
    if path.startswith(("/v1/models/", "/v2/models/")) or any(
            p["name"] in ("model", "name") for p in op.get("parameters", [])):  # a model is looked up
        return LOOKUP
    return ()


def install_openapi(app: FastAPI, settings: ServeSettings) -> None:
    keys = KeyChecker(settings)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(title=app.title, version=app.version, description=app.description,
                             routes=app.routes)
        schema["paths"].update(_tf_serving_paths())
        if keys.enabled:
            schema.setdefault("components", {})["securitySchemes"] = {
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
                "bearer": {"type": "http", "scheme": "bearer"}}
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        for unused in ("HTTPValidationError", "ValidationError"):  # FastAPI's 422, never sent here
            components.pop(unused, None)
        components["B64"] = _B64
        components["TFServingPredictRequest"] = _TFS_REQUEST
        components["InferRequest"] = InferRequest.model_json_schema(ref_template="#/components/schemas/{model}")
        components.update(components["InferRequest"].pop("$defs", {}))
        components.setdefault("ErrorResponse", {"type": "object", "required": ["error"],
                                                "properties": {"error": {"type": "string"}}})
        for path, ops in schema["paths"].items():
            for method, op in ops.items():
                for param in op.get("parameters", []):
                    if (param["in"] == "path" and param["name"] in ("name", "model")
                            and settings.model_config_file is None):  # one model, known at start
                        param["schema"] = {"type": "string", "enum": [settings.model_name]}
                responses = op.setdefault("responses", {})
                responses.pop("422", None)
                wanted = list(_statuses(path, method, op))
                if not keys.exempt(path):
                    wanted.append(401)  # when IMGCLF_API_KEYS is set
                    if keys.enabled:  # /docs then offers "Authorize" and sends the key it is given
                        op["security"] = [{"apiKey": []}, {"bearer": []}]
                if path.endswith(("/ready", "/readyz")):  # "not ready" is a status, not an error
                    responses.setdefault("503", {"description": "Not ready", "content": {
                        "application/json": {"schema": {"type": "object"}}}})
                for code in wanted:
                    responses.setdefault(str(code), {"description": _ERROR_TEXT[code], "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}}})
        metrics = schema["paths"]["/metrics"]["get"]["responses"]["200"]
        metrics["content"] = {"text/plain": {"schema": {"type": "string"}}}
        for path in ("/v2/models/{model}/infer", "/v2/models/{model}/versions/{ver}/infer"):
            schema["paths"][path]["post"]["requestBody"] = {"required": True, "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/InferRequest"}}}}
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
