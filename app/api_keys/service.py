from __future__ import annotations

import secrets
import uuid
from datetime import UTC, datetime

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from app.api_keys import repository
from app.api_keys.errors import AdminRequired, ApiKeyNotFound, CannotRevokeOwnKey
from app.api_keys.models import ApiKey
from app.kit.crypto import hash_api_key
from app.kit.errors import NotAuthenticated

log = structlog.get_logger(__name__)

KEY_PREFIX = "sa_"


async def ensure_bootstrap_key(session: AsyncSession, *, key: str) -> None:
    """Make sure an admin API key with exactly this value exists (BOOTSTRAP_API_KEY)."""
    await repository.upsert_admin(session, name="bootstrap", key_hash=hash_api_key(key))


async def authenticate(session: AsyncSession, *, key: str | None) -> ApiKey:
    """The active API key matching `key`, or NotAuthenticated."""
    if not key:
        raise NotAuthenticated("Send `Authorization: Bearer <api key>`.")
    api_key = await repository.get_active_by_hash(session, hash_api_key(key))
    if api_key is None:
        raise NotAuthenticated("The API key is unknown or revoked.")
    return api_key


def require_admin(api_key: ApiKey) -> None:
    if not api_key.is_admin:
        raise AdminRequired("Managing API keys needs an admin key.")


async def create(session: AsyncSession, *, name: str, is_admin: bool) -> tuple[ApiKey, str]:
    """A new key and its value, which is shown this once and stored only as a hash."""
    value = KEY_PREFIX + secrets.token_urlsafe(32)
    api_key = ApiKey(id=uuid.uuid4(), name=name, key_hash=hash_api_key(value), is_admin=is_admin)
    session.add(api_key)
    await session.flush()
    log.info("api_key.created", api_key_id=str(api_key.id), is_admin=is_admin)
    return api_key, value


async def list_all(session: AsyncSession) -> list[ApiKey]:
    """Every key, revoked ones included, oldest first."""
    return await repository.list_all(session)


async def revoke(session: AsyncSession, *, api_key_id: uuid.UUID, by: ApiKey) -> ApiKey:
    """Revoke a key at once; revoking twice is harmless. A key cannot revoke itself (no accidental lock-out)."""
    if api_key_id == by.id:
        raise CannotRevokeOwnKey()
    api_key = await repository.get_for_update(session, api_key_id)
    if api_key is None:
        raise ApiKeyNotFound(f"API key {api_key_id} does not exist.")
    if api_key.revoked_at is None:
        api_key.revoked_at = datetime.now(UTC)
        await session.flush()
        log.info("api_key.revoked", api_key_id=str(api_key.id), by=str(by.id))
    return api_key
