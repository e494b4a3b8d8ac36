from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Response, status
from pydantic.json_schema import SkipJsonSchema

from app.api_keys import service as api_keys
from app.api_keys.dependencies import CurrentCaller
from app.api_keys.models import Scope
from app.kit.db import DbSession
from app.kit.deps import Secrets
from app.kit.errors import CursorInvalid, problem_responses
from app.kit.pagination import PageParams, page_params
from app.webhooks import service
from app.webhooks.errors import WebhookNotFound, WebhookUrlInvalid
from app.webhooks.models import DeliveryState
from app.webhooks.schemas import (
    WebhookCreate,
    WebhookCreated,
    WebhookDeliveryPage,
    WebhookDeliveryRead,
    WebhookMessage,
    WebhookPage,
    WebhookRead,
)

router = APIRouter(prefix="/webhooks", tags=["webhooks"])


@router.post(
    "",
    operation_id="createWebhook",
    status_code=status.HTTP_201_CREATED,
    summary="Subscribe a URL to events",
    responses=problem_responses(WebhookUrlInvalid),
)
async def create_webhook(
    body: WebhookCreate, response: Response, session: DbSession, box: Secrets, caller: CurrentCaller
) -> WebhookCreated:
    """Events committed from now on are POSTed to `url`, as the Standard Webhooks specification defines it: a JSON
    body `{type, timestamp, data}` (`data`: the event), signed with the secret in this answer (`webhook-id`: the
    event's id, the same on every retry; `webhook-timestamp`; `webhook-signature`). Only the events of the ad
    accounts this key may touch when the event is handed over are sent, in the events' order, one at a time; a
    delivery that fails is tried again after 5 s, 5 min, 30 min, 2 h, 5 h, 10 h and 10 h, then given up on.
    Subscribing needs the `read` scope too: events are what the key could read."""
    api_keys.require_scope(caller, Scope.read, doing="Subscribing to events")
    subscribed = await service.subscribe(session, box, url=body.url, event_types=body.event_types, caller=caller)
    response.headers["Location"] = f"/v1/webhooks/{subscribed.subscription.id}"
    return WebhookCreated(**WebhookRead.from_model(subscribed.subscription).model_dump(), secret=subscribed.secret)


@router.get(
    "",
    operation_id="listWebhooks",
    summary="List webhook subscriptions",
    responses=problem_responses(CursorInvalid),
)
async def list_webhooks(
    session: DbSession, caller: CurrentCaller, page: Annotated[PageParams, Depends(page_params)]
) -> WebhookPage:
    """This key's subscriptions (an admin key: every key's), oldest first, a page at a time; never their secrets."""
    rows, next_cursor = await service.list_page(session, caller=caller, page=page)
    return WebhookPage(items=[WebhookRead.from_model(row) for row in rows], next_cursor=next_cursor)


@router.get(
    "/{webhook_id}",
    operation_id="getWebhook",
    summary="Read a webhook subscription",
    responses=problem_responses(WebhookNotFound),
)
async def get_webhook(webhook_id: uuid.UUID, session: DbSession, caller: CurrentCaller) -> WebhookRead:
    return WebhookRead.from_model(await service.get(session, webhook_id=webhook_id, caller=caller))


@router.delete(
    "/{webhook_id}",
    operation_id="deleteWebhook",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Delete a webhook subscription",
    responses=problem_responses(WebhookNotFound),
)
async def delete_webhook(webhook_id: uuid.UUID, session: DbSession, caller: CurrentCaller) -> Response:
    """Nothing more is sent to it, and its deliveries are forgotten. Deleting it again is 404."""
    await service.delete(session, webhook_id=webhook_id, caller=caller)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get(
    "/{webhook_id}/deliveries",
    operation_id="listWebhookDeliveries",
    summary="List a webhook subscription's deliveries",
    responses=problem_responses(WebhookNotFound, CursorInvalid),
)
async def list_webhook_deliveries(
    webhook_id: uuid.UUID,
    session: DbSession,
    caller: CurrentCaller,
    page: Annotated[PageParams, Depends(page_params)],
    state: Annotated[
        DeliveryState | SkipJsonSchema[None],
        Query(description="Only the deliveries in this state (left out: every one)."),
    ] = None,
) -> WebhookDeliveryPage:
    """Newest first (in the events' order), a page at a time: each event handed to the subscription, its state,
    its attempts and the last one's outcome."""
    rows, next_cursor = await service.list_deliveries(
        session, webhook_id=webhook_id, state=state, caller=caller, page=page
    )
    return WebhookDeliveryPage(
        items=[WebhookDeliveryRead.from_model(row.delivery, row.event_type) for row in rows], next_cursor=next_cursor
    )


# What a receiver is sent: documented under the OpenAPI document's `webhooks`, so that generated clients have the
# message's type. Never served: the service sends these, it does not receive them.
payloads = APIRouter(tags=["webhooks"])


@payloads.post(
    "event",
    operation_id="receiveEvent",
    summary="An event, as a webhook receiver is sent it",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={204: {"description": "Any 2xx answer marks the delivery delivered; anything else is retried."}},
)
def receive_event(
    body: WebhookMessage,
    webhook_id: Annotated[
        str, Header(alias="webhook-id", description="The event's id: the same on every retry; de-duplicate on it.")
    ],
    webhook_timestamp: Annotated[
        str, Header(alias="webhook-timestamp", description="When this attempt was signed, in Unix seconds.")
    ],
    webhook_signature: Annotated[
        str,
        Header(
            alias="webhook-signature",
            description="`v1,<base64 HMAC-SHA256>` of `{webhook-id}.{webhook-timestamp}.{body}` under the "
            "subscription's secret (Standard Webhooks; verify with its library).",
        ),
    ],
) -> None:
    """Sent to each subscription's URL with `Content-Type: application/json`, in the events' order per
    subscription, at least once; retried with backoff (5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h) until a 2xx."""
