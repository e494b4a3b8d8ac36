from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import and_, bindparam, delete, func, or_, select, tuple_, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.api_keys.models import ApiKey, ApiKeyGrant, HashScheme, Scope
from app.kit.pagination import Cursor

_ADMIN_SCOPES = [Scope.read.value, Scope.write.value, Scope.admin.value]


async def get_active_by_hash(session: AsyncSession, key_hash: bytes, *, scheme: HashScheme) -> ApiKey | None:
    statement = select(ApiKey).where(
        ApiKey.key_hash == key_hash, ApiKey.hash_scheme == scheme.value, ApiKey.revoked_at.is_(None)
    )
    return (await session.execute(statement)).scalar_one_or_none()


@dataclass(frozen=True, slots=True)
class KeyAccess:
    """An active key as authentication needs it: who, which scopes, which ad accounts, and how it is hashed."""

    api_key_id: uuid.UUID
    scopes: list[str]
    hash_scheme: str
    advertiser_ids: list[str]


# Built once: building a statement costs more than running it, and authentication runs on every request.
_FIND_ACTIVE = select(
    ApiKey.id,
    ApiKey.scopes,
    ApiKey.hash_scheme,
    func.array(
        select(ApiKeyGrant.tiktok_advertiser_id)
        .where(ApiKeyGrant.api_key_id == ApiKey.id)
        .order_by(ApiKeyGrant.tiktok_advertiser_id)
        .scalar_subquery()
    ),
).where(
    or_(
        and_(ApiKey.key_hash == bindparam("hmac_hash"), ApiKey.hash_scheme == HashScheme.hmac.value),
        and_(ApiKey.key_hash == bindparam("sha256_hash"), ApiKey.hash_scheme == HashScheme.sha256.value),
    ),
    ApiKey.revoked_at.is_(None),
)


async def find_active(session: AsyncSession, *, hmac_hash: bytes, sha256_hash: bytes) -> KeyAccess | None:
    """The active key with either hash (keyed, or plain for a key made before keys were keyed) and its grants, in
    one statement: authentication is one round trip."""
    row = (await session.execute(_FIND_ACTIVE, {"hmac_hash": hmac_hash, "sha256_hash": sha256_hash})).first()
    if row is None:
        return None
    return KeyAccess(api_key_id=row[0], scopes=list(row[1]), hash_scheme=row[2], advertiser_ids=list(row[3]))


async def rehash(session: AsyncSession, api_key_id: uuid.UUID, *, key_hash: bytes) -> None:
    """A key made before keys were keyed, now hashed under the secret."""
    statement = (
        update(ApiKey)
        .where(ApiKey.id == api_key_id, ApiKey.hash_scheme == HashScheme.sha256.value)
        .values(key_hash=key_hash, hash_scheme=HashScheme.hmac.value)
    )
    await session.execute(statement)


async def get(session: AsyncSession, api_key_id: uuid.UUID, *, for_update: bool = False) -> ApiKey | None:
    statement = select(ApiKey).where(ApiKey.id == api_key_id)
    if for_update:
        statement = statement.with_for_update()
    return (await session.execute(statement)).scalar_one_or_none()


async def grants_of(session: AsyncSession, api_key_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, list[str]]:
    """The ad accounts each key may touch, by key (keys with none are left out)."""
    statement = (
        select(ApiKeyGrant.api_key_id, ApiKeyGrant.tiktok_advertiser_id)
        .where(ApiKeyGrant.api_key_id.in_(list(api_key_ids)))
        .order_by(ApiKeyGrant.api_key_id, ApiKeyGrant.tiktok_advertiser_id)
    )
    grants: dict[uuid.UUID, list[str]] = {}
    for api_key_id, tiktok_advertiser_id in (await session.execute(statement)).all():
        grants.setdefault(api_key_id, []).append(tiktok_advertiser_id)
    return grants


async def grant(session: AsyncSession, api_key_id: uuid.UUID, tiktok_advertiser_ids: Iterable[str]) -> None:
    rows = [{"api_key_id": api_key_id, "tiktok_advertiser_id": i} for i in set(tiktok_advertiser_ids)]
    if rows:
        await session.execute(insert(ApiKeyGrant).values(rows).on_conflict_do_nothing())


async def replace_grants(session: AsyncSession, api_key_id: uuid.UUID, tiktok_advertiser_ids: Iterable[str]) -> None:
    await session.execute(delete(ApiKeyGrant).where(ApiKeyGrant.api_key_id == api_key_id))
    await grant(session, api_key_id, tiktok_advertiser_ids)


async def list_page(session: AsyncSession, *, after: Cursor | None, limit: int) -> list[ApiKey]:
    """Oldest first; one row more than `limit`, so the caller knows whether another page follows."""
    statement = select(ApiKey).order_by(ApiKey.created_at, ApiKey.id).limit(limit + 1)
    if after is not None:
        statement = statement.where(tuple_(ApiKey.created_at, ApiKey.id) > tuple_(after.created_at, after.id))
    return list((await session.execute(statement)).scalars().all())


async def upsert_admin(session: AsyncSession, *, name: str, key_hash: bytes) -> None:
    """Insert the admin key, or make the existing one admin. A revoked key stays revoked.

    Every replica runs this at start-up; ON CONFLICT makes the race harmless.
    """
    statement = (
        insert(ApiKey)
        .values(name=name, key_hash=key_hash, hash_scheme=HashScheme.hmac.value, scopes=_ADMIN_SCOPES)
        .on_conflict_do_update(index_elements=[ApiKey.key_hash], set_={"scopes": _ADMIN_SCOPES})
    )
    await session.execute(statement)
