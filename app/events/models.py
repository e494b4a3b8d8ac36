from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Identity, Index, Text, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from app.advertisers.models import Advertiser
from app.kit.db import Base, IdMixin

__all__ = ["Event", "EventType"]


class EventType(StrEnum):
    """Every change of state other systems can follow. The values are stable: clients switch on them."""

    authorization_applied = "authorization.applied"
    authorization_renewed = "authorization.renewed"
    authorization_rejected = "authorization.rejected"
    authorization_expiring = "authorization.expiring"
    authorization_expired = "authorization.expired"
    authorization_revoked = "authorization.revoked"
    authorization_extended = "authorization.extended"
    authorization_post_banned = "authorization.post_banned"
    authorization_post_deleted = "authorization.post_deleted"
    authorization_caption_changed = "authorization.caption_changed"
    authorization_unauthorized = "authorization.unauthorized"
    ad_linked = "ad.linked"
    ad_removed = "ad.removed"
    post_deletion_safe = "post.deletion_safe"


class Event(IdMixin, Base):
    """One change of state, written in the transaction that made it (a transactional outbox).

    Order: `(tx_id, seq)`. `tx_id` is the writing transaction's id (`pg_current_xact_id()`), `seq` the order of
    events within it. A reader only sees events of transactions older than every transaction still running
    (`pg_snapshot_xmin`), so an event that commits late can never land behind a cursor already handed out.
    """

    __tablename__ = "events"
    __table_args__ = (
        Index("uq_events_order", "tx_id", "seq", unique=True),
        Index(None, "tiktok_advertiser_id", "tx_id", "seq"),
        Index(None, "item_id", "tx_id", "seq"),
        Index(None, "authorization_id"),
    )

    tx_id: Mapped[int] = mapped_column(BigInteger, server_default=text("pg_current_xact_id()::text::bigint"))
    seq: Mapped[int] = mapped_column(BigInteger, Identity(always=True))
    type: Mapped[str] = mapped_column(Text)
    occurred_at: Mapped[datetime]
    advertiser_id: Mapped[uuid.UUID] = mapped_column(ForeignKey(Advertiser.id, ondelete="RESTRICT"))
    tiktok_advertiser_id: Mapped[str] = mapped_column(Text)
    item_id: Mapped[str | None] = mapped_column(Text)
    # No foreign keys: an event is history and outlives nothing it names.
    authorization_id: Mapped[uuid.UUID | None]
    ad_id: Mapped[str | None] = mapped_column(Text)
    # What changed and the resource as it was right after the change.
    data: Mapped[dict[str, Any]] = mapped_column(JSONB)
