"""Writing events (the outbox) and reading the feed.

`record` is called by whatever changes state, in the same transaction as the change: the event commits with the
change or not at all. Readers page through events in `(tx_id, seq)` order, and only see events of transactions
older than every transaction still running (`pg_snapshot_xmin`): an event can commit after a later one (its
transaction began first and ended last), and the horizon keeps it from landing behind a cursor already handed out.
A long transaction therefore holds the feed back until it ends; the service keeps its transactions short.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence
from dataclasses import KW_ONLY, dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, text, tuple_
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.events.models import Event, EventType
from app.kit.crypto import SecretBox, SignatureInvalid
from app.kit.errors import CursorInvalid

__all__ = ["START", "FeedPosition", "NewEvent", "head", "read_feed", "record", "record_many"]

_PURPOSE = "event-cursor"
# Every transaction id below this has ended: what a reader may see in this statement's snapshot.
_HORIZON = text("pg_snapshot_xmin(pg_current_snapshot())::text::bigint")


async def record(
    session: AsyncSession,
    event_type: EventType,
    *,
    advertiser_id: uuid.UUID,
    tiktok_advertiser_id: str,
    now: datetime,
    data: dict[str, Any],
    item_id: str | None = None,
    authorization_id: uuid.UUID | None = None,
    ad_id: str | None = None,
) -> uuid.UUID:
    """Write one event in the session's transaction; its id. `data` must already be JSON (dates as strings)."""
    (event_id,) = await record_many(
        session,
        [
            NewEvent(
                event_type,
                advertiser_id=advertiser_id,
                tiktok_advertiser_id=tiktok_advertiser_id,
                now=now,
                data=data,
                item_id=item_id,
                authorization_id=authorization_id,
                ad_id=ad_id,
            )
        ],
    )
    return event_id


@dataclass(frozen=True, slots=True)
class NewEvent:
    """An event to write: its type, then the rest by name."""

    event_type: EventType
    _: KW_ONLY
    advertiser_id: uuid.UUID
    tiktok_advertiser_id: str
    now: datetime
    data: dict[str, Any]
    item_id: str | None = None
    authorization_id: uuid.UUID | None = None
    ad_id: str | None = None


async def record_many(session: AsyncSession, new_events: Sequence[NewEvent]) -> list[uuid.UUID]:
    """Write these events, in this order, in one round trip; their ids."""
    if not new_events:
        return []
    ids = [uuid.uuid4() for _ in new_events]
    rows = [
        {
            "id": event_id,
            "type": event.event_type.value,
            "occurred_at": event.now,
            "advertiser_id": event.advertiser_id,
            "tiktok_advertiser_id": event.tiktok_advertiser_id,
            "item_id": event.item_id,
            "authorization_id": event.authorization_id,
            "ad_id": event.ad_id,
            "data": event.data,
        }
        for event_id, event in zip(ids, new_events, strict=True)
    ]
    await session.execute(insert(Event), rows)
    return ids


@dataclass(frozen=True, slots=True, order=True)
class FeedPosition:
    """A place in the feed: after the event `(tx_id, seq)`. (0, 0) is before every event."""

    tx_id: int
    seq: int

    def encode(self, box: SecretBox) -> str:
        return box.sign([self.tx_id, self.seq], purpose=_PURPOSE)

    @classmethod
    def decode(cls, box: SecretBox, value: str) -> FeedPosition:
        try:
            payload = box.unsign(value, purpose=_PURPOSE)
        except SignatureInvalid as exc:
            raise CursorInvalid() from exc
        match payload:
            case [int(tx_id), int(seq)] if tx_id >= 0 and seq >= 0:
                return cls(tx_id, seq)
            case _:
                raise CursorInvalid()


START = FeedPosition(0, 0)


async def head(session: AsyncSession) -> FeedPosition:
    """The position after the last event a reader can see now: where a new subscriber starts."""
    statement = (
        select(Event.tx_id, Event.seq)
        .where(Event.tx_id < _HORIZON)
        .order_by(Event.tx_id.desc(), Event.seq.desc())
        .limit(1)
    )
    row = (await session.execute(statement)).one_or_none()
    return START if row is None else FeedPosition(row.tx_id, row.seq)


async def read_feed(
    session: AsyncSession,
    *,
    after: FeedPosition,
    limit: int,
    tiktok_advertiser_ids: Collection[str] | None = None,
    item_id: str | None = None,
    authorization_id: uuid.UUID | None = None,
    types: Collection[str] = (),
) -> list[Event]:
    """Up to `limit` events after `after`, in order, of transactions that have all ended.

    `tiktok_advertiser_ids`: only these ad accounts' events (None: every ad account's).
    """
    statement = (
        select(Event)
        .where(tuple_(Event.tx_id, Event.seq) > tuple_(after.tx_id, after.seq), Event.tx_id < _HORIZON)
        .order_by(Event.tx_id, Event.seq)
        .limit(limit)
    )
    if tiktok_advertiser_ids is not None:
        statement = statement.where(Event.tiktok_advertiser_id.in_(sorted(tiktok_advertiser_ids)))
    if item_id is not None:
        statement = statement.where(Event.item_id == item_id)
    if authorization_id is not None:
        statement = statement.where(Event.authorization_id == authorization_id)
    if types:
        statement = statement.where(Event.type.in_(sorted(types)))
    return list((await session.execute(statement)).scalars().all())
