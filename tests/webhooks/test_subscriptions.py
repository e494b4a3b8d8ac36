"""Webhook subscriptions over HTTP: subscribing (the secret shown once, stored encrypted), reading, listing,
deleting, the deliveries list, which key sees which subscription, and which URLs are refused."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.events.models import EventType
from app.kit.crypto import SecretBox
from tests.api.helpers import assert_problem
from tests.conftest import ADVERTISER_ID, ENCRYPTION_KEY, Key
from tests.webhooks.conftest import deliveries, record_events, run_delivery, subscribe

MakeKey = Callable[..., Awaitable[Key]]
URL = "https://hooks.example.com/spark-ads"


class TestSubscribing:
    async def test_the_answer_holds_the_secret_shown_once_and_stored_encrypted(
        self, client: httpx.AsyncClient, db: AsyncEngine
    ) -> None:
        response = await client.post(
            "/v1/webhooks", json={"url": URL, "event_types": ["authorization.applied", "ad.linked"]}
        )

        assert response.status_code == 201, response.text
        created = response.json()
        assert response.headers["location"] == f"/v1/webhooks/{created['id']}"
        assert created["url"] == URL
        assert created["event_types"] == ["authorization.applied", "ad.linked"]
        # The Standard Webhooks format: whsec_ and the base64 of 24 random bytes.
        secret = created["secret"]
        assert secret.startswith("whsec_")
        assert len(base64.b64decode(secret.removeprefix("whsec_"), validate=True)) == 24

        # Shown only in that answer: neither reading it nor listing shows it again.
        read = await client.get(response.headers["location"])
        assert read.status_code == 200, read.text
        assert "secret" not in read.json()
        assert {key: value for key, value in created.items() if key != "secret"} == read.json()
        listed = (await client.get("/v1/webhooks")).json()
        assert [item["id"] for item in listed["items"]] == [created["id"]]
        assert secret not in str(listed)

        # Stored encrypted under ENCRYPTION_KEYS, never in clear.
        async with db.connect() as connection:
            stored = (await connection.execute(text("SELECT secret_encrypted FROM webhook_subscriptions"))).scalar_one()
            dump = " ".join((await connection.execute(text("SELECT t::text FROM webhook_subscriptions t"))).scalars())
        assert SecretBox([ENCRYPTION_KEY]).decrypt(bytes(stored)) == secret
        assert secret not in dump
        assert secret.encode().hex() not in dump

    async def test_each_subscription_has_a_secret_of_its_own(self, client: httpx.AsyncClient) -> None:
        first = await subscribe(client, URL)
        second = await subscribe(client, URL)
        assert first["secret"] != second["secret"]

    async def test_no_event_types_is_every_type_and_repeats_are_dropped(self, client: httpx.AsyncClient) -> None:
        assert (await subscribe(client, URL))["event_types"] == []
        assert (await subscribe(client, URL, ["ad.linked", "ad.linked", "ad.removed"]))["event_types"] == [
            "ad.linked",
            "ad.removed",
        ]

    @pytest.mark.parametrize(
        "body",
        [
            {"url": URL, "event_types": ["authorization.unknown"]},  # not an EventType
            {"url": URL, "event_types": "ad.linked"},  # not a list
            {"url": URL, "event_types": [1]},
            {"url": 5},
            {"event_types": []},  # no url
            {"url": URL, "secret": "whsec_mine"},  # unknown field
        ],
    )
    async def test_a_body_off_the_schema_is_request_invalid(
        self, client: httpx.AsyncClient, body: dict[str, Any], db: AsyncEngine
    ) -> None:
        assert_problem(await client.post("/v1/webhooks", json=body), 422, "request_invalid")
        assert (await client.get("/v1/webhooks")).json()["items"] == []

    @pytest.mark.parametrize(
        "url",
        [
            "",
            "hooks.example.com/spark",  # not absolute
            "/v1/hook",
            "ftp://hooks.example.com/spark",  # not http(s)
            "javascript:alert(1)",
            "http://",  # no host
            "http:///path",
            "https://user:password@hooks.example.com/spark",  # userinfo
            "https://token@hooks.example.com/spark",
            "https://hooks.example.com/spark#section",  # fragment
            "https://hooks.example.com/spark#",
            "https://hooks.example.com:99999/spark",  # no such port
            "https://hooks.example.com:port/spark",
            "https://hooks.example.com/a b",  # not visible ASCII
            "https://hooks.example.com/\x00",
            "https://hooks.example.com/\r\nX-Injected: 1",
            "https://hooks.example.com/café",
            "https://[::1/spark",  # cannot be parsed
            "https://hooks.example.com/" + "a" * 1975,  # 2,001 characters
        ],
    )
    async def test_a_url_deliveries_cannot_go_to_is_webhook_url_invalid(
        self, client: httpx.AsyncClient, url: str
    ) -> None:
        problem = assert_problem(await client.post("/v1/webhooks", json={"url": url}), 422, "webhook_url_invalid")
        assert url not in problem["detail"] or not url
        assert (await client.get("/v1/webhooks")).json()["items"] == []

    @pytest.mark.parametrize(
        "url",
        [
            "https://hooks.example.com/spark-ads?team=growth&v=1",
            "http://127.0.0.1:8080/hook",
            "HTTPS://HOOKS.EXAMPLE.COM/Spark",
            "https://[2001:db8::1]:8443/hook",
            "https://hooks.example.com/path/with/@sign",  # an @ in the path is not userinfo
            "https://hooks.example.com/" + "a" * 1974,  # 2,000 characters
        ],
    )
    async def test_an_absolute_http_url_with_a_host_is_accepted(self, client: httpx.AsyncClient, url: str) -> None:
        assert (await subscribe(client, url))["url"] == url

    async def test_a_key_that_may_not_read_cannot_subscribe(self, make_key: MakeKey) -> None:
        writer = await make_key("writer", scopes=["write"])
        response = await writer.client.post("/v1/webhooks", json={"url": URL})
        problem = assert_problem(response, 403, "scope_required")
        assert problem["scope"] == "read"

    async def test_a_read_only_key_cannot_subscribe_nor_delete(
        self, client: httpx.AsyncClient, make_key: MakeKey
    ) -> None:
        reader = await make_key("reader", scopes=["read"])
        assert_problem(await reader.client.post("/v1/webhooks", json={"url": URL}), 403, "scope_required")
        mine = await subscribe(client, URL)
        assert_problem(await reader.client.delete(f"/v1/webhooks/{mine['id']}"), 403, "scope_required")


class TestReadingAndDeleting:
    async def test_listed_oldest_first_a_page_at_a_time(self, client: httpx.AsyncClient) -> None:
        made = [(await subscribe(client, f"{URL}/{number}"))["id"] for number in range(5)]
        listed: list[str] = []
        cursor = None
        while True:
            params: dict[str, Any] = {"limit": 2} | ({"cursor": cursor} if cursor else {})
            page = await client.get("/v1/webhooks", params=params)
            assert page.status_code == 200, page.text
            assert len(page.json()["items"]) <= 2
            listed.extend(item["id"] for item in page.json()["items"])
            cursor = page.json()["next_cursor"]
            if cursor is None:
                break
        assert listed == made
        assert_problem(await client.get("/v1/webhooks", params={"cursor": "forged"}), 422, "cursor_invalid")

    async def test_deleted_it_is_gone_with_its_deliveries(
        self, client: httpx.AsyncClient, advertiser: dict[str, Any], app: FastAPI, db: AsyncEngine
    ) -> None:
        subscription = await subscribe(client, "http://127.0.0.1:9/nobody-listens")
        await record_events(app, ADVERTISER_ID, [EventType.authorization_applied])
        await run_delivery(app, subscription["id"])  # the event is handed out; its attempt fails
        assert len(await deliveries(client, subscription["id"])) == 1

        response = await client.delete(f"/v1/webhooks/{subscription['id']}")

        assert response.status_code == 204, response.text
        assert response.content == b""
        assert_problem(await client.get(f"/v1/webhooks/{subscription['id']}"), 404, "webhook_not_found")
        assert_problem(await client.get(f"/v1/webhooks/{subscription['id']}/deliveries"), 404, "webhook_not_found")
        assert_problem(await client.delete(f"/v1/webhooks/{subscription['id']}"), 404, "webhook_not_found")
        async with db.connect() as connection:
            assert (await connection.execute(text("SELECT count(*) FROM webhook_deliveries"))).scalar_one() == 0

    async def test_an_unknown_id_is_not_found_and_a_malformed_one_invalid(self, client: httpx.AsyncClient) -> None:
        unknown = uuid.uuid4()
        assert_problem(await client.get(f"/v1/webhooks/{unknown}"), 404, "webhook_not_found")
        assert_problem(await client.delete(f"/v1/webhooks/{unknown}"), 404, "webhook_not_found")
        assert_problem(await client.get(f"/v1/webhooks/{unknown}/deliveries"), 404, "webhook_not_found")
        assert_problem(await client.get("/v1/webhooks/not-a-uuid"), 422, "request_invalid")


class TestEachKeySeesItsOwn:
    async def test_another_key_gets_404_and_an_admin_key_sees_every_one(
        self, client: httpx.AsyncClient, make_key: MakeKey
    ) -> None:
        """A key sees only the subscriptions it made, exactly as if the others did not exist; an admin key sees
        every one."""
        portal = await make_key("portal", advertiser_ids=[ADVERTISER_ID])
        billing = await make_key("billing")
        admins = await subscribe(client, URL)
        portals = await subscribe(portal.client, f"{URL}/portal")
        assert portals["api_key_id"] == portal.id

        for other, subscription in ((portal, admins), (billing, portals), (billing, admins)):
            path = f"/v1/webhooks/{subscription['id']}"
            assert_problem(await other.client.get(path), 404, "webhook_not_found")
            assert_problem(await other.client.get(f"{path}/deliveries"), 404, "webhook_not_found")
            assert_problem(await other.client.delete(path), 404, "webhook_not_found")

        assert [item["id"] for item in (await portal.client.get("/v1/webhooks")).json()["items"]] == [portals["id"]]
        assert (await billing.client.get("/v1/webhooks")).json()["items"] == []
        everyone = [item["id"] for item in (await client.get("/v1/webhooks")).json()["items"]]
        assert everyone == [admins["id"], portals["id"]]
        assert (await client.get(f"/v1/webhooks/{portals['id']}")).status_code == 200
        # Still there after the others' attempts: the admin may delete the portal's.
        assert (await client.delete(f"/v1/webhooks/{portals['id']}")).status_code == 204


class TestDeliveriesList:
    async def test_newest_first_filtered_by_state_a_page_at_a_time(
        self, client: httpx.AsyncClient, advertiser: dict[str, Any], app: FastAPI
    ) -> None:
        subscription = await subscribe(client, "http://127.0.0.1:9/nobody-listens")
        types = [EventType.authorization_applied, EventType.ad_linked, EventType.ad_removed]
        event_ids = await record_events(app, ADVERTISER_ID, types)
        await run_delivery(app, subscription["id"])  # all three handed out; the first attempt fails

        items = await deliveries(client, subscription["id"])
        assert [item["event_id"] for item in items] == event_ids[::-1]
        assert [item["event_type"] for item in items] == [t.value for t in types[::-1]]
        oldest = items[-1]
        assert oldest["state"] == "pending"
        assert oldest["attempts"] == 1
        assert oldest["last_status_code"] is None
        assert oldest["last_error"].startswith("request failed")
        assert oldest["last_attempt_at"] is not None
        assert oldest["delivered_at"] is None
        assert oldest["next_attempt_at"] > oldest["last_attempt_at"]
        assert [item["attempts"] for item in items[:2]] == [0, 0]  # waiting behind the first, in order
        assert set(items[0]) == {
            "id",
            "event_id",
            "event_type",
            "state",
            "attempts",
            "next_attempt_at",
            "last_attempt_at",
            "last_status_code",
            "last_error",
            "delivered_at",
            "created_at",
        }

        paged: list[str] = []
        cursor = None
        while True:
            params: dict[str, Any] = {"limit": 2} | ({"cursor": cursor} if cursor else {})
            page = (await client.get(f"/v1/webhooks/{subscription['id']}/deliveries", params=params)).json()
            paged.extend(item["event_id"] for item in page["items"])
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert paged == event_ids[::-1]

        assert len(await deliveries(client, subscription["id"], state="pending")) == 3
        assert await deliveries(client, subscription["id"], state="delivered") == []
        assert await deliveries(client, subscription["id"], state="failed") == []
        response = await client.get(f"/v1/webhooks/{subscription['id']}/deliveries", params={"state": "lost"})
        assert_problem(response, 422, "request_invalid")

    async def test_a_cursor_of_another_list_is_refused(self, client: httpx.AsyncClient) -> None:
        subscription = await subscribe(client, URL)
        for number in range(3):
            await subscribe(client, f"{URL}/{number}")
        other_list_cursor = (await client.get("/v1/webhooks", params={"limit": 1})).json()["next_cursor"]
        response = await client.get(
            f"/v1/webhooks/{subscription['id']}/deliveries", params={"cursor": other_list_cursor}
        )
        assert_problem(response, 422, "cursor_invalid")
