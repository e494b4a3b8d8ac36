from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

import asyncpg
from sqlalchemy import Table, and_, bindparam, delete, func, or_, select, text, update
from sqlalchemy.dialects.postgresql import aggregate_order_by
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased, joinedload

from app.ads.models import Ad, AdState
from app.advertisers.models import Advertiser
from app.authorizations.models import (
    ORIGINAL_READ_COLUMNS,
    READ_COLUMNS,
    Authorization,
    AuthorizationState,
    AuthorizationStatus,
)
from app.kit.db import DriverStatement
from app.kit.pagination import Cursor

# What every read needs: the ad account, and for a Duet/Stitch its original post's authorization (its creator and
# window are part of the pair's read). Both joined into the one statement: a separate load of the original would
# build a statement of its own on every read, and cost a second round trip for every pair.
LOADED = (
    joinedload(Authorization.advertiser, innerjoin=True),
    joinedload(Authorization.original_authorization).joinedload(Authorization.advertiser, innerjoin=True),
)
# States whose outcome on TikTok is not known until someone reads TikTok.
_UNSETTLED_STATES = (AuthorizationState.pending.value, AuthorizationState.unauthorizing.value)


# Built once (reads of one authorization are the hot path): building a statement costs more than running it.
_GET = select(Authorization).options(*LOADED).where(Authorization.id == bindparam("authorization_id"))


async def get(session: AsyncSession, authorization_id: uuid.UUID) -> Authorization | None:
    return (await session.execute(_GET, {"authorization_id": authorization_id})).scalar_one_or_none()


# The reads callers poll, on the driver's connection (app.kit.db.driver_connection): READ_COLUMNS, the ad account's
# TikTok id and the original's `original_*` columns (null when it has none), in one statement compiled once.
_original = aliased(Authorization, name="original")
_READ = (
    select(
        *(Authorization.__table__.c[name] for name in READ_COLUMNS),
        Advertiser.tiktok_advertiser_id,
        *(getattr(_original, name).label("original_" + name) for name in ORIGINAL_READ_COLUMNS),
    )
    .join(Advertiser, Advertiser.id == Authorization.advertiser_id)
    .outerjoin(_original, _original.id == Authorization.original_authorization_id)
)
_READ_ONE = DriverStatement.of(_READ.where(Authorization.id == bindparam("authorization_id")))


async def read_one(connection: asyncpg.Connection, authorization_id: uuid.UUID) -> asyncpg.Record | None:
    """The authorization as a read row (models.READ_COLUMNS); None when there is no such authorization."""
    return await _READ_ONE.fetchrow(connection, authorization_id=authorization_id)


def _read_page(*, by_status: bool, after: bool) -> DriverStatement:
    statement = (
        _READ.where(Authorization.advertiser_id == bindparam("advertiser_id"))
        .order_by(Authorization.created_at.desc(), Authorization.id.desc())
        .limit(bindparam("limit"))
    )
    if by_status:
        at: Any = bindparam("now", type_=Authorization.created_at.type)  # the rule takes a datetime or its parameter
        statement = statement.where(Authorization.status_at(at) == bindparam("status"))
    if after:
        created_at: Any = bindparam("after_created_at")
        row_id: Any = bindparam("after_id")
        statement = statement.where(
            or_(
                Authorization.created_at < created_at,
                and_(Authorization.created_at == created_at, Authorization.id < row_id),
            )
        )
    return DriverStatement.of(statement)


_READ_PAGE = {
    (by_status, after): _read_page(by_status=by_status, after=after)
    for by_status in (False, True)
    for after in (False, True)
}


async def read_page(
    connection: asyncpg.Connection,
    *,
    advertiser_id: uuid.UUID,
    now: datetime,
    status: AuthorizationStatus | None,
    after: Cursor | None,
    limit: int,
) -> list[asyncpg.Record]:
    """A page of the ad account's authorizations as read rows, newest first; one row more than `limit`, so the
    caller knows whether another page follows."""
    params: dict[str, Any] = {"advertiser_id": advertiser_id, "limit": limit + 1}
    if status is not None:
        params |= {"now": now, "status": status.value}
    if after is not None:
        params |= {"after_created_at": after.created_at, "after_id": after.id}
    return await _READ_PAGE[status is not None, after is not None].fetch(connection, **params)


async def get_for_update(session: AsyncSession, authorization_id: uuid.UUID) -> Authorization | None:
    """The authorization, its row locked until the transaction ends: what links, removals and un-authorizing
    decide under, so that each decision is still true at commit."""
    statement = (
        select(Authorization)
        .options(*LOADED)
        .where(Authorization.id == authorization_id)
        .with_for_update(of=Authorization)
        # What was read before the lock is stale: the row as it is once locked is what decisions are made on.
        .execution_options(populate_existing=True)
    )
    return (await session.execute(statement)).scalar_one_or_none()


