"""The Bearer API key that guards /v1, and what it may do."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from app.api_keys import service
from app.api_keys.access import Caller
from app.api_keys.models import Scope
from app.kit import actor
from app.kit.crypto import KeyHasher
from app.kit.db import Sessions

_bearer = HTTPBearer(auto_error=False, scheme_name="ApiKey", description="`Authorization: Bearer <api key>`")

_READS = frozenset({"GET", "HEAD", "OPTIONS"})


async def current_caller(
    request: Request,
    sessions: Sessions,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Caller:
    # A session of its own, closed before the route runs: a route that then waits on TikTok holds no
    # connection for having been authenticated. (A transaction: a key made before keys were keyed is re-hashed.)
    hasher: KeyHasher = request.app.state.key_hasher
    async with sessions.begin() as session:
        caller = await service.authenticate(session, hasher, key=credentials.credentials if credentials else None)
    actor.act_as(caller.api_key_id)  # every row this request writes records this key
    return caller


CurrentCaller = Annotated[Caller, Depends(current_caller)]


async def require_api_key(request: Request, caller: CurrentCaller) -> Caller:
    """Guards every /v1 operation: a valid key, with `read` to read and `write` to write."""
    scope = Scope.read if request.method in _READS else Scope.write
    service.require_scope(caller, scope, doing=f"{request.method} {request.url.path}")
    return caller
