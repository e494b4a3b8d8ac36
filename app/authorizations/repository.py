from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import ColumnElement, and_, or_, select, text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import joinedload

from app.authorizations.models import Authorization, AuthorizationStatus
from app.kit.pagination import Cursor


async def get(session: AsyncSession, authorization_id: uuid.UUID) -> Authorization | None:
    statement = (
        select(Authorization).options(joinedload(Authorization.advertiser)).where(Authorization.id == authorization_id)
    )
    return (await session.execute(statement)).scalar_one_or_none()


async def find_by_code(
    session: AsyncSession, *, advertiser_id: uuid.UUID, fingerprints: Sequence[bytes]
) -> Authorization | None:
    statement = (
        select(Authorization)
        .options(joinedload(Authorization.advertiser))
        .where(
            Authorization.advertiser_id == advertiser_id,
            Authorization.auth_code_fingerprint.in_(fingerprints),
        )
    )
    return (await session.execute(statement)).scalars().first()


async def get_for_post(session: AsyncSession, *, advertiser_id: uuid.UUID, item_id: str) -> Authorization | None:
    statement = (
        select(Authorization)
        .options(joinedload(Authorization.advertiser))
        .where(Authorization.advertiser_id == advertiser_id, Authorization.item_id == item_id)
    )
    return (await session.execute(statement)).scalar_one_or_none()


async def lock_post(session: AsyncSession, *, advertiser_id: uuid.UUID, item_id: str) -> None:
    """Serialise everything that decides about one post in one ad account, until the transaction ends.

    An advisory lock, because the row may not exist yet: two requests applying codes for the same post must not
    both call TikTok and both insert.
    """
    await session.execute(
        text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"),
        {"key": f"authorization:{advertiser_id}:{item_id}"},
    )


def _status_is(status: AuthorizationStatus, now: datetime) -> ColumnElement[bool]:
    ended = and_(Authorization.auth_end_at.is_not(None), Authorization.auth_end_at <= now)
    if status is AuthorizationStatus.expired:
        return ended
    return and_(Authorization.state == status.value, ~ended)


async def list_page(
    session: AsyncSession,
    *,
    advertiser_id: uuid.UUID,
    now: datetime,
    status: AuthorizationStatus | None,
    after: Cursor | None,
    limit: int,
) -> list[Authorization]:
    """Newest first; one row more than `limit`, so the caller knows whether another page follows."""
    statement = (
        select(Authorization)
        .options(joinedload(Authorization.advertiser))
        .where(Authorization.advertiser_id == advertiser_id)
        .order_by(Authorization.created_at.desc(), Authorization.id.desc())
        .limit(limit + 1)
    )
    if status is not None:
        statement = statement.where(_status_is(status, now))
    if after is not None:
        statement = statement.where(
            or_(
                Authorization.created_at < after.created_at,
                and_(Authorization.created_at == after.created_at, Authorization.id < after.id),
            )
        )
    return list((await session.execute(statement)).scalars().all())
