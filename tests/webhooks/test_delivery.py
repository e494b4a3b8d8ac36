"""Deliveries, as a receiver sees them over real HTTP: signed as the Standard Webhooks specification defines it,
in the events' order, with a `webhook-id` that stays the same on every retry; retried on the schedule, then given
up on; only the events the subscription's key may see; and a receiver that hangs holds up nobody else.

The delivery runs are driven directly (`app.webhooks.delivery.deliver`, as the `deliver` job runs it), and time
is moved with time-machine to reach each retry.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
import time_machine
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from app.events.models import EventType
from app.kit import clock
from app.webhooks import delivery
from app.webhooks.delivery import MAX_ATTEMPTS, RETRY_WAITS
from app.webhooks.schemas import WebhookMessage
from app.webhooks.service import new_secret
from tests.conftest import ADVERTISER_ID, Key
from tests.webhooks.conftest import (
    OTHER_ADVERTISER_ID,
    TIMEOUT_SECONDS,
    MakeReceiver,
    Received,
    deliveries,
    record_events,
    refusing_url,
    register_other_advertiser,
    run_delivery,
    subscribe,
)

MakeKey = Callable[..., Awaitable[Key]]
APPLIED, LINKED, REMOVED = EventType.authorization_applied, EventType.ad_linked, EventType.ad_removed


def _parse(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _verified(secret: str, received: Received) -> dict[str, Any]:
    """The body, once its signature is verified as a receiver verifies it, and read as the document's `webhooks`
    section describes it (what a client generated from openapi.yaml reads it as)."""
    body: dict[str, Any] = Webhook(secret).verify(received.body, received.headers)
    WebhookMessage.model_validate(body)
    return body


async def _subscription_ids(app: FastAPI) -> list[uuid.UUID]:
    return await delivery.subscriptions_with_work(app.state.resources.sessionmaker)


class TestDelivered:
    async def test_signed_in_order_with_the_event_as_the_feed_shows_it(
        self, client: httpx.AsyncClient, advertiser: dict[str, Any], app: FastAPI, receiver: MakeReceiver
    ) -> None:
        """Every event is POSTed once, in the events' order, as JSON `{type, timestamp, data}` whose signature
        verifies with the subscription's secret; `webhook-id` is the event's id."""
        hook = receiver()
        subscription = await subscribe(client, hook.url)
        first = await record_events(app, ADVERTISER_ID, [APPLIED, LINKED])
        second = await record_events(app, ADVERTISER_ID, [REMOVED], item_id="7380112233445566002")

        outcome = await run_delivery(app, subscription["id"])

        assert (outcome.sent, outcome.delivered, outcome.more) == (3, 3, False)
        assert hook.ids() == first + second
        bodies = [_verified(subscription["secret"], received) for received in hook.received]
        assert [body["type"] for body in bodies] == ["authorization.applied", "ad.linked", "ad.removed"]
        last = hook.received[-1]
        assert last.headers["content-type"] == "application/json"
        assert abs(int(last.headers["webhook-timestamp"]) - time.time()) < 60
        assert bodies[-1]["data"] == {
            "id": second[0],
            "type": "ad.removed",
            "occurred_at": bodies[-1]["timestamp"],
            "advertiser_id": ADVERTISER_ID,
            "item_id": "7380112233445566002",
            "authorization_id": None,
            "ad_id": None,
            "data": {"number": 0},
        }
        # An altered body, or another secret, does not verify.
        forged = Received(last.path, last.headers, last.body.replace(b"ad.removed", b"ad.linked"), last.at)
        with pytest.raises(WebhookVerificationError, match="No matching signature"):
            _verified(subscription["secret"], forged)
        with pytest.raises(WebhookVerificationError, match="No matching signature"):
            _verified(new_secret(), last)

        items = await deliveries(client, subscription["id"])
        assert {item["state"] for item in items} == {"delivered"}
        assert {item["attempts"] for item in items} == {1}
        assert {item["last_status_code"] for item in items} == {200}
        assert all(item["delivered_at"] and item["next_attempt_at"] is None for item in items)

        # Nothing is sent twice, and an idle subscription is no longer looked at.
        assert (await run_delivery(app, subscription["id"])).sent == 0
        assert len(hook.received) == 3
        assert await _subscription_ids(app) == []

    async def test_it_starts_with_the_events_committed_after_it_was_made(
        self, client: httpx.AsyncClient, advertiser: dict[str, Any], app: FastAPI, receiver: MakeReceiver
    ) -> None:
        await record_events(app, ADVERTISER_ID, [APPLIED, LINKED])
        hook = receiver()
        subscription = await subscribe(client, hook.url)
        later = await record_events(app, ADVERTISER_ID, [REMOVED])

        await run_delivery(app, subscription["id"])

        assert hook.ids() == later

    async def test_only_the_event_types_it_asked_for(
        self, client: httpx.AsyncClient, advertiser: dict[str, Any], app: FastAPI, receiver: MakeReceiver
    ) -> None:
        hook = receiver()
        subscription = await subscribe(client, hook.url, ["ad.linked", "ad.removed"])
        applied, linked, removed = await record_events(app, ADVERTISER_ID, [APPLIED, LINKED, REMOVED])

        await run_delivery(app, subscription["id"])

        assert hook.ids() == [linked, removed]
        assert applied not in hook.ids()


class TestRetries:
    async def test_a_failure_is_retried_after_the_wait_with_the_same_id_and_body_and_holds_back_the_next(
        self, client: httpx.AsyncClient, advertiser: dict[str, Any], app: FastAPI, receiver: MakeReceiver
    ) -> None:
        """500 then 200: the first attempt fails, nothing is sent before the schedule's first wait (5 s), and the
        next event waits behind it; past the wait the same message is sent again and delivered, then the next."""
        hook = receiver(statuses=[500, 200])
        subscription = await subscribe(client, hook.url)
        first, second = await record_events(app, ADVERTISER_ID, [APPLIED, LINKED])

        outcome = await run_delivery(app, subscription["id"])

        assert (outcome.sent, outcome.delivered) == (1, 0)
        assert hook.ids() == [first]
        oldest, newest = (await deliveries(client, subscription["id"]))[::-1]
        assert (oldest["state"], oldest["attempts"], oldest["last_status_code"]) == ("pending", 1, 500)
        assert oldest["last_error"] == "HTTP 500"
        assert _parse(oldest["next_attempt_at"]) - _parse(oldest["last_attempt_at"]) >= RETRY_WAITS[0]
        assert outcome.waiting_until == _parse(oldest["next_attempt_at"])
        assert (newest["state"], newest["attempts"]) == ("pending", 0)

        # Before the wait is over: nothing goes, not even the next event (order).
        assert (await run_delivery(app, subscription["id"])).sent == 0
        assert hook.ids() == [first]
        assert await _subscription_ids(app) == [uuid.UUID(subscription["id"])]  # due by the index, waiting

        with time_machine.travel(_parse(oldest["next_attempt_at"]) + timedelta(seconds=1), tick=True):
            outcome = await run_delivery(app, subscription["id"])
            assert (outcome.sent, outcome.delivered) == (2, 2)
            assert hook.ids() == [first, first, second]
            retried, original = hook.received[1], hook.received[0]
            assert retried.body == original.body  # the same message...
            assert retried.headers["webhook-id"] == original.headers["webhook-id"] == first  # ...the same id
            assert int(retried.headers["webhook-timestamp"]) > int(original.headers["webhook-timestamp"])
            for received in hook.received:
                _verified(subscription["secret"], received)

        oldest, newest = (await deliveries(client, subscription["id"]))[::-1]
        assert (oldest["state"], oldest["attempts"], oldest["last_status_code"]) == ("delivered", 2, 200)
        assert oldest["last_error"] is None
        assert (newest["state"], newest["attempts"]) == ("delivered", 1)

    async def test_after_every_attempt_failed_it_is_failed_and_the_next_one_goes(
        self, client: httpx.AsyncClient, advertiser: dict[str, Any], app: FastAPI, receiver: MakeReceiver
    ) -> None:
        """8 attempts, over the schedule 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h (more than a day): then the
        delivery is failed, and the subscription moves on to the next event in the same run."""
        doomed: list[str] = []
        hook = receiver(answer=lambda received: 500 if received.webhook_id in doomed else 200)
        subscription = await subscribe(client, hook.url)
        first, second = await record_events(app, ADVERTISER_ID, [APPLIED, LINKED])
        doomed.append(first)
        started = clock.utcnow()

        await run_delivery(app, subscription["id"])
        for wait in RETRY_WAITS:
            item = (await deliveries(client, subscription["id"]))[-1]
            assert item["state"] == "pending"
            assert _parse(item["next_attempt_at"]) - _parse(item["last_attempt_at"]) >= wait
            # A moment before it is due: nothing is sent.
            with time_machine.travel(_parse(item["next_attempt_at"]) - timedelta(seconds=1), tick=False):
                assert (await run_delivery(app, subscription["id"])).sent == 0
            with time_machine.travel(_parse(item["next_attempt_at"]) + timedelta(seconds=1), tick=True):
                await run_delivery(app, subscription["id"])
                last_attempt = clock.utcnow()

        assert hook.ids() == [first] * MAX_ATTEMPTS + [second]
        assert last_attempt - started > timedelta(hours=27)  # retried for more than a day
        newest, oldest = await deliveries(client, subscription["id"])
        assert (oldest["state"], oldest["attempts"], oldest["last_status_code"]) == ("failed", MAX_ATTEMPTS, 500)
        assert oldest["next_attempt_at"] is None
        assert oldest["delivered_at"] is None
        assert (newest["event_id"], newest["state"], newest["attempts"]) == (second, "delivered", 1)
        assert [item["event_id"] for item in await deliveries(client, subscription["id"], state="failed")] == [first]

    async def test_a_redirect_is_a_failure_and_is_not_followed(
        self, client: httpx.AsyncClient, advertiser: dict[str, Any], app: FastAPI, receiver: MakeReceiver
    ) -> None:
        hook = receiver(statuses=[302])
        subscription = await subscribe(client, hook.url)
        await record_events(app, ADVERTISER_ID, [APPLIED])

        await run_delivery(app, subscription["id"])

        assert len(hook.received) == 1  # the Location (elsewhere.invalid) was not followed
        (item,) = await deliveries(client, subscription["id"])
        assert (item["state"], item["attempts"], item["last_status_code"]) == ("pending", 1, 302)
        assert "redirect" in item["last_error"]

    async def test_a_timeout_and_a_refused_connection_are_failures_and_say_so_without_the_secret(
        self, client: httpx.AsyncClient, advertiser: dict[str, Any], app: FastAPI, receiver: MakeReceiver
    ) -> None:
        hanging = receiver(delay=TIMEOUT_SECONDS + 2)
        slow = await subscribe(client, hanging.url)
        refused = await subscribe(client, refusing_url())
        await record_events(app, ADVERTISER_ID, [APPLIED])

        started = time.monotonic()
        await run_delivery(app, slow["id"])
        assert time.monotonic() - started < TIMEOUT_SECONDS + 1.5  # the attempt ended at the timeout
        await run_delivery(app, refused["id"])

        (timed_out,) = await deliveries(client, slow["id"])
        assert (timed_out["state"], timed_out["attempts"], timed_out["last_status_code"]) == ("pending", 1, None)
        assert timed_out["last_error"] == f"no answer within {TIMEOUT_SECONDS:g} s"
        (unreachable,) = await deliveries(client, refused["id"])
        assert (unreachable["state"], unreachable["attempts"]) == ("pending", 1)
        assert unreachable["last_error"].startswith("request failed: ConnectError")
        for item, subscription in ((timed_out, slow), (unreachable, refused)):
            assert subscription["secret"] not in item["last_error"]
            assert subscription["secret"].removeprefix("whsec_") not in item["last_error"]


class TestWhoReceivesWhat:
    async def test_only_the_ad_accounts_its_key_may_touch_when_the_event_is_handed_out(
        self,
        client: httpx.AsyncClient,
        advertiser: dict[str, Any],
        app: FastAPI,
        receiver: MakeReceiver,
        make_key: MakeKey,
    ) -> None:
        """The portal's key may touch the first ad account only: its subscription never receives the second's
        events; once granted the second, it receives the second's events from then on. The admin's subscription
        receives both."""
        await register_other_advertiser(client)
        portal = await make_key("portal", advertiser_ids=[ADVERTISER_ID])
        portals_hook, admins_hook = receiver(), receiver()
        portals = await subscribe(portal.client, portals_hook.url)
        admins = await subscribe(client, admins_hook.url)
        mine = await record_events(app, ADVERTISER_ID, [APPLIED])
        others = await record_events(app, OTHER_ADVERTISER_ID, [APPLIED, LINKED])

        for subscription in (portals, admins):
            await run_delivery(app, subscription["id"])

        assert portals_hook.ids() == mine
        assert admins_hook.ids() == mine + others
        bodies = [json.loads(received.body) for received in portals_hook.received]
        assert {body["data"]["advertiser_id"] for body in bodies} == {ADVERTISER_ID}
        assert [item["event_id"] for item in await deliveries(portal.client, portals["id"])] == mine

        granted = await client.patch(
            f"/v1/api-keys/{portal.id}", json={"advertiser_ids": [ADVERTISER_ID, OTHER_ADVERTISER_ID]}
        )
        assert granted.status_code == 200, granted.text
        later = await record_events(app, OTHER_ADVERTISER_ID, [REMOVED])
        await run_delivery(app, portals["id"])
        assert portals_hook.ids() == mine + later  # the earlier ones were passed by when it could not see them

    async def test_a_revoked_keys_subscriptions_receive_nothing_and_a_deleted_keys_are_gone(
        self,
        client: httpx.AsyncClient,
        advertiser: dict[str, Any],
        app: FastAPI,
        receiver: MakeReceiver,
        make_key: MakeKey,
        db: AsyncEngine,
    ) -> None:
        hook = receiver()
        portal = await make_key("portal", advertiser_ids=[ADVERTISER_ID])
        subscription = await subscribe(portal.client, hook.url)
        delivered = await record_events(app, ADVERTISER_ID, [APPLIED])
        await run_delivery(app, subscription["id"])
        assert hook.ids() == delivered

        assert (await client.delete(f"/v1/api-keys/{portal.id}")).status_code == 200
        await record_events(app, ADVERTISER_ID, [LINKED])

        assert await _subscription_ids(app) == []  # not even looked at
        assert (await run_delivery(app, subscription["id"])).sent == 0
        assert hook.ids() == delivered

        async with db.begin() as connection:  # keys are only ever revoked; a key deleted takes its subscriptions
            await connection.execute(text("DELETE FROM api_keys WHERE id = :id"), {"id": portal.id})
        assert (await client.get(f"/v1/webhooks/{subscription['id']}")).status_code == 404

    async def test_a_key_that_lost_the_read_scope_receives_nothing_until_it_has_it_again(
        self,
        client: httpx.AsyncClient,
        advertiser: dict[str, Any],
        app: FastAPI,
        receiver: MakeReceiver,
        make_key: MakeKey,
    ) -> None:
        hook = receiver()
        portal = await make_key("portal", advertiser_ids=[ADVERTISER_ID])
        subscription = await subscribe(portal.client, hook.url)
        assert (await client.patch(f"/v1/api-keys/{portal.id}", json={"scopes": ["write"]})).status_code == 200
        while_writing_only = await record_events(app, ADVERTISER_ID, [APPLIED])

        assert await _subscription_ids(app) == []
        assert (await run_delivery(app, subscription["id"])).sent == 0

        assert (await client.patch(f"/v1/api-keys/{portal.id}", json={"scopes": ["read"]})).status_code == 200
        await run_delivery(app, subscription["id"])
        assert hook.ids() == while_writing_only  # handed out now, when the key may read them


class TestIsolation:
    async def test_a_receiver_that_hangs_does_not_delay_another_subscription(
        self, client: httpx.AsyncClient, advertiser: dict[str, Any], app: FastAPI, receiver: MakeReceiver
    ) -> None:
        """The dead receiver holds its request past the timeout, and the other refuses connections; the live
        subscription's runs, going at the same time (as the worker runs jobs), deliver at once, every time."""
        dead = receiver(delay=TIMEOUT_SECONDS + 3)
        live = receiver()
        hung = await subscribe(client, dead.url)
        refused = await subscribe(client, refusing_url())
        alive = await subscribe(client, live.url)
        events = await record_events(app, ADVERTISER_ID, [APPLIED, LINKED, REMOVED])

        started = time.monotonic()
        outcomes = await asyncio.gather(
            run_delivery(app, hung["id"]), run_delivery(app, refused["id"]), run_delivery(app, alive["id"])
        )

        assert [outcome.delivered for outcome in outcomes] == [0, 0, 3]
        assert live.ids() == events
        assert all(received.at - started < TIMEOUT_SECONDS / 2 for received in live.received)
        assert dead.ids() == events[:1]  # the first attempt, which timed out
        assert {item["state"] for item in await deliveries(client, alive["id"])} == {"delivered"}

    async def test_the_dispatcher_finds_the_subscriptions_with_work_only(
        self, client: httpx.AsyncClient, advertiser: dict[str, Any], app: FastAPI, receiver: MakeReceiver
    ) -> None:
        hook = receiver()
        idle = await subscribe(client, hook.url, ["post.deletion_safe"])
        busy = await subscribe(client, hook.url)
        assert await _subscription_ids(app) == []  # both start at the head

        await record_events(app, ADVERTISER_ID, [APPLIED])
        # Both cursors are behind the head: the first run of each finds out whether it has anything to receive.
        assert sorted(await _subscription_ids(app)) == sorted(uuid.UUID(s["id"]) for s in (idle, busy))
        for subscription in (idle, busy):
            await run_delivery(app, subscription["id"])
        assert await _subscription_ids(app) == []  # the idle one's cursor moved to the head too
        assert await deliveries(client, idle["id"]) == []
        assert len(hook.received) == 1
