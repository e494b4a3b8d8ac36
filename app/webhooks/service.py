"""Webhook subscriptions: subscribing, reading and deleting them, and reading their deliveries.

A subscription belongs to the API key that made it: that key sees it (an admin key sees every one), and any other
key gets 404 `webhook_not_found`, as for one that does not exist. Its signing secret is made here, shown once, and
stored encrypted (SecretBox). It starts at the feed's head: it receives the events committed after it was made.
"""

from __future__ import annotations

import base64
import secrets
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from app.api_keys import repository as api_keys
from app.api_keys.access import Caller
from app.api_keys.models import ApiKey, Scope
from app.events import service as events
from app.events.models import EventType
from app.kit.crypto import SecretBox
from app.kit.errors import CursorInvalid
from app.kit.pagination import PageParams
from app.webhooks import repository
from app.webhooks.errors import WebhookNotFound, WebhookUrlInvalid
from app.webhooks.models import DeliveryState, WebhookSubscription
from app.webhooks.repository import DeliveryRow
from app.webhooks.schemas import MAX_URL_LENGTH

log = structlog.get_logger(__name__)

SECRET_PREFIX = "whsec_"  # noqa: S105 - the format's prefix, not a secret
SECRET_BYTES = 24
_SCHEMES = ("http", "https")


def new_secret() -> str:
    """A Standard Webhooks signing secret: `whsec_` and the base64 of 24 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def check_url(url: str) -> str:
    """`url` if it is one deliveries can go to, else WebhookUrlInvalid saying why (without echoing it)."""

    def refuse(why: str) -> WebhookUrlInvalid:
        return WebhookUrlInvalid(f"The webhook URL {why}.")

    if not url:
        raise refuse("is empty")
    if len(url) > MAX_URL_LENGTH:
        raise refuse(f"is longer than {MAX_URL_LENGTH:,} characters")
    # Visible ASCII only: no spaces or control characters (Postgres refuses NUL; a header injection needs CR/LF),
    # and no text a client would have to guess how to encode.
    if any(not ("!" <= character <= "~") for character in url):
        raise refuse("may hold only visible ASCII characters (percent-encode anything else)")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - reading it checks it: a port that is not a number (or out of range) raises
    except ValueError:
        raise refuse("cannot be parsed") from None
    if parts.scheme.lower() not in _SCHEMES:
        raise refuse("must start with http:// or https://")
    if "@" in parts.netloc:
        raise refuse("must not hold userinfo (user:password@)")
    if not parts.hostname:
        raise refuse("must name a host")
    if "#" in url:
        raise refuse("must not have a fragment (#...)")
    return url


def _unique_types(event_types: Iterable[EventType]) -> list[str]:
    return list(dict.fromkeys(event_type.value for event_type in event_types))


@dataclass(frozen=True, slots=True)
class Subscribed:
    subscription: WebhookSubscription
    secret: str  # shown once, in the answer to the subscribing request


async def subscribe(
    session: AsyncSession, box: SecretBox, *, url: str, event_types: Iterable[EventType], caller: Caller
) -> Subscribed:
    """A new subscription of the calling key, starting after the last event a reader can see now."""
    url = check_url(url)
    secret = new_secret()
    subscription = await repository.insert_subscription(
        session,
        api_key_id=caller.api_key_id,
        url=url,
        event_types=_unique_types(event_types),
        secret_encrypted=box.encrypt(secret),
        cursor=await events.head(session),
    )
    log.info(
        "webhook.subscribed",
        webhook_id=str(subscription.id),
        api_key_id=str(caller.api_key_id),
        event_types=subscription.event_types,
    )
    return Subscribed(subscription, secret)


def _visible(subscription: WebhookSubscription | None, webhook_id: uuid.UUID, caller: Caller) -> WebhookSubscription:
    if subscription is None or not (caller.is_admin or subscription.api_key_id == caller.api_key_id):
        raise WebhookNotFound(f"Webhook {webhook_id} does not exist.")
    return subscription


async def get(session: AsyncSession, *, webhook_id: uuid.UUID, caller: Caller) -> WebhookSubscription:
    return _visible(await repository.get_subscription(session, webhook_id), webhook_id, caller)


async def list_page(
    session: AsyncSession, *, caller: Caller, page: PageParams
) -> tuple[list[WebhookSubscription], str | None]:
    """The calling key's subscriptions (an admin key: every one), oldest first."""
    rows = await repository.list_subscriptions(
        session, api_key_id=None if caller.is_admin else caller.api_key_id, after=page.cursor, limit=page.limit
    )
    if len(rows) <= page.limit:
        return rows, None
    rows = rows[: page.limit]
    return rows, page.next_cursor(rows[-1].created_at, rows[-1].id)


async def delete(session: AsyncSession, *, webhook_id: uuid.UUID, caller: Caller) -> None:
    """The subscription and its deliveries are gone; a delivery being sent right now still arrives."""
    _visible(await repository.get_subscription(session, webhook_id, for_update=True), webhook_id, caller)
    await repository.delete_subscription(session, webhook_id)
    log.info("webhook.deleted", webhook_id=str(webhook_id), api_key_id=str(caller.api_key_id))


async def list_deliveries(
    session: AsyncSession, *, webhook_id: uuid.UUID, state: DeliveryState | None, caller: Caller, page: PageParams
) -> tuple[list[DeliveryRow], str | None]:
    """The subscription's deliveries, newest first (in the events' order), a page at a time.

    The cursor is the usual signed (created_at, id) pair; the id names the page's last delivery, whose place in the
    events' order is where the next page starts."""
    _visible(await repository.get_subscription(session, webhook_id), webhook_id, caller)
    before = None
    if page.cursor is not None:
        before = await repository.delivery_position(session, subscription_id=webhook_id, delivery_id=page.cursor.id)
        if before is None:  # signed by this service, but for another list
            raise CursorInvalid()
    rows = await repository.list_deliveries(
        session, subscription_id=webhook_id, state=state, before=before, limit=page.limit
    )
    if len(rows) <= page.limit:
        return rows, None
    rows = rows[: page.limit]
    last = rows[-1].delivery
    return rows, page.next_cursor(last.created_at, last.id)


# --- what the subscription's key may receive ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Audience:
    """What the owning key may receive now. `advertiser_ids` None: every ad account (an admin key)."""

    receives: bool  # False: the key is revoked (or gone), or may not read: nothing is handed out nor sent
    advertiser_ids: frozenset[str] | None


NOBODY = Audience(receives=False, advertiser_ids=frozenset())


async def audience(session: AsyncSession, api_key_id: uuid.UUID) -> Audience:
    """The ad accounts whose events the key's subscriptions receive, read now (a key's grants change)."""
    api_key: ApiKey | None = await api_keys.get(session, api_key_id)
    if api_key is None or api_key.revoked_at is not None:
        return NOBODY
    if api_key.is_admin:
        return Audience(receives=True, advertiser_ids=None)
    if Scope.read.value not in api_key.scopes:
        return NOBODY
    grants = (await api_keys.grants_of(session, [api_key_id])).get(api_key_id, [])
    return Audience(receives=True, advertiser_ids=frozenset(grants))