async def lock_all(session: AsyncSession, ids: Iterable[uuid.UUID]) -> list[Authorization]:
    """Lock these authorizations' rows, in a fixed order (no two transactions can deadlock over them)."""
    statement = (
        select(Authorization)
        .options(*LOADED)
        .where(Authorization.id.in_(list(ids)))
        .order_by(Authorization.id)
        .with_for_update(of=Authorization)
        # Rows this session read before the lock are refreshed: decide on them as they are once locked.
        .execution_options(populate_existing=True)
    )
    return list((await session.execute(statement)).scalars().all())


async def live_pairs_made_from(session: AsyncSession, original_id: uuid.UUID) -> list[Authorization]:
    """The Duets/Stitches, still bound, that point at this original post's authorization."""
    statement = select(Authorization).where(
        Authorization.original_authorization_id == original_id, Authorization.state != AuthorizationState.unauthorized
    )
    return list((await session.execute(statement)).scalars().all())


async def find_by_code(
    session: AsyncSession, *, advertiser_id: uuid.UUID, fingerprints: Sequence[bytes]
) -> Authorization | None:
    """The authorization whose current code is this one (a live one before history), with its ad account and,
    for a pair, its original."""
    statement = (
        select(Authorization)
        .options(*LOADED)
        .where(
            Authorization.advertiser_id == advertiser_id,
            Authorization.auth_code_fingerprint.in_(fingerprints),
        )
        .order_by(Authorization.state == AuthorizationState.unauthorized, Authorization.created_at.desc())
    )
    return (await session.execute(statement)).scalars().first()


async def lock_posts(session: AsyncSession, *, advertiser_id: uuid.UUID, item_ids: Iterable[str]) -> None:
    """Serialise every decision about these posts in this ad account, until the transaction ends.

    An advisory lock, because the rows may not exist yet. Taken in a fixed order, so two requests locking the
    same posts cannot deadlock. Held only for a short transaction, never while TikTok answers.
    """
    for item_id in sorted(set(item_ids)):
        await session.execute(
            text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"),
            {"key": f"authorization:{advertiser_id}:{item_id}"},
        )


async def get_for_posts(
    session: AsyncSession, *, advertiser_id: uuid.UUID, item_ids: Iterable[str]
) -> dict[str, Authorization]:
    """The live (not un-authorized) authorization of each post, by post id."""
    statement = (
        select(Authorization)
        .options(*LOADED)
        .where(
            Authorization.advertiser_id == advertiser_id,
            Authorization.item_id.in_(set(item_ids)),
            Authorization.state != AuthorizationState.unauthorized,
        )
    )
    return {row.item_id: row for row in (await session.execute(statement)).scalars().all()}


async def of_post(session: AsyncSession, item_id: str) -> list[Authorization]:
    """Every authorization, in every ad account, of this post or of a Duet/Stitch made from it; history too."""
    statement = (
        select(Authorization)
        .options(*LOADED)
        .where(or_(Authorization.item_id == item_id, Authorization.original_item_id == item_id))
        .order_by(Authorization.created_at, Authorization.id)
    )
    return list((await session.execute(statement)).scalars().all())


# What the deletion verdict needs of every authorization of a post or of a Duet/Stitch made from it (D7).
# Each authorization's active ads, oldest first (NULL when it has none), read by the same statement: one snapshot.
_ACTIVE_AD_IDS = (
    select(func.array_agg(aggregate_order_by(Ad.ad_id, Ad.created_at, Ad.id)))
    .where(Ad.authorization_id == Authorization.id, Ad.state == AdState.active.value)
    .correlate(Authorization)
    .scalar_subquery()
)
_BINDINGS_OF_POST = DriverStatement.of(
    select(
        Authorization.id,
        Authorization.item_id,
        Authorization.origin_kind,
        Authorization.state,
        Authorization.revoked_at,
        Authorization.auth_end_at,
        Authorization.advertiser_id,
        Advertiser.tiktok_advertiser_id,
        Advertiser.ads_reconciled_at,
        _ACTIVE_AD_IDS.label("active_ad_ids"),
    )
    .join(Advertiser, Advertiser.id == Authorization.advertiser_id)
    .where(or_(Authorization.item_id == bindparam("item_id"), Authorization.original_item_id == bindparam("item_id")))
    .order_by(Authorization.created_at, Authorization.id)
)


async def read_bindings_of_post(connection: asyncpg.Connection, item_id: str) -> list[asyncpg.Record]:
    """`of_post` as the verdict reads it, on a driver connection: each authorization's id, post, origin, state
    and window, its ad account's ids and last reading of its ads, and its active ads' ids (`active_ad_ids`, None
    for none). One statement, so all of it as of one moment, with no transaction."""
    return await _BINDINGS_OF_POST.fetch(connection, item_id=item_id)


