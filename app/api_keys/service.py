from __future__ import annotations

import secrets
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime

import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.api_keys import cache, repository
from app.api_keys.access import Caller
from app.api_keys.errors import AdminRequired, ApiKeyNotFound, CannotRevokeOwnKey, ScopeRequired
from app.api_keys.models import ApiKey, HashScheme, Scope
from app.kit import metrics
from app.kit.crypto import KeyHasher, hash_api_key
from app.kit.errors import NotAuthenticated
from app.kit.pagination import PageParams

log = structlog.get_logger(__name__)

KEY_PREFIX = "sa_"


async def ensure_bootstrap_key(session: AsyncSession, hasher: KeyHasher, *, key: str) -> None:
    """Make sure an admin API key with exactly this value exists (BOOTSTRAP_API_KEY)."""
    legacy = await repository.get_active_by_hash(session, hash_api_key(key), scheme=HashScheme.sha256)
    if legacy is not None:  # made before keys were keyed: the same key, re-hashed
        await repository.rehash(session, legacy.id, key_hash=hasher.hash(key))
    await repository.upsert_admin(session, name="bootstrap", key_hash=hasher.hash(key))


async def authenticate(session: AsyncSession, hasher: KeyHasher, *, key: str | None) -> Caller:
    """The caller with the active API key `key`, or NotAuthenticated. One statement (autocommit sessions are
    enough), and a second only for a key stored as plain SHA-256, which is re-hashed under the secret."""
    if not key:
        raise NotAuthenticated("Send `Authorization: Bearer <api key>`.")
    keyed = hasher.hash(key)
    found = await repository.find_active(session, hmac_hash=keyed, sha256_hash=hash_api_key(key))
    if found is None:
        raise NotAuthenticated("The API key is unknown or revoked.")
    if found.hash_scheme == HashScheme.sha256.value:
        await repository.rehash(session, found.api_key_id, key_hash=keyed)
        log.info("api_key.rehashed", api_key_id=str(found.api_key_id))
    admin = Scope.admin.value in found.scopes
    return Caller(
        api_key_id=found.api_key_id,
        scopes=frozenset(found.scopes),
        advertiser_ids=None if admin else frozenset(found.advertiser_ids),
    )


async def authenticate_cached(
    sessions: async_sessionmaker[AsyncSession], hasher: KeyHasher, keys: cache.KeyCache, *, key: str | None
) -> Caller:
    """`authenticate`, from what this process read about the key at most `keys.seconds` ago when it can."""
    if not key:
        raise NotAuthenticated("Send `Authorization: Bearer <api key>`.")
    keyed = hasher.hash(key)
    caller = keys.get(keyed)
    if caller is not None:
        metrics.API_KEY_CACHE_HIT.inc()
        return caller
    metrics.API_KEY_CACHE_MISS.inc()

    async def read() -> Caller:
        async with sessions() as session:
            return await authenticate(session, hasher, key=key)

    return await keys.read_once(keyed, read)


def require_scope(caller: Caller, scope: Scope, *, doing: str) -> None:
    if not caller.has(scope):
        if scope is Scope.admin:
            raise AdminRequired(f"{doing} needs an admin key.")
        raise ScopeRequired(f"{doing} needs the `{scope.value}` scope.", scope=scope.value)


def _scopes(scopes: Iterable[Scope], *, admin: bool) -> list[str]:
    chosen = {scope.value for scope in scopes} | ({Scope.admin.value} if admin else set())
    return [scope.value for scope in Scope if scope.value in chosen]


async def create(
    session: AsyncSession,
    hasher: KeyHasher,
    *,
    name: str,
    scopes: Iterable[Scope],
    admin: bool,
    advertiser_ids: Iterable[str],
    by: Caller,
) -> tuple[ApiKey, list[str], str]:
    """A new key, its grants, and its value, which is shown this once and stored only as a keyed hash."""
    value = KEY_PREFIX + secrets.token_urlsafe(32)
    api_key = ApiKey(
        id=uuid.uuid4(),
        name=name,
        key_hash=hasher.hash(value),
        hash_scheme=HashScheme.hmac.value,
        scopes=_scopes(scopes, admin=admin),
        created_by_api_key_id=by.api_key_id,
    )
    session.add(api_key)
    await session.flush()
    grants = sorted(set(advertiser_ids))
    await repository.grant(session, api_key.id, grants)
    log.info("api_key.created", api_key_id=str(api_key.id), scopes=api_key.scopes, advertisers=len(grants))
    return api_key, grants, value


async def update(
    session: AsyncSession,
    *,
    api_key_id: uuid.UUID,
    name: str | None,
    scopes: Iterable[Scope] | None,
    advertiser_ids: Iterable[str] | None,
) -> tuple[ApiKey, list[str]]:
    """Change a key's name, scopes or ad accounts (None: unchanged). Takes effect at the key's next request."""
    api_key = await repository.get(session, api_key_id, for_update=True)
    if api_key is None:
        raise ApiKeyNotFound(f"API key {api_key_id} does not exist.")
    if name is not None:
        api_key.name = name
    if scopes is not None:
        api_key.scopes = _scopes(scopes, admin=False)
    if advertiser_ids is not None:
        await repository.replace_grants(session, api_key.id, advertiser_ids)
    await session.flush()
    cache.changed(session, [api_key.id])
    log.info("api_key.updated", api_key_id=str(api_key.id), scopes=api_key.scopes)
    return api_key, (await repository.grants_of(session, [api_key.id])).get(api_key.id, [])


async def grant(session: AsyncSession, *, caller: Caller, tiktok_advertiser_id: str) -> None:
    """The key may touch this ad account from now on (it registered it); an admin key touches every one anyway."""
    if not caller.is_admin:
        await repository.grant(session, caller.api_key_id, [tiktok_advertiser_id])
        cache.changed(session, [caller.api_key_id])


async def list_page(session: AsyncSession, *, page: PageParams) -> tuple[list[tuple[ApiKey, list[str]]], str | None]:
    """A page of every key, revoked ones included, oldest first, with their grants."""
    rows = await repository.list_page(session, after=page.cursor, limit=page.limit)
    next_cursor = None
    if len(rows) > page.limit:
        rows = rows[: page.limit]
        next_cursor = page.next_cursor(rows[-1].created_at, rows[-1].id)
    grants = await repository.grants_of(session, [row.id for row in rows])
    return [(row, grants.get(row.id, [])) for row in rows], next_cursor


async def get(session: AsyncSession, *, api_key_id: uuid.UUID) -> tuple[ApiKey, list[str]]:
    api_key = await repository.get(session, api_key_id)
    if api_key is None:
        raise ApiKeyNotFound(f"API key {api_key_id} does not exist.")
    return api_key, (await repository.grants_of(session, [api_key.id])).get(api_key.id, [])


async def revoke(session: AsyncSession, *, api_key_id: uuid.UUID, by: Caller) -> tuple[ApiKey, list[str]]:
    """Revoke a key at once; revoking twice is harmless. A key cannot revoke itself (no accidental lock-out)."""
    if api_key_id == by.api_key_id:
        raise CannotRevokeOwnKey()
    api_key = await repository.get(session, api_key_id, for_update=True)
    if api_key is None:
        raise ApiKeyNotFound(f"API key {api_key_id} does not exist.")
    if api_key.revoked_at is None:
        api_key.revoked_at = datetime.now(UTC)
        await session.flush()
        cache.changed(session, [api_key.id])
        log.info("api_key.revoked", api_key_id=str(api_key.id), by=str(by.api_key_id))
    return api_key, (await repository.grants_of(session, [api_key.id])).get(api_key.id, [])
