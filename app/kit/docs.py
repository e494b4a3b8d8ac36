"""/docs: Swagger UI, served by the service itself from a packaged distribution (fastapi-swagger's assets, which
track Swagger UI's releases), so that it works with no internet and renders OpenAPI 3.1."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS_PATH = "/docs/assets"


def install_docs(app: FastAPI) -> None:
    """Serve Swagger UI at /docs (build the app with `docs_url=None, redoc_url=None`)."""
    assets = Path(str(files("fastapi_swagger") / "resources"))
    app.mount(ASSETS_PATH, StaticFiles(directory=assets), name="docs-assets")
    app.add_api_route("/docs", swagger_ui, methods=["GET"], include_in_schema=False)


# A module-level endpoint, not a closure over the app: FastAPI caches facts about endpoint functions in a
# process-wide cache, which would keep every app that ever defined a closure (every test's) alive with it.
async def swagger_ui(request: Request) -> HTMLResponse:
    """Swagger UI for the app serving the request."""
    app: FastAPI = request.app
    root = request.scope.get("root_path", "").rstrip("/")
    return get_swagger_ui_html(
        openapi_url=root + (app.openapi_url or "/openapi.json"),
        title=f"{app.title}: API docs",
        swagger_js_url=f"{root}{ASSETS_PATH}/swagger-ui-bundle.js",
        swagger_css_url=f"{root}{ASSETS_PATH}/swagger-ui.css",
        swagger_favicon_url=f"{root}{ASSETS_PATH}/favicon-32x32.png",
        swagger_ui_parameters={"persistAuthorization": True, "displayRequestDuration": True},
    )
