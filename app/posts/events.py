"""`post.deletion_safe`: written when the last authorization that bound a post (or a Duet/Stitch made from it), in
any ad account, ends (D7). Only an un-authorization can end it (an ad's removal leaves its authorization), so the
flows that un-authorize call this in the same transaction, after their change."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from app.authorizations import repository as authorizations
from app.authorizations.models import AuthorizationState
from app.events import service as events
from app.events.models import EventType


async def record_if_deletion_became_safe(session: AsyncSession, item_ids: Iterable[str], *, now: datetime) -> None:
    """For each post: if nothing binds it any more, tell every ad account that had it.

    Two un-authorizations of one post in two ad accounts can commit at the same moment, each seeing the other's
    row still bound: a transaction lock per post makes the second wait for the first and then see it, so exactly
    one of them writes the event.
    """
    for item_id in sorted(set(item_ids)):
        await authorizations.lock_post_everywhere(session, item_id)
        rows = await authorizations.of_post(session, item_id)
        if any(row.state != AuthorizationState.unauthorized for row in rows):
            continue
        advertisers = {row.advertiser_id: row.advertiser for row in rows}
        for advertiser in advertisers.values():
            await events.record(
                session,
                EventType.post_deletion_safe,
                advertiser_id=advertiser.id,
                tiktok_advertiser_id=advertiser.tiktok_advertiser_id,
                now=now,
                item_id=item_id,
                data={"item_id": item_id, "safe": True, "checked_at": now.isoformat()},
            )
