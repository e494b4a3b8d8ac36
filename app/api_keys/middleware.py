"""Authentication, before anything reads the request's body: every request under /v1 needs a valid API key with
the scope its method needs (`read` for GET and HEAD, `write` for the others), or it is answered 401 or 403 here,
whatever its body (too large, not JSON, malformed). The caller is left in the request's state for the routes
(`CurrentCaller`), which decide what else it may touch.

A pure ASGI middleware, so that it runs before the request-limit and idempotency middlewares and before FastAPI
parses a body; it answers its problems itself, as it runs outside the app's exception handlers.
"""

from __future__ import annotations

from fastapi.security.utils import get_authorization_scheme_param
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from app.api_keys import service
from app.api_keys.models import Scope as KeyScope
from app.kit.db import DATABASE_ERROR_TYPES
from app.kit.errors import ProblemError, answer, outage_answer
from app.kit.operations import under_api_prefix

_READS = frozenset({"GET", "HEAD"})
CALLER = "caller"  # the key in the request's state


class AuthenticationMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not under_api_prefix(scope["path"]):
            await self.app(scope, receive, send)
            return
        method: str = scope["method"]
        path: str = scope["path"]
        scheme, key = get_authorization_scheme_param(Headers(scope=scope).get("authorization"))
        state = scope["app"].state
        try:
            # From this process's cache (app/api_keys/cache.py), or read in a session of its own, closed before the
            # app runs: a route that then waits on TikTok holds no connection for having been authenticated.
            caller = await service.authenticate_cached(
                state.read_sessionmaker,
                state.key_hasher,
                state.key_cache,
                key=key if scheme.lower() == "bearer" else None,
            )
            needed = KeyScope.read if method in _READS else KeyScope.write
            service.require_scope(caller, needed, doing=f"{method} {path}")
        except ProblemError as error:
            await answer(error, path)(scope, receive, send)
            return
        except DATABASE_ERROR_TYPES as exc:
            outage = outage_answer(exc, path)
            if outage is None:
                raise
            await outage(scope, receive, send)
            return
        scope.setdefault("state", {})[CALLER] = caller
        await self.app(scope, receive, send)
