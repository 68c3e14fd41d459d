"""create_app(settings, core): the FastAPI application; nothing is built at import time."""

from __future__ import annotations

import logging
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from service.auth import KeyChecker
from service.core import ServingCore
from service.errors import ServiceError
from service.rest import routes_native, routes_tfserving, routes_v2
from service.rest.docs import add_docs
from service.rest.fast_path import PredictFastPath
from service.rest.guards import AuthMiddleware, DeadlineMiddleware
from service.rest.middleware import BodyLimitMiddleware, MetricsMiddleware
from service.rest.openapi import install_openapi
from service.rest.scope import CLASSIFY_ROUTES, CLIENT_CLOSED, error_response
from service.settings import ServeSettings
from service.teach.core import TeachCore

log = logging.getLogger(__name__)
STATIC = Path(__file__).resolve().parent.parent / "web" / "static"


def service_error_response(exc: ServiceError) -> Response:
    headers = {}
    if exc.retry_after is not None:
        headers["Retry-After"] = str(max(1, round(exc.retry_after)))
    return error_response(exc.message, exc.http_status, headers)


def create_app(settings: ServeSettings, core: ServingCore, teach: TeachCore | None = None) -> FastAPI:
    # no trailing-slash redirects: TF Serving clients expect a 404, not a 307, for /v1/models
    # FastAPI's own OpenTelemetry hooks off: imgclf has its Prometheus metrics and request logs, and the
    # hooks' per-request provider lookups cost a few percent of the event loop on the hot route
    app = FastAPI(title="imgclf", version="0.1.0", redirect_slashes=False, docs_url=None, redoc_url=None,
                  telemetry={"tracing": False, "metrics": False, "logs": False},
                  description="Rock-paper-scissors image classification over REST: a native "
                              "API, TensorFlow Serving's REST API and KServe V2.")
    app.state.core = core

    @app.exception_handler(ServiceError)
    async def _service_error(request: Request, exc: ServiceError) -> Response:
        return service_error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> Response:
        parts = []
        for err in exc.errors():
            where = ".".join(str(x) for x in err.get("loc", ()) if x != "body")
            parts.append(f"{where}: {err.get('msg')}")
        return error_response("; ".join(parts) or "invalid request", 400)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        return error_response(str(exc.detail), exc.status_code, exc.headers)

    @app.exception_handler(ClientDisconnect)
    async def _gone(request: Request, exc: ClientDisconnect) -> Response:
        # the client left mid-body: its event, not a server error (no traceback, not a 5xx)
        log.info("client closed %s %s while sending the body", request.method, request.url.path)
        return Response(status_code=CLIENT_CLOSED)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response("internal error; see the server log", 500)

    native = routes_native.make_router(core)
    predict_route = next(r for r in native.routes if getattr(r, "path", None) == "/predict")
    app.include_router(native)
    if teach is not None:  # before TF Serving's catch-all /v1/models/... route
        from service.rest import routes_teach

        app.include_router(routes_teach.make_router(teach))
    tfserving, v2 = routes_tfserving.make_router(core), routes_v2.make_router(core)
    app.include_router(tfserving)
    app.include_router(v2)
    # what early admission (service/rest/admission.py) recognises a classify request by: these routes
    app.state.classify_routes = {r.name: r for router in (native, tfserving, v2) for r in router.routes
                                 if isinstance(r, APIRoute) and r.name in CLASSIFY_ROUTES}
    add_docs(app)

    def labels() -> tuple[str, ...] | None:
        if settings.model_config_file is not None:  # several models: a label is checked against its own
            return None
        try:
            return core.registry_for(settings.model_name).resolve().labels
        except ServiceError:  # nothing loaded yet
            return None

    install_openapi(app, settings, labels)
    has_page = (STATIC / "index.html").exists()

    @app.get("/", include_in_schema=False, response_model=None)
    async def index(request: Request) -> FileResponse | JSONResponse:
        # browsers ask for HTML; API clients (KServe's V1 liveness probe reads this route) get JSON
        if has_page and "text/html" in request.headers.get("accept", ""):
            return FileResponse(STATIC / "index.html", headers=_PAGE_HEADERS)
        return JSONResponse({"status": "alive"})

    if has_page:
        app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.add_middleware(PredictFastPath, core=core, handlers=app.exception_handlers,
                       route=predict_route)  # innermost: inside every guard below
    app.add_middleware(BodyLimitMiddleware, limit=settings.max_body_bytes)
    app.add_middleware(DeadlineMiddleware, timeout_s=settings.request_timeout_s)
    app.add_middleware(AuthMiddleware, keys=KeyChecker(settings))
    app.add_middleware(MetricsMiddleware, metrics=core.metrics)
    return app


# The page loads only its own files; the camera needs no extra source, just the permission.
_PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' blob: data:; media-src 'self' "
                               "blob: mediastream:; connect-src 'self'; style-src 'self'; "
                               "script-src 'self'; object-src 'none'; base-uri 'none'; "
                               "frame-ancestors 'none'; form-action 'self'",
    "Permissions-Policy": "camera=(self)",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
