"""The events an authorization's changes write (app/events): each in the transaction of the change."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.advertisers.models import Advertiser
from app.authorizations.models import Authorization
from app.authorizations.schemas import AuthorizationRead
from app.events import service as events
from app.events.models import EventType
from app.kit.crypto import secret_hint


async def authorization_changed(
    session: AsyncSession, event_type: EventType, authorization: Authorization, *, now: datetime, **details: Any
) -> None:
    """Record `event_type` for `authorization`, with the authorization as it is now (its advertiser and original
    authorization loaded, as every repository read loads them) and `details` (JSON values)."""
    await events.record_many(session, [authorization_event(event_type, authorization, now=now, **details)])


async def authorizations_changed(
    session: AsyncSession, event_type: EventType, authorizations: Iterable[Authorization], *, now: datetime
) -> None:
    """The same event for each of `authorizations`, in one round trip."""
    await events.record_many(session, [authorization_event(event_type, row, now=now) for row in authorizations])


def authorization_event(
    event_type: EventType, authorization: Authorization, *, now: datetime, **details: Any
) -> events.NewEvent:
    resource = AuthorizationRead.from_model(authorization, now).model_dump(mode="json")
    return events.NewEvent(
        event_type,
        advertiser_id=authorization.advertiser_id,
        tiktok_advertiser_id=authorization.advertiser.tiktok_advertiser_id,
        now=now,
        item_id=authorization.item_id,
        authorization_id=authorization.id,
        data={"authorization": resource, **details},
    )


async def code_rejected(
    session: AsyncSession,
    advertiser: Advertiser,
    *,
    code: str,
    reason: str,
    detail: str,
    item_id: str | None,
    now: datetime,
) -> None:
    """A code refused for this ad account (by TikTok or by the service's rules): no row changes, but the refusal is
    news to a creator portal waiting for the code. Only the code's hint is recorded, never the code."""
    await events.record(
        session,
        EventType.authorization_rejected,
        advertiser_id=advertiser.id,
        tiktok_advertiser_id=advertiser.tiktok_advertiser_id,
        now=now,
        item_id=item_id,
        data={"reason": reason, "detail": detail, "code_hint": secret_hint(code), "item_id": item_id},
    )
