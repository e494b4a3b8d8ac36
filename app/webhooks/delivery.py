"""Delivering events to webhook subscriptions, as the Standard Webhooks specification defines it.

Per subscription, one run at a time (the queue's lock `webhook:<id>`; correctness does not rest on it, see below):

1. **Hand out.** In a short transaction, the events after the subscription's cursor that it receives (its types,
   the ad accounts its key may touch now: `events.read_feed`, in order, a bounded batch) become pending
   deliveries, due now, and the cursor moves past them. When the batch is not full, every event up to the feed's
   head has been seen, and the cursor moves to the head: a subscription with nothing to receive is not looked at
   again until new events arrive. The cursor moves by a conditional UPDATE from where it was read, so two runs
   never hand out the same events twice (and the unique index would refuse it anyway).
2. **Take the oldest pending delivery** (the events' order). Not due yet: the run stops, and every later delivery
   waits behind it: a subscription receives its events in order. Due: it is claimed by a conditional UPDATE that
   sets its `next_attempt_at` to the end of the attempt's lease (the timeout and a margin), so no other run sends
   it meanwhile, and a run that dies mid-way leaves it due again when the lease ends (at least once, never lost).
3. **Send it** with no transaction open, signed (`webhook-id` = the event's id, the same on every retry, so a
   receiver can de-duplicate; `webhook-timestamp`; `webhook-signature`), within `WEBHOOK_TIMEOUT_SECONDS` in all.
   2xx is delivered; anything else (another status, a redirect, a timeout, a connection that fails) is a failure.
4. **Record the outcome** in a short transaction, if the claim still holds. A failure is tried again after
   RETRY_WAITS (5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h: 8 attempts over about 27.6 hours); after the last one
   the delivery is `failed` and the subscription moves on to the next. Then the next delivery, while they
   succeed, up to MAX_SENDS_PER_RUN or MAX_RUN_SECONDS: the run then says there is more, and is run again.

Every time is read from `now` (by default `app.kit.clock.utcnow`, looked up at each call), so tests can move it.
A receiver that hangs or refuses holds up only its own subscription: each subscription is a job of its own, and
the worker runs several at once.
"""

from __future__ import annotations

import asyncio
import math
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import httpx
import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from standardwebhooks.webhooks import Webhook

from app.events import service as events
from app.events.models import Event
from app.events.schemas import EventRead
from app.events.service import FeedPosition
from app.kit import clock
from app.kit.crypto import DecryptionFailed, SecretBox
from app.webhooks import repository
from app.webhooks import service as subscriptions
from app.webhooks.models import DeliveryState, WebhookDelivery
from app.webhooks.schemas import WebhookMessage

__all__ = [
    "MAX_ATTEMPTS",
    "RETRY_WAITS",
    "Attempt",
    "RunOutcome",
    "deliver",
    "hand_out",
    "message_for",
    "send",
    "subscriptions_with_work",
]

log = structlog.get_logger(__name__)

# The wait after each failed attempt; after the last one, the delivery has failed.
RETRY_WAITS = (
    timedelta(seconds=5),
    timedelta(minutes=5),
    timedelta(minutes=30),
    timedelta(hours=2),
    timedelta(hours=5),
    timedelta(hours=10),
    timedelta(hours=10),
)
MAX_ATTEMPTS = len(RETRY_WAITS) + 1
HANDOUT_BATCH = 100
MAX_SENDS_PER_RUN = 100
MAX_RUN_SECONDS = 30.0
# How long past its timeout an attempt's claim holds: recording the outcome takes one short transaction.
LEASE_MARGIN = timedelta(seconds=30)
# How many subscriptions one dispatch looks at; the next dispatch, 5 s later, takes the rest.
DISPATCH_LIMIT = 1000
_MAX_ERROR_LENGTH = 200

Now = Callable[[], datetime]


def utcnow() -> datetime:
    """The clock runs read: `app.kit.clock.utcnow`, looked up at each call so that tests can replace it."""
    return clock.utcnow()


# --- what is sent ---------------------------------------------------------------------------------------------


def message_for(event: Event) -> str:
    """The delivery's body: `{type, timestamp, data}`, `data` the event as the feed shows it. The same bytes on
    every attempt."""
    return WebhookMessage(
        type=event.type, timestamp=event.occurred_at, data=EventRead.from_model(event)
    ).model_dump_json()


@dataclass(frozen=True, slots=True)
class Attempt:
    delivered: bool
    status_code: int | None
    error: str | None  # a few words, never the secret nor the receiver's body


