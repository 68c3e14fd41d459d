"""/docs offline: Swagger UI 5 from an installed package (fastapi-swagger's resources), under a strict CSP."""

from __future__ import annotations

from importlib.resources import files

from fastapi import FastAPI
from fastapi.responses import HTMLResponse, Response
from fastapi.staticfiles import StaticFiles

# No inline script and no other origin: the page runs only its own files. Swagger UI sets
# style attributes as it renders, hence 'unsafe-inline' for styles (scripts stay strict).
CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
       "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'none'")
_HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>imgclf API</title>
<link rel="stylesheet" href="/docs/assets/swagger-ui.css">
<link rel="icon" type="image/png" href="/docs/assets/favicon-32x32.png"></head>
<body><div id="swagger-ui"></div>
<script src="/docs/assets/swagger-ui-bundle.js"></script>
<script src="/docs/init.js"></script></body></html>
"""
_INIT = """window.ui = SwaggerUIBundle({url: "/openapi.json", dom_id: "#swagger-ui", deepLinking: true,
  presets: [SwaggerUIBundle.presets.apis], layout: "BaseLayout"});
"""


def add_docs(app: FastAPI) -> None:
    """Create the app with docs_url=None, then call this."""

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return HTMLResponse(_PAGE, headers=_HEADERS)

    @app.get("/docs/init.js", include_in_schema=False)
    async def init() -> Response:
        return Response(_INIT, media_type="text/javascript", headers=_HEADERS)

    # Swagger UI 5: version 4 (the swagger-ui-bundle package) cannot read OpenAPI 3.1 and shows an error instead
    assets = files("fastapi_swagger") / "resources"
    app.mount("/docs/assets", StaticFiles(directory=str(assets)), name="docs-assets")
