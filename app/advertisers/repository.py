from __future__ import annotations

import uuid
from collections.abc import Collection

import asyncpg
from sqlalchemy import bindparam, func, select, tuple_, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.advertisers.models import Advertiser
from app.kit import actor
from app.kit.db import DriverStatement
from app.kit.pagination import Cursor


async def get_by_tiktok_id(
    session: AsyncSession, tiktok_advertiser_id: str, *, for_update: bool = False
) -> Advertiser | None:
    statement = select(Advertiser).where(Advertiser.tiktok_advertiser_id == tiktok_advertiser_id)
    if for_update:
        statement = statement.with_for_update()
    return (await session.execute(statement)).scalar_one_or_none()


_READ_BY_TIKTOK_ID = DriverStatement.of(
    select(Advertiser.id, Advertiser.tiktok_advertiser_id, Advertiser.spark_ads_limit, Advertiser.spark_ads_used).where(
        Advertiser.tiktok_advertiser_id == bindparam("tiktok_advertiser_id")
    )
)


async def read(connection: asyncpg.Connection, tiktok_advertiser_id: str) -> asyncpg.Record | None:
    """The ad account's id, TikTok id and Spark Ads counters, on a driver connection (the reads served without
    the ORM); None if unknown."""
    return await _READ_BY_TIKTOK_ID.fetchrow(connection, tiktok_advertiser_id=tiktok_advertiser_id)


async def list_page(
    session: AsyncSession, *, only: Collection[str] | None, after: Cursor | None, limit: int
) -> list[Advertiser]:
    """Oldest first, only the ad accounts in `only` (None: every one); one row more than `limit`, so the caller
    knows whether another page follows."""
    statement = select(Advertiser).order_by(Advertiser.created_at, Advertiser.id).limit(limit + 1)
    if only is not None:
        statement = statement.where(Advertiser.tiktok_advertiser_id.in_(list(only)))
    if after is not None:
        statement = statement.where(tuple_(Advertiser.created_at, Advertiser.id) > tuple_(after.created_at, after.id))
    return list((await session.execute(statement)).scalars().all())


async def replace_token(
    session: AsyncSession, *, tiktok_advertiser_id: str, access_token_encrypted: bytes
) -> Advertiser | None:
    """One statement, so the row is locked only for as long as the update takes."""
    statement = (
        update(Advertiser)
        .where(Advertiser.tiktok_advertiser_id == tiktok_advertiser_id)
        .values(
            access_token_encrypted=access_token_encrypted, updated_at=func.now(), updated_by_api_key_id=actor.current()
        )
        .returning(Advertiser)
    )
    return (await session.execute(statement)).scalar_one_or_none()


async def insert_new(
    session: AsyncSession,
    *,
    tiktok_advertiser_id: str,
    name: str | None,
    access_token_encrypted: bytes,
    spark_ads_limit: int,
) -> Advertiser | None:
    """Insert the ad account; None when it already exists (decided by the unique index, so races are safe)."""
    statement = (
        insert(Advertiser)
        .values(
            tiktok_advertiser_id=tiktok_advertiser_id,
            name=name,
            access_token_encrypted=access_token_encrypted,
            spark_ads_limit=spark_ads_limit,
            created_by_api_key_id=actor.current(),
            updated_by_api_key_id=actor.current(),
        )
        .on_conflict_do_nothing(index_elements=[Advertiser.tiktok_advertiser_id])
        .returning(Advertiser)
    )
    return (await session.execute(statement)).scalar_one_or_none()


async def take_spark_ad_slot(session: AsyncSession, advertiser_id: uuid.UUID) -> int | None:
    """Count one more Spark Ad for the ad account if its limit allows; the new count, or None when it is full.

    One conditional UPDATE: the row lock it takes makes concurrent links queue, and each sees the count the
    one before it left, so the limit holds exactly under any concurrency, on any number of replicas (D10).
    """
    statement = (
        update(Advertiser)
        .where(Advertiser.id == advertiser_id, Advertiser.spark_ads_used < Advertiser.spark_ads_limit)
        .values(spark_ads_used=Advertiser.spark_ads_used + 1)
        .returning(Advertiser.spark_ads_used)
    )
    return (await session.execute(statement)).scalar_one_or_none()


async def count_spark_ad_anyway(session: AsyncSession, advertiser_id: uuid.UUID) -> None:
    """One more Spark Ad whatever the limit: an ad made outside the service exists, and is counted (D10)."""
    statement = (
        update(Advertiser).where(Advertiser.id == advertiser_id).values(spark_ads_used=Advertiser.spark_ads_used + 1)
    )
    await session.execute(statement)


async def release_spark_ad_slot(session: AsyncSession, advertiser_id: uuid.UUID) -> None:
    statement = (
        update(Advertiser).where(Advertiser.id == advertiser_id).values(spark_ads_used=Advertiser.spark_ads_used - 1)
    )
    await session.execute(statement)


async def spark_ads_usage(session: AsyncSession, advertiser_id: uuid.UUID) -> tuple[int, int]:
    """(used, limit), as committed."""
    statement = select(Advertiser.spark_ads_used, Advertiser.spark_ads_limit).where(Advertiser.id == advertiser_id)
    used, limit = (await session.execute(statement)).one()
    return used, limit
