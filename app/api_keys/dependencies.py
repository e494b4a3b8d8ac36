"""The Bearer API key that guards /v1."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from app.api_keys import service
from app.api_keys.models import ApiKey
from app.kit.db import Sessions

_bearer = HTTPBearer(auto_error=False, scheme_name="ApiKey", description="`Authorization: Bearer <api key>`")


async def require_api_key(
    sessions: Sessions,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> ApiKey:
    # A session of its own, closed before the route runs: a route that then waits on TikTok holds no
    # connection for having been authenticated.
    async with sessions() as session:
        return await service.authenticate(session, key=credentials.credentials if credentials else None)
