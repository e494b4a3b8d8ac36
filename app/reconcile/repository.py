"""The queries reconciliation needs beyond the authorizations' and ads' own repositories."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import exists, func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from app.ads.models import Ad
from app.advertisers.models import Advertiser
from app.authorizations.models import Authorization, AuthorizationState, IdentityType


async def db_clock(session: AsyncSession) -> datetime:
    """The database's clock now: what `updated_at` and `created_at` are written with."""
    moment: datetime = (await session.execute(select(func.clock_timestamp()))).scalar_one()
    return moment


async def live_creator_authorization_ids(session: AsyncSession, advertiser_id: uuid.UUID) -> list[uuid.UUID]:
    """The ad account's active authorizations of creators' posts (those `tt_video/list` shows)."""
    statement = (
        select(Authorization.id)
        .where(
            Authorization.advertiser_id == advertiser_id,
            Authorization.state == AuthorizationState.active.value,
            Authorization.identity_type == IdentityType.auth_code.value,
        )
        .order_by(Authorization.id)
    )
    return list((await session.execute(statement)).scalars().all())


async def record_posts_read(session: AsyncSession, advertiser_id: uuid.UUID, *, now: datetime) -> None:
    await session.execute(
        text("UPDATE advertisers SET posts_reconciled_at = :now WHERE id = :id"), {"now": now, "id": advertiser_id}
    )


async def tracks_new_posts(session: AsyncSession, advertiser: Advertiser) -> bool:
    """Whether an authorization came to the ad account after its ads were last read."""
    if advertiser.ads_reconciled_at is None:
        return True
    statement = select(
        exists().where(
            Authorization.advertiser_id == advertiser.id, Authorization.created_at > advertiser.ads_reconciled_at
        )
    )
    return bool((await session.execute(statement)).scalar())


async def known_ads(session: AsyncSession, ad_ids: Iterable[str]) -> dict[str, Ad]:
    """The links the service has of these ad ids, active or removed, in any ad account."""
    ids = list(set(ad_ids))
    if not ids:
        return {}
    rows = (await session.execute(select(Ad).where(Ad.ad_id.in_(ids)))).scalars().all()
    return {row.ad_id: row for row in rows}


async def live_by_post(
    session: AsyncSession, advertiser_id: uuid.UUID, item_ids: Iterable[str | None]
) -> dict[str, uuid.UUID]:
    """The active authorization of each of these posts in the ad account, by post id."""
    ids = [item_id for item_id in set(item_ids) if item_id]
    if not ids:
        return {}
    statement = select(Authorization.item_id, Authorization.id).where(
        Authorization.advertiser_id == advertiser_id,
        Authorization.item_id.in_(ids),
        Authorization.state == AuthorizationState.active.value,
    )
    return {item_id: authorization_id for item_id, authorization_id in (await session.execute(statement)).all()}


async def record_pass(session: AsyncSession, advertiser_id: uuid.UUID, *, error: str | None, due: datetime) -> None:
    """How the pass went (its failure, short; None when it went through) and when the next one is due."""
    await session.execute(
        text("UPDATE advertisers SET reconcile_error = :error, reconcile_due_at = :due WHERE id = :id"),
        {"error": error, "due": due, "id": advertiser_id},
    )


async def pick_due(session: AsyncSession, *, now: datetime, hold_until: datetime, limit: int) -> list[uuid.UUID]:
    """The ad accounts due by `now`, oldest due first, at most `limit`, each pushed to `hold_until` in the same
    statement (rows taken `FOR UPDATE SKIP LOCKED`), so that two ticks at once never pick one twice.

    The pick is a MATERIALIZED CTE, run once. As `WHERE id IN (SELECT ... LIMIT ... FOR UPDATE SKIP LOCKED)`
    Postgres may plan the subquery as the inner side of a nested loop and run it again for every row: each run
    skips the rows this very statement has just updated and locks the next, so the LIMIT bounds nothing (on a small
    analysed table under a generic plan it picked all three rows where one was asked for)."""
    rows = await session.execute(
        text(
            """
            WITH picked AS MATERIALIZED (
                SELECT id FROM advertisers
                WHERE reconcile_due_at <= :now
                ORDER BY reconcile_due_at
                LIMIT :batch
                FOR UPDATE SKIP LOCKED
            )
            UPDATE advertisers SET reconcile_due_at = :hold_until
            FROM picked
            WHERE advertisers.id = picked.id AND advertisers.reconcile_due_at <= :now
            RETURNING advertisers.id
            """
        ),
        {"now": now, "hold_until": hold_until, "batch": limit},
    )
    return [row[0] for row in rows.all()]
