"""A fixed pool (DATABASE_POOL_OVERFLOW=0, app/kit/db.py): more concurrent requests wait for a connection rather
than each opening one. That is safe only because no request holds two connections at once; one that did would
deadlock a pool of one on itself. So every kind of request here runs on a pool of one connection and no overflow,
where a request waiting for a second connection would be answered 503 after the pool's timeout."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from sqlalchemy import text

from app.kit.settings import Settings
from tests.api.helpers import apply, assert_problem
from tests.conftest import ADVERTISER_ID, ADVERTISER_TOKEN

CODE = "#SBX+video/30d="
OTHER_CODE = "#SBX+video/60d="
BATCH_CODES = ("#SBX+video/365d=", "#SBX+video/30d-b=")
DUET = "#SBX+duet/secondary="
DUET_ORIGINAL = "#SBX+duet/original="
ACCOUNT = f"/v1/advertisers/{ADVERTISER_ID}"


def _one_connection(settings: Settings) -> Settings:
    # Two seconds: long enough for any request here to be served, short enough that a wait for a second
    # connection fails the test quickly instead of hanging it.
    return settings.model_copy(
        update={"database_pool_size": 1, "database_pool_overflow": 0, "database_pool_timeout_seconds": 2.0}
    )


def _ok(response: httpx.Response, *statuses: int) -> dict[str, Any]:
    assert response.status_code in (statuses or (200,)), f"{response.request.method} {response.url}: {response.text}"
    body: dict[str, Any] = response.json() if response.content else {}
    return body


async def test_every_kind_of_request_is_served_on_a_pool_of_one_connection(
    service: Any, settings: Settings, sandbox: Any
) -> None:
    started = await service(httpx.ASGITransport(app=sandbox), _one_connection(settings))  # registers: a write
    client = started.client
    assert started.app.state.engine.pool.size() == 1

    # Intake: one code (with an Idempotency-Key, then its replay), a Duet with its original, a batch.
    once = {"Idempotency-Key": "pool-of-one"}
    created = _ok(await client.post(f"{ACCOUNT}/authorizations", json={"auth_code": CODE}, headers=once), 201)
    replayed = await client.post(f"{ACCOUNT}/authorizations", json={"auth_code": CODE}, headers=once)
    assert replayed.headers.get("Idempotent-Replayed") == "true"
    _ok(await apply(client, DUET, DUET_ORIGINAL), 201)
    batch = _ok(
        await client.post(f"{ACCOUNT}/authorizations/batch", json={"items": [{"auth_code": c} for c in BATCH_CODES]}),
        200,
        201,
        207,
    )
    assert [result["outcome"] for result in batch["results"]] == ["created"] * len(BATCH_CODES)
    authorization_id = created["id"]

    # Reads, the hot paths among them.
    _ok(await client.get(f"/v1/authorizations/{authorization_id}"))
    _ok(await client.get(f"{ACCOUNT}/authorizations", params={"limit": 2}))
    _ok(await client.get(f"{ACCOUNT}/spark-ads-quota"))
    _ok(await client.get(f"/v1/authorizations/{authorization_id}/diagnosis"))
    _ok(await client.get("/v1/events"))

    # Ads, the verdict (confirmed with TikTok too), refresh, un-authorizing.
    ad = {"ad_id": "1800000000000000001", "campaign_type": "STANDARD", "only_show_as_ad": True}
    _ok(await client.post(f"/v1/authorizations/{authorization_id}/ads", json=ad), 201)
    item_id = created["item_id"]
    assert not _ok(await client.get(f"/v1/posts/{item_id}/deletion-safety"))["safe"]
    _ok(await client.get(f"/v1/posts/{item_id}/deletion-safety", params={"confirm": "true"}))
    _ok(await client.get(f"/v1/posts/{item_id}"))
    _ok(await client.post(f"/v1/authorizations/{authorization_id}/refresh"))
    _ok(await client.delete(f"/v1/authorizations/{authorization_id}/ads/{ad['ad_id']}"), 204)
    _ok(await client.post(f"/v1/authorizations/{authorization_id}/unauthorize"))

    # Keys, ad accounts and webhooks.
    key = _ok(await client.post("/v1/api-keys", json={"name": "pool", "admin": False}), 201)
    _ok(await client.delete(f"/v1/api-keys/{key['id']}"))
    _ok(await client.patch(ACCOUNT, json={"name": "Renamed"}))
    _ok(await client.put(f"{ACCOUNT}/access-token", json={"access_token": ADVERTISER_TOKEN}))
    _ok(await client.post("/v1/webhooks", json={"url": "https://receiver.example/hooks"}), 201)


async def test_concurrent_requests_wait_their_turn_for_the_one_connection(
    service: Any, settings: Settings, sandbox: Any
) -> None:
    client = (await service(httpx.ASGITransport(app=sandbox), _one_connection(settings))).client
    created = _ok(await apply(client, OTHER_CODE), 201)
    answers = await asyncio.gather(
        *(client.get(f"/v1/authorizations/{created['id']}") for _ in range(20)),
        *(client.get(f"{ACCOUNT}/spark-ads-quota") for _ in range(20)),
    )
    assert [answer.status_code for answer in answers] == [200] * 40


async def test_a_request_that_gets_no_connection_in_time_is_answered_503(
    service: Any, settings: Settings, sandbox: Any
) -> None:
    started = await service(httpx.ASGITransport(app=sandbox), _one_connection(settings))
    async with started.app.state.engine.connect() as holder:  # the pool's only connection, held
        await holder.execute(text("SELECT 1"))
        assert_problem(await started.client.get(f"{ACCOUNT}/spark-ads-quota"), 503, "database_unavailable")
    _ok(await started.client.get(f"{ACCOUNT}/spark-ads-quota"))  # and served again once it is free
