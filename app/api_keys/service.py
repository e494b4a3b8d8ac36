from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from app.api_keys import repository
from app.api_keys.models import ApiKey
from app.kit.crypto import hash_api_key
from app.kit.errors import NotAuthenticated


async def ensure_bootstrap_key(session: AsyncSession, *, key: str) -> None:
    """Make sure an API key with exactly this value exists (BOOTSTRAP_API_KEY)."""
    await repository.insert_if_absent(session, name="bootstrap", key_hash=hash_api_key(key))


async def authenticate(session: AsyncSession, *, key: str | None) -> ApiKey:
    """The active API key matching `key`, or NotAuthenticated."""
    if not key:
        raise NotAuthenticated("Send `Authorization: Bearer <api key>`.")
    api_key = await repository.get_active_by_hash(session, hash_api_key(key))
    if api_key is None:
        raise NotAuthenticated("The API key is unknown or revoked.")
    return api_key
