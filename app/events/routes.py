from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import StringConstraints
from pydantic.json_schema import SkipJsonSchema

from app.advertisers.errors import AdvertiserNotFound
from app.api_keys.dependencies import CurrentCaller
from app.events import service
from app.events.models import EventType
from app.events.schemas import EventFeed, EventRead
from app.kit.db import DbSession
from app.kit.deps import Secrets
from app.kit.errors import CursorInvalid, problem_responses

router = APIRouter(prefix="/events", tags=["events"])

# The pattern on the type itself: put on the Query of an optional parameter, it is lost from the schema.
AdvertiserId = Annotated[str, StringConstraints(pattern=r"^[0-9]{1,32}$")]


@router.get(
    "",
    operation_id="listEvents",
    summary="Follow every change of state",
    responses=problem_responses(CursorInvalid, AdvertiserNotFound),
)
async def list_events(
    session: DbSession,
    caller: CurrentCaller,
    box: Secrets,
    after: Annotated[
        str | SkipJsonSchema[None],
        Query(min_length=1, max_length=500, description="`next_cursor` of the previous read; absent: from the start."),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500, description="Events per page.")] = 100,
    advertiser_id: Annotated[
        AdvertiserId | SkipJsonSchema[None], Query(description="Only this ad account's events.")
    ] = None,
    item_id: Annotated[
        str | SkipJsonSchema[None], Query(min_length=1, max_length=64, description="Only this post's events.")
    ] = None,
    authorization_id: Annotated[
        uuid.UUID | SkipJsonSchema[None], Query(description="Only this authorization's events.")
    ] = None,
    type: Annotated[
        list[EventType] | SkipJsonSchema[None], Query(description="Only these types (repeat the parameter).")
    ] = None,
) -> EventFeed:
    """Every change of state of the ad accounts this key may touch, in one total order, each written in the
    transaction of its change. Read with `after` = the previous `next_cursor`; an empty page means "nothing new
    yet": poll again with the same cursor. An event appears once every transaction that began before it has
    ended, so a cursor never skips one that commits late."""
    position = service.FeedPosition.decode(box, after) if after is not None else service.START
    visible: frozenset[str] | None = caller.advertiser_ids
    if advertiser_id is not None:
        if not caller.may_touch(advertiser_id):
            raise AdvertiserNotFound(f"Ad account {advertiser_id} is not registered with this service.")
        visible = frozenset({advertiser_id})
    rows = await service.read_feed(
        session,
        after=position,
        limit=limit + 1,
        tiktok_advertiser_ids=visible,
        item_id=item_id,
        authorization_id=authorization_id,
        types=[t.value for t in type or ()],
    )
    has_more = len(rows) > limit
    rows = rows[:limit]
    if rows:
        position = service.FeedPosition(rows[-1].tx_id, rows[-1].seq)
    return EventFeed(
        items=[EventRead.from_model(row) for row in rows], next_cursor=position.encode(box), has_more=has_more
    )
