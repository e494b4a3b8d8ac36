"""The calling API key, as the routes see it: authenticated by AuthenticationMiddleware before the route (and
its body) is reached; here it is taken from the request's state, and every row the request writes records it."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request
from starlette.types import Scope

from app.api_keys.access import Caller
from app.api_keys.middleware import CALLER
from app.kit import actor
from app.kit.errors import NotAuthenticated

# How the OpenAPI document names the key (app.kit.contract puts it on every /v1 operation).
SECURITY_SCHEME_NAME = "ApiKey"
SECURITY_SCHEME: dict[str, Any] = {
    "type": "http",
    "description": "`Authorization: Bearer <api key>`",
    "scheme": "bearer",
}


async def current_caller(request: Request) -> Caller:
    return caller_of(request.scope)


def caller_of(scope: Scope) -> Caller:
    """The request's caller, for what serves it without FastAPI's dependencies (app.kit.hot_reads)."""
    caller: Caller | None = scope.get("state", {}).get(CALLER)
    if caller is None:  # a route outside /v1 asked for a caller: a mistake of this code, refused all the same
        raise NotAuthenticated("Send `Authorization: Bearer <api key>`.")
    actor.act_as(caller.api_key_id)  # every row this request writes records this key
    return caller


CurrentCaller = Annotated[Caller, Depends(current_caller)]
