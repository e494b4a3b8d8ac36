"""The queries of webhook subscriptions and their deliveries."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, select, tuple_, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.api_keys.models import ApiKey, Scope
from app.events.models import Event
from app.events.service import FeedPosition
from app.kit.pagination import Cursor
from app.webhooks.models import DeliveryState, WebhookDelivery, WebhookSubscription

_PENDING = DeliveryState.pending.value
# The scopes that let a key read events: a subscription whose key has neither is paused.
READING_SCOPES = [Scope.read.value, Scope.admin.value]


# --- subscriptions --------------------------------------------------------------------------------------------


async def insert_subscription(
    session: AsyncSession,
    *,
    api_key_id: uuid.UUID,
    url: str,
    event_types: Sequence[str],
    secret_encrypted: bytes,
    cursor: FeedPosition,
) -> WebhookSubscription:
    subscription = WebhookSubscription(
        id=uuid.uuid4(),
        api_key_id=api_key_id,
        url=url,
        event_types=list(event_types),
        secret_encrypted=secret_encrypted,
        cursor_tx_id=cursor.tx_id,
        cursor_seq=cursor.seq,
    )
    session.add(subscription)
    await session.flush()
    return subscription


async def get_subscription(
    session: AsyncSession, subscription_id: uuid.UUID, *, for_update: bool = False
) -> WebhookSubscription | None:
    statement = select(WebhookSubscription).where(WebhookSubscription.id == subscription_id)
    if for_update:
        statement = statement.with_for_update()
    return (await session.execute(statement)).scalar_one_or_none()


async def list_subscriptions(
    session: AsyncSession, *, api_key_id: uuid.UUID | None, after: Cursor | None, limit: int
) -> list[WebhookSubscription]:
    """Oldest first, only `api_key_id`'s (None: every key's); one row more than `limit`, so the caller knows
    whether another page follows."""
    statement = (
        select(WebhookSubscription).order_by(WebhookSubscription.created_at, WebhookSubscription.id).limit(limit + 1)
    )
    if api_key_id is not None:
        statement = statement.where(WebhookSubscription.api_key_id == api_key_id)
    if after is not None:
        statement = statement.where(
            tuple_(WebhookSubscription.created_at, WebhookSubscription.id) > tuple_(after.created_at, after.id)
        )
    return list((await session.execute(statement)).scalars().all())


async def delete_subscription(session: AsyncSession, subscription_id: uuid.UUID) -> None:
    """Its deliveries go with it (ON DELETE CASCADE)."""
    await session.execute(delete(WebhookSubscription).where(WebhookSubscription.id == subscription_id))


async def move_cursor(
    session: AsyncSession, subscription_id: uuid.UUID, *, expected: FeedPosition, to: FeedPosition
) -> bool:
    """Move the subscription's cursor from `expected` to `to`, if it is still at `expected`; whether it moved.

    The UPDATE locks the row until the transaction ends: of two runs handing out the same events, the second
    waits, then finds the cursor moved and hands out nothing. `updated_at` is left alone: the cursor is the
    worker's business, not a change of the subscription."""
    statement = (
        update(WebhookSubscription)
        .where(
            WebhookSubscription.id == subscription_id,
            WebhookSubscription.cursor_tx_id == expected.tx_id,
            WebhookSubscription.cursor_seq == expected.seq,
        )
        .values(cursor_tx_id=to.tx_id, cursor_seq=to.seq, updated_at=WebhookSubscription.updated_at)
    )
    result = await session.execute(statement)
    return bool(getattr(result, "rowcount", 0) == 1)


async def subscriptions_with_work(
    session: AsyncSession, *, head: FeedPosition, now: datetime, limit: int
) -> list[uuid.UUID]:
    """Subscriptions of keys that may read events now (not revoked, `read` or `admin`) that have something to do:
    a cursor behind the feed's head, or a pending delivery due by `now` (read off the partial index
    ix_webhook_deliveries_due). The cursor of a subscription with nothing to receive is moved to the head when it
    is handed out, so an idle subscription stops showing up here until new events arrive."""
    due = (
        select(WebhookDelivery.subscription_id)
        .where(WebhookDelivery.state == _PENDING, WebhookDelivery.next_attempt_at <= now)
        .distinct()
    )
    behind = tuple_(WebhookSubscription.cursor_tx_id, WebhookSubscription.cursor_seq) < tuple_(head.tx_id, head.seq)
    statement = (
        select(WebhookSubscription.id)
        .join(ApiKey, ApiKey.id == WebhookSubscription.api_key_id)
        .where(
            ApiKey.revoked_at.is_(None),
            ApiKey.scopes.overlap(READING_SCOPES),
            behind | WebhookSubscription.id.in_(due),
        )
        .order_by(WebhookSubscription.id)
        .limit(limit)
    )
    return list((await session.execute(statement)).scalars().all())


# --- deliveries -----------------------------------------------------------------------------------------------


