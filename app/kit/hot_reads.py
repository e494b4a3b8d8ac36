"""The reads callers poll, served without FastAPI's per-request work when the request is the plain case.

Under load, a read of one authorization took about 640 µs of CPU in the service's process, of which about 250 µs
were FastAPI's own: matching the path against every route, resolving the dependencies, wrapping the request and
the response. The bare baseline's whole request takes about 300 µs. So an operation may also have a *hot read*:

- The FastAPI route stays, and is the operation: its contract in the OpenAPI document, and every request that is
  not the plain case (a query string, HEAD, a path parameter the handler does not take as it is).
- The plain case is a GET without a query string whose path matches the operation's path in the document. It runs
  inside every middleware (metrics, request id, authentication), then goes to the handler registered for the
  operation id (`hot_read`), which calls the same service function as the route and returns the same model.
- A handler raises `NotPlain` for a parameter it does not take as it is, and the route serves the request (and
  answers 422 when the parameter is wrong). A `ProblemError` is answered as the route would answer it.

The two must answer alike: tests/api/test_hot_reads.py sends each request both ways (the routes ignore a query
parameter they do not declare) and compares status, headers and body, on chosen cases and on generated paths.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel
from starlette.types import ASGIApp, Receive, Scope, Send

from app.kit.db import DATABASE_ERROR_TYPES
from app.kit.errors import ProblemError, answer, outage_answer
from app.kit.operations import OPERATION_ID

_CACHE = "_hot_reads_by_path"


@dataclass(frozen=True, slots=True)
class HotRequest:
    app: Any  # the FastAPI app: its state holds the process's resources
    scope: Scope
    params: dict[str, str]  # the path's parameters (percent-decoded, as routes see them), by the document's names


class NotPlain(Exception):
    """The request is not the plain case this handler serves: the operation's route serves it."""


HotHandler = Callable[[HotRequest], Awaitable[BaseModel]]
_HANDLERS: dict[str, HotHandler] = {}


def hot_read(operation_id: str) -> Callable[[HotHandler], HotHandler]:
    """Registers the plain case of the GET operation `operation_id` (its route must exist in the document)."""

    def register(handler: HotHandler) -> HotHandler:
        _HANDLERS[operation_id] = handler
        return handler

    return register


@dataclass(frozen=True, slots=True)
class _Read:
    operation_id: str
    pattern: re.Pattern[str]
    handler: HotHandler


def _reads(app: Any) -> list[_Read]:
    """The app's hot reads, from its own OpenAPI document (read once per app)."""
    cached: list[_Read] | None = getattr(app.state, _CACHE, None)
    if cached is None:
        cached = []
        for template, operations in app.openapi().get("paths", {}).items():
            operation_id = operations.get("get", {}).get("operationId")
            if operation_id in _HANDLERS:
                pattern = re.sub(r"\\\{([^/]+?)\\\}", r"(?P<\1>[^/]+)", re.escape(template))
                cached.append(_Read(operation_id, re.compile(pattern), _HANDLERS[operation_id]))
        setattr(app.state, _CACHE, cached)
    return cached


def _json(model: BaseModel) -> bytes:
    return model.model_dump_json(by_alias=True).encode()


class HotReadsMiddleware:
    """Innermost of the app's middleware: authentication has already run."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "GET" or scope["query_string"]:
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        for read in _reads(scope["app"]):
            match = read.pattern.fullmatch(path)
            if match is not None:
                break
        else:
            await self.app(scope, receive, send)
            return
        scope[OPERATION_ID] = read.operation_id  # the same operation, whoever serves it (metrics' label)
        try:
            model = await read.handler(HotRequest(scope["app"], scope, match.groupdict()))
        except NotPlain:
            await self.app(scope, receive, send)
            return
        except ProblemError as error:
            await answer(error, path)(scope, receive, send)
            return
        except DATABASE_ERROR_TYPES as exc:
            outage = outage_answer(exc, path)
            if outage is None:
                raise
            await outage(scope, receive, send)
            return
        body = _json(model)
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-length", str(len(body)).encode()), (b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": body})
