from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.api_keys.models import ApiKey


async def get_active_by_hash(session: AsyncSession, key_hash: bytes) -> ApiKey | None:
    statement = select(ApiKey).where(ApiKey.key_hash == key_hash, ApiKey.revoked_at.is_(None))
    return (await session.execute(statement)).scalar_one_or_none()


async def insert_if_absent(session: AsyncSession, *, name: str, key_hash: bytes) -> None:
    # Every replica runs this at start-up; ON CONFLICT makes the race harmless.
    statement = (
        insert(ApiKey).values(name=name, key_hash=key_hash).on_conflict_do_nothing(index_elements=[ApiKey.key_hash])
    )
    await session.execute(statement)
