from __future__ import annotations

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.advertisers.models import Advertiser


async def get_by_tiktok_id(session: AsyncSession, tiktok_advertiser_id: str) -> Advertiser | None:
    statement = select(Advertiser).where(Advertiser.tiktok_advertiser_id == tiktok_advertiser_id)
    return (await session.execute(statement)).scalar_one_or_none()


async def replace_token(
    session: AsyncSession, *, tiktok_advertiser_id: str, access_token_encrypted: bytes
) -> Advertiser | None:
    """One statement, so the row is locked only for as long as the update takes."""
    statement = (
        update(Advertiser)
        .where(Advertiser.tiktok_advertiser_id == tiktok_advertiser_id)
        .values(access_token_encrypted=access_token_encrypted, updated_at=func.now())
        .returning(Advertiser)
    )
    return (await session.execute(statement)).scalar_one_or_none()


async def insert_new(
    session: AsyncSession, *, tiktok_advertiser_id: str, name: str | None, access_token_encrypted: bytes
) -> Advertiser | None:
    """Insert the ad account; None when it already exists (decided by the unique index, so races are safe)."""
    statement = (
        insert(Advertiser)
        .values(
            tiktok_advertiser_id=tiktok_advertiser_id,
            name=name,
            access_token_encrypted=access_token_encrypted,
        )
        .on_conflict_do_nothing(index_elements=[Advertiser.tiktok_advertiser_id])
        .returning(Advertiser)
    )
    return (await session.execute(statement)).scalar_one_or_none()
