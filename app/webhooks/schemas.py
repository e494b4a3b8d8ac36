from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, Field

from app.events.models import EventType
from app.events.schemas import EventRead
from app.kit.bodies import FromText, RequestBody
from app.kit.pagination import Page
from app.webhooks.models import DeliveryState, WebhookDelivery, WebhookSubscription

MAX_URL_LENGTH = 2000


class WebhookCreate(RequestBody):
    url: str = Field(
        description=f"Where to POST the events: an absolute `http` or `https` URL with a host, no userinfo "
        f"(`user:password@`), no fragment, at most {MAX_URL_LENGTH:,} characters of visible ASCII (percent-encode the "
        "rest). Anything else is 422 `webhook_url_invalid`. Redirects are not followed: a redirect is a failed "
        "delivery.",
        examples=["https://hooks.example.com/spark-ads"],
    )
    event_types: Annotated[list[FromText[EventType]], Field(max_length=100)] = Field(
        default=[],
        description="The event types to receive; empty (the default): every type, new ones included.",
    )


class WebhookRead(BaseModel):
    id: uuid.UUID
    url: str
    event_types: list[EventType] = Field(description="The event types it receives; empty: every type.")
    api_key_id: uuid.UUID = Field(
        description="The API key that subscribed it. It receives only the events of the ad accounts that key may "
        "touch when the event is handed to it (an admin key: every one), and nothing once the key is revoked."
    )
    created_at: datetime

    @classmethod
    def from_model(cls, subscription: WebhookSubscription) -> WebhookRead:
        return cls(
            id=subscription.id,
            url=subscription.url,
            event_types=[EventType(value) for value in subscription.event_types],
            api_key_id=subscription.api_key_id,
            created_at=subscription.created_at,
        )


class WebhookCreated(WebhookRead):
    secret: str = Field(
        description="The signing secret (`whsec_` and base64 of 24 random bytes), as the Standard Webhooks "
        "specification defines it: verify each delivery's `webhook-signature` with it. Shown only in this answer: "
        "store it now."
    )


class WebhookPage(Page[WebhookRead]):
    """A page of webhook subscriptions; `next_cursor` fetches the next."""


class WebhookDeliveryRead(BaseModel):
    id: uuid.UUID
    event_id: uuid.UUID = Field(description="The event delivered: also its `webhook-id` header, the same on retries.")
    event_type: EventType
    state: DeliveryState = Field(
        description="`pending`: waiting for its turn or its next attempt; `delivered`: the receiver answered 2xx; "
        "`failed`: every attempt failed, and the subscription moved on to the next event."
    )
    attempts: int = Field(description="How many times it was sent (the successful attempt included).")
    next_attempt_at: datetime | None = Field(
        description="When it is next due (no earlier: deliveries go in order, so it may wait behind an older one); "
        "null once delivered or failed."
    )
    last_attempt_at: datetime | None
    last_status_code: int | None = Field(description="The receiver's HTTP status at the last attempt, if it answered.")
    last_error: str | None = Field(description="Why the last attempt failed, in a few words; null if it did not.")
    delivered_at: datetime | None
    created_at: datetime = Field(description="When the event was handed to this subscription.")

    @classmethod
    def from_model(cls, delivery: WebhookDelivery, event_type: str) -> WebhookDeliveryRead:
        pending = delivery.state == DeliveryState.pending.value
        return cls(
            id=delivery.id,
            event_id=delivery.event_id,
            event_type=EventType(event_type),
            state=DeliveryState(delivery.state),
            attempts=delivery.attempts,
            next_attempt_at=delivery.next_attempt_at if pending else None,
            last_attempt_at=delivery.last_attempt_at,
            last_status_code=delivery.last_status_code,
            last_error=delivery.last_error,
            delivered_at=delivery.delivered_at,
            created_at=delivery.created_at,
        )


class WebhookDeliveryPage(Page[WebhookDeliveryRead]):
    """A page of a subscription's deliveries, newest first; `next_cursor` fetches the next."""


# --- what a delivery sends ------------------------------------------------------------------------------------


class WebhookMessage(BaseModel):
    """A delivery's body, as the Standard Webhooks specification shapes it."""

    type: EventType
    timestamp: datetime = Field(description="When the event occurred.")
    data: EventRead = Field(description="The event, as `GET /v1/events` shows it.")
