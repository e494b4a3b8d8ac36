"""The API-key cache (app/api_keys/cache.py) with two replicas on one database: what a replica read about a key is
used for at most API_KEY_CACHE_SECONDS, a change made anywhere reaches every replica by notification well before
that, and the replica that made a change never serves the old state."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from app.api_keys import cache, service
from app.api_keys.access import Caller
from app.kit.crypto import KeyHasher
from app.kit.settings import Settings
from tests.conftest import ADVERTISER_ID, ADVERTISER_TOKEN, MakeKey, running, settings_for

pytestmark = pytest.mark.asyncio


@asynccontextmanager
async def replica(settings: Settings, sandbox: Any, key: str) -> AsyncIterator[httpx.AsyncClient]:
    """Another replica of the service on the same database, and a client holding `key`."""
    async with running(settings, httpx.ASGITransport(app=sandbox)) as other:
        other.client.headers["Authorization"] = f"Bearer {key}"
        yield other.client


async def until(check: Callable[[], Awaitable[bool]], *, within: float) -> float:
    """Seconds until `check()` holds; fails if it does not within `within` seconds."""
    started = time.monotonic()
    while not await check():
        assert time.monotonic() - started < within, f"still not true after {within} s"
        await asyncio.sleep(0.02)
    return time.monotonic() - started


async def status_of(client: httpx.AsyncClient, path: str) -> int:
    return (await client.get(path)).status_code


async def test_a_revocation_reaches_the_other_replica_by_notification(
    client: httpx.AsyncClient, database_url: str, sandbox: Any, make_key: MakeKey
) -> None:
    """With a bound far longer than the wait, only the notification can explain the other replica's refusal."""
    key = await make_key("reader", scopes=["read"])
    async with replica(settings_for(database_url, api_key_cache_seconds=60), sandbox, key.value) as other:
        assert await status_of(other, "/v1/advertisers") == 200  # read, and now cached there
        assert (await client.delete(f"/v1/api-keys/{key.id}")).status_code == 200
        await until(lambda: _refused(other), within=10)


async def _refused(client: httpx.AsyncClient) -> bool:
    response = await client.get("/v1/advertisers")
    assert response.status_code in (200, 401), response.text
    return response.status_code == 401