async def send(
    http: httpx.AsyncClient,
    *,
    url: str,
    secret: str,
    message_id: str,
    body: str,
    timestamp: datetime,
    timeout_seconds: float,
) -> Attempt:
    """POST one signed message; 2xx is delivered, anything else is a failure (redirects are not followed). The
    whole attempt, connecting included, ends within `timeout_seconds`; the answer's body is never read."""
    headers = {
        "content-type": "application/json",
        "webhook-id": message_id,
        "webhook-timestamp": str(math.floor(timestamp.timestamp())),
        "webhook-signature": Webhook(secret).sign(message_id, timestamp, body),
    }
    try:
        async with (
            asyncio.timeout(timeout_seconds),
            http.stream("POST", url, content=body.encode(), headers=headers) as response,
        ):
            status_code = response.status_code
    except (TimeoutError, httpx.TimeoutException):
        return Attempt(False, None, f"no answer within {timeout_seconds:g} s")
    except httpx.HTTPError as exc:
        return Attempt(False, None, _short(f"request failed: {type(exc).__name__}: {exc}"))
    except httpx.InvalidURL:
        return Attempt(False, None, "the URL cannot be requested")
    if 200 <= status_code < 300:
        return Attempt(True, status_code, None)
    if 300 <= status_code < 400:
        return Attempt(False, status_code, f"HTTP {status_code}: a redirect, not followed")
    return Attempt(False, status_code, f"HTTP {status_code}")


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _MAX_ERROR_LENGTH else text[: _MAX_ERROR_LENGTH - 1] + "…"


# --- handing events out -----------------------------------------------------------------------------------------


async def hand_out(
    sessionmaker: async_sessionmaker[AsyncSession],
    subscription_id: uuid.UUID,
    *,
    now: Now = utcnow,
    limit: int = HANDOUT_BATCH,
) -> bool:
    """Turn the next events the subscription receives into pending deliveries (step 1); whether more may be
    waiting (the batch was full)."""
    async with sessionmaker.begin() as session:
        subscription = await repository.get_subscription(session, subscription_id)
        if subscription is None:
            return False
        audience = await subscriptions.audience(session, subscription.api_key_id)
        if not audience.receives:
            return False
        cursor = FeedPosition(subscription.cursor_tx_id, subscription.cursor_seq)
        # The head first: every event up to it has been committed, so the read below sees all of them.
        head = await events.head(session)
        batch = await events.read_feed(
            session,
            after=cursor,
            limit=limit,
            tiktok_advertiser_ids=audience.advertiser_ids,
            types=subscription.event_types,
        )
        full = len(batch) == limit
        last = FeedPosition(batch[-1].tx_id, batch[-1].seq) if batch else cursor
        to = last if full else max(last, head, cursor)
        if to == cursor:
            return False
        if not await repository.move_cursor(session, subscription_id, expected=cursor, to=to):
            return False  # another run handed these out meanwhile
        await repository.insert_deliveries(session, subscription_id=subscription_id, events=batch, now=now())
    if batch:
        log.info("webhook.handed_out", webhook_id=str(subscription_id), events=len(batch))
    return full


# --- delivering -------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RunOutcome:
    sent: int = 0
    delivered: int = 0
    # The run stopped at its bounds with work left: run it again now.
    more: bool = False
    # The oldest pending delivery is due then (a retry): nothing more until that time.
    waiting_until: datetime | None = None


@dataclass(frozen=True, slots=True)
class _Claimed:
    delivery: WebhookDelivery
    lease: datetime
    message_id: str
    body: str


