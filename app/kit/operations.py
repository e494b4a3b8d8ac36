"""Which documented operations serve a path: read from the app's own OpenAPI document, where every route is.

For what runs before routing (middleware) or after it failed (the 404 and 405 answers): the methods a path serves,
and the operation a request is for.
"""

from __future__ import annotations

import re
from typing import Any

from starlette.types import ASGIApp

API_PREFIX = "/v1"
OPERATION_ID = "operation_id"  # in a request's scope: the operation that served it without a route (app.kit.hot_reads)
_CACHE = "_operations_by_path"


def under_api_prefix(path: str) -> bool:
    """Whether the path is the API's (authenticated, versioned), not /healthz, /readyz or /docs."""
    return path == API_PREFIX or path.startswith(API_PREFIX + "/")


def _compiled(app: Any) -> list[tuple[re.Pattern[str], dict[str, Any]]]:
    cached: list[tuple[re.Pattern[str], dict[str, Any]]] | None = getattr(app.state, _CACHE, None)
    if cached is None:
        cached = [
            (re.compile(re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(template))), operations)
            for template, operations in app.openapi().get("paths", {}).items()
        ]
        setattr(app.state, _CACHE, cached)
    return cached


def methods_served(app: ASGIApp, path: str) -> list[str]:
    """Every method the API serves at `path` (HEAD with GET); [] when it serves none."""
    methods = {
        method.upper() for pattern, operations in _compiled(app) if pattern.fullmatch(path) for method in operations
    }
    if "GET" in methods:
        methods.add("HEAD")
    return sorted(methods)


def operation(app: ASGIApp, method: str, path: str) -> dict[str, Any] | None:
    """The documented operation for this method and path, if there is one."""
    for pattern, operations in _compiled(app):
        if pattern.fullmatch(path) and method.lower() in operations:
            found: dict[str, Any] = operations[method.lower()]
            return found
    return None
