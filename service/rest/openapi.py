"""The OpenAPI document, corrected to what the server really does: bodies, statuses, media types."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from service.auth import KeyChecker
from service.hand_tensors import HAND_OUTPUTS
from service.settings import ServeSettings
from service.v2 import OUTPUTS

_ERROR_TEXT = {400: "Bad input", 401: "Missing or invalid API key", 404: "Unknown model, version or label",
               409: "Conflicts with the current state (a fine-tune job runs; nothing to roll back to)",
               413: "Body, image count or pixels over the limit", 429: "Queue full; see Retry-After",
               503: "No version loaded, or draining; see Retry-After", 504: "Deadline exceeded"}
CLASSIFY = (400, 404, 413, 429, 503, 504)
LOOKUP = (400, 404, 503)

# OpenAPI's base64 format (the server also takes the web-safe alphabet); what it holds must decode as an image
_BASE64 = {"type": "string", "format": "byte",
           "description": "Base64 of an encoded image (JPEG, PNG, GIF, BMP or WEBP, at least IMGCLF_MIN_IMAGE_SIDE "
                          "pixels a side)"}
_B64 = {"type": "object", "required": ["b64"], "additionalProperties": False,
        "properties": {"b64": {"$ref": "#/components/schemas/Base64Image"}}}
_B64_LIST = {"type": "array", "minItems": 1, "items": {"$ref": "#/components/schemas/B64"}}
_VERSION = {"type": "integer", "minimum": 1, "maximum": 10**18 - 1}  # TF Serving's int64, as the server reads it
_ID_PATTERNS = {"example_id": "^[0-9a-f]{32}$", "job_id": "^[0-9a-f]{12}$"}
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


# what the server accepts: model names as IMGCLF_MODEL_NAME, version labels as TF Serving's
_PATTERNS = {"name": "^[A-Za-z0-9][A-Za-z0-9_.-]*$", "label": "^[A-Za-z0-9_]+$"}


def _param(name: str, kind: str = "string") -> dict[str, Any]:
    schema: dict[str, Any] = dict(_VERSION) if kind == "integer" else {"type": kind, "pattern": _PATTERNS[name]}
    return {"name": name, "in": "path", "required": True, "schema": schema}


def _infer_request(max_images: int) -> dict[str, Any]:
    """KServe V2 infer as the server takes it in JSON: one BYTES input `image_bytes` whose shape ([n] or
    [n, 1]) counts its base64 images; outputs picked by name."""
    tensor = {
        "type": "object", "required": ["name", "shape", "datatype", "data"],
        "properties": {
            "name": {"type": "string", "enum": ["image_bytes"]}, "datatype": {"type": "string", "enum": ["BYTES"]},
            "shape": {"type": "array"},
            "data": {"type": "array", "minItems": 1,
                     "items": {"$ref": "#/components/schemas/Base64Image"}},
            # binary_data_size belongs to the binary extension's bodies, not to a JSON one
            "parameters": {"type": ["object", "null"], "properties": {"binary_data_size": {"type": "null"}}}},
        "oneOf": [{"properties": {"shape": {"enum": [[n], [n, 1]]}, "data": {"minItems": n, "maxItems": n}}}
                  for n in range(1, max_images + 1)]}
    nullable_object = {"type": ["object", "null"]}
    return {"type": "object", "required": ["inputs"], "properties": {
        "id": {"type": ["string", "null"]}, "parameters": nullable_object,
        "inputs": {"type": "array", "minItems": 1, "maxItems": 1, "items": tensor},
        "outputs": {"type": ["array", "null"], "items": {"type": "object", "required": ["name"], "properties": {
            "name": {"type": "string", "enum": [*OUTPUTS, *HAND_OUTPUTS]}, "parameters": nullable_object}}}}}


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


def _tighten(op: dict[str, Any], labels: tuple[str, ...] | None) -> None:
    """What the server checks that FastAPI's document leaves out: version ranges, id formats, counts."""
    for param in op.get("parameters", []):
        if param["in"] == "path" and param["name"] in ("ver", "version"):
            param["schema"] = dict(_VERSION)
        elif param["in"] == "path" and param["name"] in _ID_PATTERNS:
            param["schema"] = {"type": "string", "pattern": _ID_PATTERNS[param["name"]]}
    form = op.get("requestBody", {}).get("content", {}).get("multipart/form-data", {}).get("schema", {})
    fields = form.get("properties", {})
    if fields.get("file", {}).get("type") == "array":  # /predict: one image or more (over the limit: 413)
        fields["file"]["minItems"] = 1
    if "label" in fields:  # a taught example's label
        fields["label"] = ({"type": "string", "enum": list(labels)} if labels
                           else {"type": "string", "minLength": 1, "pattern": "^[A-Za-z0-9_.-]+$"})
        fields["label"]["description"] = "One of the model's labels"


def install_openapi(app: FastAPI, settings: ServeSettings,
                    labels: Callable[[], tuple[str, ...] | None] = lambda: None) -> None:
    """`labels`: the default model's labels once a version is loaded (None before: the document is then
    rebuilt on the next request rather than kept)."""
    keys = KeyChecker(settings)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        known = labels()
        # a copy: FastAPI's document shares the routes' openapi_extra dicts, which are edited below
        schema = copy.deepcopy(get_openapi(title=app.title, version=app.version, description=app.description,
                                           routes=app.routes))
        schema["paths"].update(_tf_serving_paths())
        if keys.enabled:
            schema.setdefault("components", {})["securitySchemes"] = {
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
                "bearer": {"type": "http", "scheme": "bearer"}}
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        for unused in ("HTTPValidationError", "ValidationError"):  # FastAPI's 422, never sent here
            components.pop(unused, None)
        components["Base64Image"] = _BASE64
        components["B64"] = _B64
        components["TFServingPredictRequest"] = _TFS_REQUEST
        components["InferRequest"] = _infer_request(settings.max_images_per_request)
        components.setdefault("ErrorResponse", {"type": "object", "required": ["error"],
                                                "properties": {"error": {"type": "string"}}})
        for path, ops in schema["paths"].items():
            for method, op in ops.items():
                for param in op.get("parameters", []):
                    if (param["in"] == "path" and param["name"] in ("name", "model")
                            and settings.model_config_file is None):  # one model, known at start
                        param["schema"] = {"type": "string", "enum": [settings.model_name]}
                _tighten(op, known)
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
        if known is not None or settings.model_config_file is not None:
            app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
