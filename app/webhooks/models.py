from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, Index, LargeBinary, Text, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Mapped, mapped_column

from app.api_keys.models import ApiKey
from app.events.models import Event
from app.kit.db import Base, IdMixin, TimestampMixin

__all__ = ["DeliveryState", "WebhookDelivery", "WebhookSubscription"]


class DeliveryState(StrEnum):
    pending = "pending"  # not delivered yet: waiting for its turn or for its next attempt
    delivered = "delivered"  # the receiver answered 2xx
    failed = "failed"  # every attempt failed: given up on, and the subscription moved on


class WebhookSubscription(IdMixin, TimestampMixin, Base):
    """A receiver of events, owned by the API key that subscribed it: it receives only events of the ad accounts
    that key may see, when the event is handed to it."""

    __tablename__ = "webhook_subscriptions"

    api_key_id: Mapped[uuid.UUID] = mapped_column(ForeignKey(ApiKey.id, ondelete="CASCADE"), index=True)
    url: Mapped[str] = mapped_column(Text)
    # Empty: every type.
    event_types: Mapped[list[str]] = mapped_column(ARRAY(Text), server_default=text("'{}'::text[]"))
    # The Standard Webhooks signing secret (whsec_...), encrypted like codes and tokens.
    secret_encrypted: Mapped[bytes] = mapped_column(LargeBinary)
    # The last event (in the events' order) already turned into a delivery of this subscription.
    cursor_tx_id: Mapped[int] = mapped_column(BigInteger)
    cursor_seq: Mapped[int] = mapped_column(BigInteger)


class WebhookDelivery(IdMixin, Base):
    """One event for one subscription, with its attempts. Delivered in the events' order per subscription."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        Index("uq_webhook_deliveries_event", "subscription_id", "event_id", unique=True),
        Index(None, "subscription_id", "tx_id", "seq"),
        # A subscription's next delivery: the head of its pending ones, whatever its delivered history.
        Index(
            "ix_webhook_deliveries_pending",
            "subscription_id",
            "tx_id",
            "seq",
            postgresql_where=text("state = 'pending'"),
        ),
        # What the dispatcher looks for: subscriptions with a delivery still to make.
        Index("ix_webhook_deliveries_due", "next_attempt_at", postgresql_where=text("state = 'pending'")),
        CheckConstraint("state IN ('pending', 'delivered', 'failed')", name="state"),
        CheckConstraint("attempts >= 0", name="attempts"),
    )

    subscription_id: Mapped[uuid.UUID] = mapped_column(ForeignKey(WebhookSubscription.id, ondelete="CASCADE"))
    event_id: Mapped[uuid.UUID] = mapped_column(ForeignKey(Event.id, ondelete="CASCADE"))
    tx_id: Mapped[int] = mapped_column(BigInteger)
    seq: Mapped[int] = mapped_column(BigInteger)
    state: Mapped[str] = mapped_column(Text, default=DeliveryState.pending.value)
    attempts: Mapped[int] = mapped_column(default=0, server_default=text("0"))
    next_attempt_at: Mapped[datetime]
    last_attempt_at: Mapped[datetime | None]
    last_status_code: Mapped[int | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    delivered_at: Mapped[datetime | None]
    created_at: Mapped[datetime]
