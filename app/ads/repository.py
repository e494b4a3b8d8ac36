from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

import asyncpg
from sqlalchemy import and_, bindparam, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.ads.models import Ad, AdSource, AdState, IdentityUsage
from app.authorizations.models import Authorization, AuthorizationState
from app.kit import actor
from app.kit.db import DriverStatement
from app.kit.pagination import Cursor


async def get_by_ad_id(session: AsyncSession, ad_id: str, *, for_update: bool = False) -> Ad | None:
    statement = select(Ad).where(Ad.ad_id == ad_id)
    if for_update:
        statement = statement.with_for_update()
    return (await session.execute(statement)).scalar_one_or_none()


async def insert_new(
    session: AsyncSession,
    *,
    ad_id: str,
    authorization_id: uuid.UUID,
    advertiser_id: uuid.UUID,
    campaign_type: str,
    only_show_as_ad: bool,
    ends_at: datetime | None,
    source: AdSource = AdSource.caller,
) -> Ad | None:
    """Insert the link; None when the ad id is taken (decided by the unique index, so races are safe)."""
    statement = (
        insert(Ad)
        .values(
            id=uuid.uuid4(),
            ad_id=ad_id,
            authorization_id=authorization_id,
            advertiser_id=advertiser_id,
            campaign_type=campaign_type,
            only_show_as_ad=only_show_as_ad,
            ends_at=ends_at,
            state=AdState.active.value,
            source=source.value,
            created_by_api_key_id=actor.current(),
            updated_by_api_key_id=actor.current(),
        )
        .on_conflict_do_nothing(index_elements=[Ad.ad_id])
        .returning(Ad)
    )
    return (await session.execute(statement)).scalar_one_or_none()


async def take_identity_slot(session: AsyncSession, *, identity_type: str, identity_id: str, limit: int) -> int | None:
    """Count one more ad for the identity if it has room; the new count, or None when it is at `limit`.

    One statement, which locks the identity's row: concurrent links cannot both take the last slot.
    """
    statement = (
        insert(IdentityUsage)
        .values(identity_type=identity_type, identity_id=identity_id, ads_used=1)
        .on_conflict_do_update(
            index_elements=[IdentityUsage.identity_type, IdentityUsage.identity_id],
            set_={"ads_used": IdentityUsage.ads_used + 1},
            where=IdentityUsage.ads_used < limit,
        )
        .returning(IdentityUsage.ads_used)
    )
    return (await session.execute(statement)).scalar_one_or_none()


async def count_identity_ad_anyway(session: AsyncSession, *, identity_type: str, identity_id: str) -> None:
    """One more ad for the identity whatever its limit: an ad that exists on TikTok is counted."""
    statement = (
        insert(IdentityUsage)
        .values(identity_type=identity_type, identity_id=identity_id, ads_used=1)
        .on_conflict_do_update(
            index_elements=[IdentityUsage.identity_type, IdentityUsage.identity_id],
            set_={"ads_used": IdentityUsage.ads_used + 1},
        )
    )
    await session.execute(statement)


async def release_identity_slot(session: AsyncSession, *, identity_type: str, identity_id: str) -> None:
    statement = (
        update(IdentityUsage)
        .where(IdentityUsage.identity_type == identity_type, IdentityUsage.identity_id == identity_id)
        .values(ads_used=IdentityUsage.ads_used - 1)
    )
    await session.execute(statement)


# The ad account's identities: those of its live authorizations (not un-authorized), with an identity id.
_IDENTITIES = (
    select(Authorization.identity_type, Authorization.identity_id)
    .where(
        Authorization.advertiser_id == bindparam("advertiser_id"),
        Authorization.identity_id.is_not(None),
        Authorization.state != AuthorizationState.unauthorized.value,
    )
    .distinct()
    .subquery()
)
# Built once, and one round trip: the quota is polled before every ad is made.
_IDENTITY_USAGE_OF_ADVERTISER = (
    select(_IDENTITIES.c.identity_type, _IDENTITIES.c.identity_id, func.coalesce(IdentityUsage.ads_used, 0))
    .select_from(
        _IDENTITIES.outerjoin(
            IdentityUsage,
            and_(
                IdentityUsage.identity_type == _IDENTITIES.c.identity_type,
                IdentityUsage.identity_id == _IDENTITIES.c.identity_id,
            ),
        )
    )
    .order_by(_IDENTITIES.c.identity_type, _IDENTITIES.c.identity_id)
)


_READ_IDENTITY_USAGE_OF_ADVERTISER = DriverStatement.of(_IDENTITY_USAGE_OF_ADVERTISER)


async def identity_usage_of(connection: asyncpg.Connection, advertiser_id: uuid.UUID) -> list[tuple[str, str, int]]:
    """The identities (type, id) of the ad account's live authorizations, each with the ads using it anywhere; on
    a driver connection (the quota is polled before every ad is made)."""
    rows = await _READ_IDENTITY_USAGE_OF_ADVERTISER.fetch(connection, advertiser_id=advertiser_id)
    return [(identity_type, identity_id, used) for identity_type, identity_id, used in rows]


async def identity_usage(session: AsyncSession, identities: Sequence[tuple[str, str]]) -> dict[tuple[str, str], int]:
    if not identities:
        return {}
    statement = select(IdentityUsage).where(
        or_(*(and_(IdentityUsage.identity_type == t, IdentityUsage.identity_id == i) for t, i in identities))
    )
    rows = (await session.execute(statement)).scalars().all()
    return {(row.identity_type, row.identity_id): row.ads_used for row in rows}


async def list_active(session: AsyncSession, authorization_ids: Sequence[uuid.UUID]) -> list[Ad]:
    if not authorization_ids:
        return []
    statement = (
        select(Ad)
        .where(Ad.authorization_id.in_(authorization_ids), Ad.state == AdState.active.value)
        .order_by(Ad.created_at, Ad.id)
    )
    return list((await session.execute(statement)).scalars().all())


# The ads of every authorization of a post or of a Duet/Stitch made from it: what the deletion verdict counts.
async def list_for_authorizations(session: AsyncSession, authorization_ids: Sequence[uuid.UUID]) -> list[Ad]:
    """Every ad, active or removed, of these authorizations, oldest first."""
    if not authorization_ids:
        return []
    statement = select(Ad).where(Ad.authorization_id.in_(authorization_ids)).order_by(Ad.created_at, Ad.id)
    return list((await session.execute(statement)).scalars().all())


async def list_page(
    session: AsyncSession, *, authorization_id: uuid.UUID, include_removed: bool, after: Cursor | None, limit: int
) -> list[Ad]:
    """Newest first; one row more than `limit`, so the caller knows whether another page follows."""
    statement = (
        select(Ad)
        .where(Ad.authorization_id == authorization_id)
        .order_by(Ad.created_at.desc(), Ad.id.desc())
        .limit(limit + 1)
    )
    if not include_removed:
        statement = statement.where(Ad.state == AdState.active.value)
    if after is not None:
        statement = statement.where(
            or_(Ad.created_at < after.created_at, and_(Ad.created_at == after.created_at, Ad.id < after.id))
        )
    return list((await session.execute(statement)).scalars().all())
