from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from app.events.models import Event, EventType


class EventRead(BaseModel):
    """One change of state. `data` holds the resource as it was right after the change (`authorization`, and for
    ad events `ad`), and what the change was about: `lead_seconds` and `ends_at` for `authorization.expiring`;
    `previous_*` values for changes seen on TikTok; `reason`, `detail`, `code_hint` for `authorization.rejected`;
    `ads_at_risk` when a post that ads use became unusable."""

    id: uuid.UUID = Field(description="Stable: also the `webhook-id` of its webhook deliveries.")
    type: EventType
    occurred_at: datetime
    advertiser_id: str = Field(description="TikTok's advertiser (ad account) id.")
    item_id: str | None
    authorization_id: uuid.UUID | None
    ad_id: str | None
    data: dict[str, Any]

    @classmethod
    def from_model(cls, event: Event) -> EventRead:
        return cls(
            id=event.id,
            type=EventType(event.type),
            occurred_at=event.occurred_at,
            advertiser_id=event.tiktok_advertiser_id,
            item_id=event.item_id,
            authorization_id=event.authorization_id,
            ad_id=event.ad_id,
            data=event.data,
        )


class EventFeed(BaseModel):
    """A page of the feed, oldest first. Pass `next_cursor` as `after` to read on: it is there even when the page
    is empty (the place to poll from), and no event that commits later can land before it."""

    items: list[EventRead]
    next_cursor: str = Field(description="Where the next read starts (`after`); never null.")
    has_more: bool = Field(description="More events can be read at once; false: poll again later.")
