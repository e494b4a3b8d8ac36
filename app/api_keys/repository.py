from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.api_keys.models import ApiKey


async def get_active_by_hash(session: AsyncSession, key_hash: bytes) -> ApiKey | None:
    statement = select(ApiKey).where(ApiKey.key_hash == key_hash, ApiKey.revoked_at.is_(None))
    return (await session.execute(statement)).scalar_one_or_none()


async def get_for_update(session: AsyncSession, api_key_id: uuid.UUID) -> ApiKey | None:
    statement = select(ApiKey).where(ApiKey.id == api_key_id).with_for_update()
    return (await session.execute(statement)).scalar_one_or_none()


async def list_all(session: AsyncSession) -> list[ApiKey]:
    statement = select(ApiKey).order_by(ApiKey.created_at, ApiKey.id)
    return list((await session.execute(statement)).scalars().all())


async def upsert_admin(session: AsyncSession, *, name: str, key_hash: bytes) -> None:
    """Insert the admin key, or make the existing one admin. A revoked key stays revoked.

    Every replica runs this at start-up; ON CONFLICT makes the race harmless.
    """
    statement = (
        insert(ApiKey)
        .values(name=name, key_hash=key_hash, is_admin=True)
        .on_conflict_do_update(index_elements=[ApiKey.key_hash], set_={"is_admin": True})
    )
    await session.execute(statement)
