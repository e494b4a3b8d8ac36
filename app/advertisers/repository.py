from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.advertisers.models import Advertiser


async def get_by_tiktok_id(
    session: AsyncSession, tiktok_advertiser_id: str, *, for_update: bool = False
) -> Advertiser | None:
    statement = select(Advertiser).where(Advertiser.tiktok_advertiser_id == tiktok_advertiser_id)
    if for_update:
        statement = statement.with_for_update()
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
