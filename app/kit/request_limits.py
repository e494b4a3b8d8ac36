"""What the API reads of a request body, before anything parses it: at most MAX_BODY_BYTES (413
`request_too_large`), and only JSON (415 `unsupported_media_type`).

A pure ASGI middleware, inside authentication (an anonymous caller learns nothing but 401) and outside the
idempotency one and the app, which then read the body this middleware has already read and checked.
"""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from app.kit.asgi import BodyTooLarge, read_body, replaying
from app.kit.errors import RequestTooLarge, UnsupportedMediaType, answer

_WITH_BODY = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def is_json(content_type: str | None) -> bool:
    """`application/json` or any `application/<something>+json`, parameters (charset) aside."""
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    return media_type == "application/json" or (media_type.startswith("application/") and media_type.endswith("+json"))


class RequestLimitsMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in _WITH_BODY:
            await self.app(scope, receive, send)
            return
        limit: int = scope["app"].state.settings.max_body_bytes
        headers = Headers(scope=scope)
        path: str = scope["path"]
        too_large = RequestTooLarge(f"Request bodies are limited to {limit} bytes.")
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:  # refused before a byte of it is read
            await answer(too_large, path)(scope, receive, send)
            return
        try:
            body = await read_body(receive, limit=limit)
        except BodyTooLarge:
            await answer(too_large, path)(scope, receive, send)
            return
        if body is None:
            return  # the caller went away: there is no request to answer
        if body and not is_json(headers.get("content-type")):
            detail = f"Send the body as JSON with Content-Type: application/json, not {headers.get('content-type')!r}."
            await answer(UnsupportedMediaType(detail), path)(scope, receive, send)
            return
        await self.app(scope, replaying(body, receive), send)