async def deliver(
    sessionmaker: async_sessionmaker[AsyncSession],
    box: SecretBox,
    http: httpx.AsyncClient,
    subscription_id: uuid.UUID,
    *,
    timeout_seconds: float,
    now: Now = utcnow,
    max_sends: int = MAX_SENDS_PER_RUN,
    max_seconds: float = MAX_RUN_SECONDS,
    handout_batch: int = HANDOUT_BATCH,
) -> RunOutcome:
    """One run for one subscription: hand out its new events, then send its due deliveries in order (see the
    module's doc)."""
    async with sessionmaker() as session:
        subscription = await repository.get_subscription(session, subscription_id)
        if subscription is None:
            return RunOutcome()
        audience = await subscriptions.audience(session, subscription.api_key_id)
    if not audience.receives:  # revoked, or may not read: paused
        return RunOutcome()
    url = subscription.url
    try:
        secret = box.decrypt(subscription.secret_encrypted)
    except DecryptionFailed:
        log.error("webhook.secret_unreadable", webhook_id=str(subscription_id))
        return RunOutcome()

    started = time.monotonic()
    sent = delivered = 0
    more_events = await hand_out(sessionmaker, subscription_id, now=now, limit=handout_batch)
    while True:
        if sent >= max_sends or time.monotonic() - started >= max_seconds:
            return RunOutcome(sent, delivered, more=True)
        claimed, waiting_until = await _claim_next(
            sessionmaker, subscription_id, now=now, timeout_seconds=timeout_seconds
        )
        if claimed is None:
            if waiting_until is None and more_events:
                more_events = await hand_out(sessionmaker, subscription_id, now=now, limit=handout_batch)
                continue
            return RunOutcome(sent, delivered, waiting_until=waiting_until)

        attempted_at = now()
        attempt = await send(
            http,
            url=url,
            secret=secret,
            message_id=claimed.message_id,
            body=claimed.body,
            timestamp=attempted_at,
            timeout_seconds=timeout_seconds,
        )
        sent += 1
        state, next_attempt_at = await _record(sessionmaker, claimed, attempt, attempted_at=attempted_at, now=now)
        if state is DeliveryState.delivered:
            delivered += 1
        elif state is DeliveryState.pending:
            return RunOutcome(sent, delivered, waiting_until=next_attempt_at)
        # delivered, or failed for good: the next one


async def _claim_next(
    sessionmaker: async_sessionmaker[AsyncSession], subscription_id: uuid.UUID, *, now: Now, timeout_seconds: float
) -> tuple[_Claimed | None, datetime | None]:
    """The oldest pending delivery, claimed for one attempt; else (None, when it is due) or (None, None) when
    there is none, or another run holds it."""
    async with sessionmaker.begin() as session:
        found = await repository.oldest_pending(session, subscription_id)
        if found is None:
            return None, None
        delivery, event = found
        at = now()
        if delivery.next_attempt_at > at:
            return None, delivery.next_attempt_at
        lease = at + timedelta(seconds=timeout_seconds) + LEASE_MARGIN
        if not await repository.claim(session, delivery, now=at, until=lease):
            return None, None
        return _Claimed(delivery, lease, str(event.id), message_for(event)), None


async def _record(
    sessionmaker: async_sessionmaker[AsyncSession],
    claimed: _Claimed,
    attempt: Attempt,
    *,
    attempted_at: datetime,
    now: Now,
) -> tuple[DeliveryState, datetime]:
    delivery = claimed.delivery
    attempts = delivery.attempts + 1
    finished_at = now()
    if attempt.delivered:
        state, next_attempt_at = DeliveryState.delivered, finished_at
    elif attempts >= MAX_ATTEMPTS:
        state, next_attempt_at = DeliveryState.failed, finished_at
    else:
        state, next_attempt_at = DeliveryState.pending, finished_at + RETRY_WAITS[attempts - 1]
    async with sessionmaker.begin() as session:
        recorded = await repository.record_attempt(
            session,
            delivery.id,
            attempts_before=delivery.attempts,
            lease=claimed.lease,
            state=state,
            attempted_at=attempted_at,
            status_code=attempt.status_code,
            error=attempt.error,
            next_attempt_at=next_attempt_at,
            delivered_at=finished_at if attempt.delivered else None,
        )
    fields = {
        "webhook_id": str(delivery.subscription_id),
        "event_id": claimed.message_id,
        "attempt": attempts,
        "status_code": attempt.status_code,
    }
    if not recorded:  # the lease ran out and another run took it over: that run records its own attempt
        log.warning("webhook.outcome_not_recorded", **fields, state=state.value)
    elif state is DeliveryState.delivered:
        log.info("webhook.delivered", **fields)
    else:
        log.warning("webhook.attempt_failed", **fields, error=attempt.error, state=state.value)
    return state, next_attempt_at


# --- dispatching ------------------------------------------------------------------------------------------------


async def subscriptions_with_work(
    sessionmaker: async_sessionmaker[AsyncSession], *, now: Now = utcnow, limit: int = DISPATCH_LIMIT
) -> list[uuid.UUID]:
    """The subscriptions a `deliver` run has something to do for: a cursor behind the feed's head (read once), or
    a pending delivery due now. Cheap: one index read of the head, the subscriptions, and the due index."""
    async with sessionmaker() as session:
        head = await events.head(session)
        return await repository.subscriptions_with_work(session, head=head, now=now(), limit=limit)