async def test_without_notifications_the_time_bound_holds(
    client: httpx.AsyncClient, database_url: str, sandbox: Any, make_key: MakeKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A replica that hears nothing (its listener never runs) uses a revoked key until its entry is
    API_KEY_CACHE_SECONDS old, and not from then on. The cache's clock is moved by hand."""

    @asynccontextmanager
    async def deaf(_cache: cache.KeyCache, _url: str) -> AsyncIterator[None]:
        yield

    monkeypatch.setattr("app.main.key_cache_listening", deaf)
    key = await make_key("reader", scopes=["read"])
    bound = 5.0
    async with running(
        settings_for(database_url, api_key_cache_seconds=bound), httpx.ASGITransport(app=sandbox)
    ) as other:
        other.client.headers["Authorization"] = f"Bearer {key.value}"
        now = [1000.0]
        other.app.state.key_cache.clock = lambda: now[0]
        assert await status_of(other.client, "/v1/advertisers") == 200  # read at 1000, and kept
        assert (await client.delete(f"/v1/api-keys/{key.id}")).status_code == 200
        assert await status_of(other.client, "/v1/advertisers") == 200  # the cache answers, as the bound allows
        now[0] = 1000.0 + bound - 0.001
        assert await status_of(other.client, "/v1/advertisers") == 200
        now[0] = 1000.0 + bound
        assert await status_of(other.client, "/v1/advertisers") == 401


async def test_the_replica_that_revokes_refuses_the_key_at_once(
    client: httpx.AsyncClient, make_key: MakeKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The commit itself forgets the key in this process: no waiting for the notification to come back."""
    key = await make_key("reader", scopes=["read"])
    assert (await key.client.get("/v1/advertisers")).status_code == 200
    monkeypatch.setattr(cache, "_on_notification", lambda _cache, _payload: None)  # the notification never arrives
    assert (await client.delete(f"/v1/api-keys/{key.id}")).status_code == 200
    assert (await key.client.get("/v1/advertisers")).status_code == 401


async def test_scopes_and_ad_accounts_taken_away_apply_on_the_other_replica(
    client: httpx.AsyncClient, database_url: str, sandbox: Any, make_key: MakeKey
) -> None:
    key = await make_key("writer", scopes=["read", "write"], advertiser_ids=[ADVERTISER_ID])
    async with replica(settings_for(database_url, api_key_cache_seconds=60), sandbox, key.value) as other:
        registered = await other.post(
            "/v1/advertisers", json={"tiktok_advertiser_id": ADVERTISER_ID, "access_token": ADVERTISER_TOKEN}
        )
        assert registered.status_code == 201, registered.text
        assert await status_of(other, f"/v1/advertisers/{ADVERTISER_ID}") == 200
        changed = await client.patch(f"/v1/api-keys/{key.id}", json={"advertiser_ids": []})
        assert changed.status_code == 200, changed.text
        await until(lambda: _gone(other, f"/v1/advertisers/{ADVERTISER_ID}"), within=10)
        changed = await client.patch(f"/v1/api-keys/{key.id}", json={"scopes": ["write"]})
        assert changed.status_code == 200, changed.text
        await until(lambda: _forbidden(other, "/v1/advertisers"), within=10)


async def _gone(client: httpx.AsyncClient, path: str) -> bool:
    return await status_of(client, path) == 404


async def _forbidden(client: httpx.AsyncClient, path: str) -> bool:
    return await status_of(client, path) == 403


async def test_an_ad_account_granted_on_one_replica_is_reachable_on_the_other(
    database_url: str, sandbox: Any, make_key: MakeKey
) -> None:
    """Registering grants the account to the key: the other replica, which cached the key before, lets it in."""
    key = await make_key("writer", scopes=["read", "write"])
    settings = settings_for(database_url, api_key_cache_seconds=60)
    async with (
        replica(settings, sandbox, key.value) as first,
        replica(settings, sandbox, key.value) as second,
    ):
        assert await status_of(second, f"/v1/advertisers/{ADVERTISER_ID}") == 404  # cached there without it
        registered = await first.post(
            "/v1/advertisers", json={"tiktok_advertiser_id": ADVERTISER_ID, "access_token": ADVERTISER_TOKEN}
        )
        assert registered.status_code == 201, registered.text
        await until(lambda: _found(second, f"/v1/advertisers/{ADVERTISER_ID}"), within=10)


async def _found(client: httpx.AsyncClient, path: str) -> bool:
    return await status_of(client, path) == 200


async def test_a_lost_listener_reconnects_and_forgets_what_it_may_have_missed(
    client: httpx.AsyncClient, database_url: str, sandbox: Any, make_key: MakeKey, db: AsyncEngine
) -> None:
    key = await make_key("reader", scopes=["read"])
    async with replica(settings_for(database_url, api_key_cache_seconds=60), sandbox, key.value) as other:
        assert await status_of(other, "/v1/advertisers") == 200

        async def listeners() -> int:
            async with db.connect() as connection:
                found = await connection.execute(
                    text("SELECT count(*) FROM pg_stat_activity WHERE application_name = :name"),
                    {"name": cache.LISTENER_NAME},
                )
                return int(found.scalar_one())

        async def both_listening() -> bool:
            return await listeners() == 2

        await until(both_listening, within=10)
        async with db.begin() as connection:  # the connections die, as when Postgres restarts
            await connection.execute(
                text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = :name"),
                {"name": cache.LISTENER_NAME},
            )
        assert (await client.delete(f"/v1/api-keys/{key.id}")).status_code == 200
        await until(lambda: _refused(other), within=10)
        await until(both_listening, within=10)


async def test_keys_in_the_cache_are_forgotten_when_the_tables_are_truncated(
    client: httpx.AsyncClient, database_url: str, sandbox: Any, make_key: MakeKey, db: AsyncEngine
) -> None:
    key = await make_key("reader", scopes=["read"])
    async with replica(settings_for(database_url, api_key_cache_seconds=60), sandbox, key.value) as other:
        assert await status_of(other, "/v1/advertisers") == 200
        async with db.begin() as connection:
            await connection.execute(text("TRUNCATE api_keys CASCADE"))
        await until(lambda: _refused(other), within=10)


async def test_requests_that_miss_the_same_key_together_read_it_once(
    app: FastAPI, make_key: MakeKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under load an entry expires with dozens of requests in flight: one read serves them all."""
    key = await make_key("reader", scopes=["read"])
    reads = slowed_reads(monkeypatch, key.value)
    app.state.key_cache.forget(None)
    answers = await asyncio.gather(*(key.client.get("/v1/advertisers") for _ in range(20)))
    assert [answer.status_code for answer in answers] == [200] * 20
    assert reads == [key.value]
    assert (await key.client.get("/v1/advertisers")).status_code == 200
    assert reads == [key.value], "kept after the shared read"


async def test_a_request_after_a_revocation_does_not_wait_for_a_read_begun_before_it(
    app: FastAPI, client: httpx.AsyncClient, make_key: MakeKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = await make_key("reader", scopes=["read"])
    app.state.key_cache.forget(None)
    gate = asyncio.Event()
    reads = slowed_reads(monkeypatch, key.value, gate=gate)
    before = asyncio.create_task(key.client.get("/v1/advertisers"))
    await until(lambda: _are(reads, 1), within=10)
    assert (await client.delete(f"/v1/api-keys/{key.id}")).status_code == 200
    after = asyncio.create_task(key.client.get("/v1/advertisers"))
    await until(lambda: _are(reads, 2), within=10)  # its own read, not the one under way
    gate.set()
    assert (await after).status_code == 401
    assert (await before).status_code == 200  # read before the revocation committed, as without a cache
    assert (await key.client.get("/v1/advertisers")).status_code == 401, "what was read before is not kept"


async def _are(reads: list[str], count: int) -> bool:
    return len(reads) >= count


def slowed_reads(monkeypatch: pytest.MonkeyPatch, value: str, *, gate: asyncio.Event | None = None) -> list[str]:
    """Reads of the key `value` from Postgres, counted once done; a read that found it answers only once `gate` is
    set (the first read; else after 50 ms), so that other requests come while it is under way."""
    reads: list[str] = []
    authenticate = service.authenticate

    async def slowed(session: AsyncSession, hasher: KeyHasher, *, key: str | None) -> Caller:
        try:
            caller = await authenticate(session, hasher, key=key)
        finally:
            if key == value:
                reads.append(key)
        if key == value:
            if gate is None:
                await asyncio.sleep(0.05)
            elif len(reads) == 1:
                await gate.wait()
        return caller

    monkeypatch.setattr(service, "authenticate", slowed)
    return reads