async def delete_pending(session: AsyncSession, ids: Iterable[uuid.UUID]) -> None:
    """Forget intents that TikTok never carried out. Only pending rows: an active one is never deleted here."""
    statement = delete(Authorization).where(
        Authorization.id.in_(list(ids)), Authorization.state == AuthorizationState.pending.value
    )
    await session.execute(statement)


async def list_unsettled(session: AsyncSession, *, now: datetime, limit: int) -> list[Authorization]:
    """Rows whose outcome on TikTok is unknown and that nobody is deciding about: pending and unclaimed, or
    claimed by a request that did not finish (its claim has run out). Oldest first."""
    statement = (
        select(Authorization)
        .options(*LOADED)
        .where(
            or_(Authorization.state.in_(_UNSETTLED_STATES), Authorization.claimed_until.is_not(None)),
            or_(Authorization.claimed_until.is_(None), Authorization.claimed_until <= now),
        )
        .order_by(Authorization.created_at, Authorization.id)
        .limit(limit)
    )
    return list((await session.execute(statement)).scalars().all())


async def refresh_pair_windows(session: AsyncSession, ids: Iterable[uuid.UUID]) -> set[uuid.UUID]:
    """Make the usable window of every live Duet/Stitch among or made from these authorizations the part both codes
    cover (D12): the later start and the earlier end. One statement; the ids of the rows it set, whose objects
    callers that show them refresh."""
    result = await session.execute(
        text(
            """
            UPDATE authorizations AS pair
            SET auth_start_at = greatest(pair.code_start_at, original.code_start_at),
                auth_end_at = least(pair.code_end_at, original.code_end_at)
            FROM authorizations AS original
            WHERE pair.original_authorization_id = original.id
              AND pair.state <> 'unauthorized'
              AND (pair.id = ANY(:ids) OR original.id = ANY(:ids))
            RETURNING pair.id
            """
        ),
        {"ids": list(ids)},
    )
    return {row[0] for row in result.all()}


# -- the worker's sweep (authorizations/lifecycle.py)


async def lock_ended(session: AsyncSession, *, now: datetime, limit: int) -> list[Authorization]:
    """Active authorizations whose window has ended by `now` and is not recorded as ended yet, locked; rows
    another sweep holds are skipped. The predicate of ix_authorizations_expiry, then its range: an index scan of
    what has ended, whatever the size of the table."""
    statement = (
        select(Authorization)
        .options(*LOADED)
        .where(
            Authorization.state == AuthorizationState.active.value,
            Authorization.expired_at.is_(None),
            Authorization.auth_end_at <= now,
        )
        .order_by(Authorization.auth_end_at)
        .limit(limit)
        .with_for_update(of=Authorization, skip_locked=True)
    )
    return list((await session.execute(statement)).unique().scalars().all())


async def record_expired(session: AsyncSession, ids: Sequence[uuid.UUID], *, now: datetime) -> None:
    """One statement for the batch (the ORM would send one UPDATE per row, to read back `updated_at`)."""
    if not ids:
        return
    await session.execute(
        update(Authorization)
        .where(Authorization.id.in_(list(ids)))
        .values(expired_at=now, updated_at=func.now())
        .execution_options(synchronize_session=False)
    )


async def lock_reminders_due(session: AsyncSession, *, now: datetime, limit: int) -> list[Authorization]:
    """Authorizations whose reminders are due to be looked at (ix_authorizations_reminders), locked; rows another
    sweep holds are skipped."""
    statement = (
        select(Authorization)
        .options(*LOADED)
        .where(Authorization.next_reminder_at <= now)
        .order_by(Authorization.next_reminder_at)
        .limit(limit)
        .with_for_update(of=Authorization, skip_locked=True)
    )
    return list((await session.execute(statement)).unique().scalars().all())


@dataclass(frozen=True, slots=True)
class ReminderSchedule:
    authorization_id: uuid.UUID
    next_reminder_at: datetime | None
    reminded_lead_seconds: int | None


async def set_reminder_schedules(session: AsyncSession, schedules: Sequence[ReminderSchedule]) -> None:
    """Bookkeeping, not a change a caller sees: `updated_at` stays. One executemany for the batch."""
    if not schedules:
        return
    table = cast(Table, Authorization.__table__)
    await session.execute(
        update(table)
        .where(table.c.id == bindparam("row_id"))
        .values(next_reminder_at=bindparam("next_at"), reminded_lead_seconds=bindparam("reminded")),
        [
            {"row_id": s.authorization_id, "next_at": s.next_reminder_at, "reminded": s.reminded_lead_seconds}
            for s in schedules
        ],
    )


async def lock_post_everywhere(session: AsyncSession, item_id: str) -> None:
    """A transaction lock on one post across every ad account: decisions about the post as a whole (whether
    anything still binds it) are taken one at a time."""
    await session.execute(select(func.pg_advisory_xact_lock(func.hashtextextended(f"post-deletion:{item_id}", 0))))