async def insert_deliveries(
    session: AsyncSession, *, subscription_id: uuid.UUID, events: Sequence[Event], now: datetime
) -> None:
    """One pending delivery per event, due now; an event already handed to the subscription is left as it is."""
    if not events:
        return
    rows = [
        {
            "id": uuid.uuid4(),
            "subscription_id": subscription_id,
            "event_id": event.id,
            "tx_id": event.tx_id,
            "seq": event.seq,
            "state": _PENDING,
            "attempts": 0,
            "next_attempt_at": now,
            "created_at": now,
        }
        for event in events
    ]
    statement = (
        insert(WebhookDelivery).values(rows).on_conflict_do_nothing(index_elements=["subscription_id", "event_id"])
    )
    await session.execute(statement)


async def oldest_pending(session: AsyncSession, subscription_id: uuid.UUID) -> tuple[WebhookDelivery, Event] | None:
    """The subscription's next delivery in the events' order, with its event: every later one waits behind it."""
    statement = (
        select(WebhookDelivery, Event)
        .join(Event, Event.id == WebhookDelivery.event_id)
        .where(WebhookDelivery.subscription_id == subscription_id, WebhookDelivery.state == _PENDING)
        .order_by(WebhookDelivery.tx_id, WebhookDelivery.seq)
        .limit(1)
    )
    row = (await session.execute(statement)).one_or_none()
    return None if row is None else (row[0], row[1])


async def claim(session: AsyncSession, delivery: WebhookDelivery, *, now: datetime, until: datetime) -> bool:
    """Take the delivery for one attempt, if it is still pending, due, and as it was read: its `next_attempt_at`
    becomes `until` (the attempt's lease), so no other run sends it meanwhile, and a run that dies leaves it due
    again once the lease ends. Whether it was taken."""
    statement = (
        update(WebhookDelivery)
        .where(
            WebhookDelivery.id == delivery.id,
            WebhookDelivery.state == _PENDING,
            WebhookDelivery.attempts == delivery.attempts,
            WebhookDelivery.next_attempt_at == delivery.next_attempt_at,
            WebhookDelivery.next_attempt_at <= now,
        )
        .values(next_attempt_at=until)
    )
    result = await session.execute(statement)
    return bool(getattr(result, "rowcount", 0) == 1)


async def record_attempt(
    session: AsyncSession,
    delivery_id: uuid.UUID,
    *,
    attempts_before: int,
    lease: datetime,
    state: DeliveryState,
    attempted_at: datetime,
    status_code: int | None,
    error: str | None,
    next_attempt_at: datetime,
    delivered_at: datetime | None,
) -> bool:
    """The outcome of the attempt this run claimed (the delivery still holds its lease); whether it was recorded."""
    statement = (
        update(WebhookDelivery)
        .where(
            WebhookDelivery.id == delivery_id,
            WebhookDelivery.state == _PENDING,
            WebhookDelivery.attempts == attempts_before,
            WebhookDelivery.next_attempt_at == lease,
        )
        .values(
            state=state.value,
            attempts=attempts_before + 1,
            last_attempt_at=attempted_at,
            last_status_code=status_code,
            last_error=error,
            next_attempt_at=next_attempt_at,
            delivered_at=delivered_at,
        )
    )
    result = await session.execute(statement)
    return bool(getattr(result, "rowcount", 0) == 1)


@dataclass(frozen=True, slots=True)
class DeliveryRow:
    delivery: WebhookDelivery
    event_type: str


async def list_deliveries(
    session: AsyncSession,
    *,
    subscription_id: uuid.UUID,
    state: DeliveryState | None,
    before: FeedPosition | None,
    limit: int,
) -> list[DeliveryRow]:
    """Newest first (the events' order, backwards); one row more than `limit`."""
    statement = (
        select(WebhookDelivery, Event.type)
        .join(Event, Event.id == WebhookDelivery.event_id)
        .where(WebhookDelivery.subscription_id == subscription_id)
        .order_by(WebhookDelivery.tx_id.desc(), WebhookDelivery.seq.desc())
        .limit(limit + 1)
    )
    if state is not None:
        statement = statement.where(WebhookDelivery.state == state.value)
    if before is not None:
        statement = statement.where(
            tuple_(WebhookDelivery.tx_id, WebhookDelivery.seq) < tuple_(before.tx_id, before.seq)
        )
    return [DeliveryRow(delivery, event_type) for delivery, event_type in (await session.execute(statement)).all()]


async def delivery_position(
    session: AsyncSession, *, subscription_id: uuid.UUID, delivery_id: uuid.UUID
) -> FeedPosition | None:
    """Where a delivery of this subscription stands in the events' order (a page's cursor names its last one)."""
    statement = select(WebhookDelivery.tx_id, WebhookDelivery.seq).where(
        WebhookDelivery.id == delivery_id, WebhookDelivery.subscription_id == subscription_id
    )
    row = (await session.execute(statement)).one_or_none()
    return None if row is None else FeedPosition(row.tx_id, row.seq)
