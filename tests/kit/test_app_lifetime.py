"""An app that has stopped is freed: nothing process-wide keeps it.

FastAPI caches facts about endpoint and dependency functions in process-wide caches keyed by the function. An
endpoint written as a closure over the app (/docs was one) made every app ever built reachable from that cache.
A process builds one app, but the test suite builds hundreds: they piled up to gigabytes, and the garbage
collector's pauses grew to several seconds, long enough to run out a TikTok deadline in an unrelated test.
"""

from __future__ import annotations

import gc
import weakref

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from app.kit.settings import Settings
from dev.sandbox.app import create_sandbox_app
from tests.conftest import running


async def _build_use_and_stop(settings: Settings) -> weakref.ref[object]:
    async with running(settings, httpx.ASGITransport(app=create_sandbox_app())) as started:
        client = started.client
        # Every kind of route: the docs, the document, health, an authenticated read, a write and a 404.
        for path in ("/docs", "/openapi.json", "/healthz", "/readyz", "/v1/advertisers", "/v1/nothing-here"):
            assert (await client.get(path)).status_code in (200, 404)
        registered = await client.post(
            "/v1/advertisers", json={"tiktok_advertiser_id": "7000000000000000009", "access_token": "t" * 20}
        )
        assert registered.status_code == 201, registered.text
        application = started.app
    return weakref.ref(application)


async def test_a_stopped_app_is_freed(settings: Settings, db: AsyncEngine) -> None:
    stopped = await _build_use_and_stop(settings)
    gc.collect()
    assert stopped() is None, [type(r).__name__ for r in gc.get_referrers(stopped())]


def _collected_by_the_cycle_collector(thing: object) -> bool:
    return any(tracked is thing for tracked in gc.get_objects())


async def test_what_an_app_built_to_start_is_frozen_while_it_serves(settings: Settings, db: AsyncEngine) -> None:
    """Full collections skip what starting built (app/kit/heap.py); what a request makes is collected as before."""
    async with running(settings, httpx.ASGITransport(app=create_sandbox_app())) as started:
        assert not _collected_by_the_cycle_collector(started.app.router)
        assert not _collected_by_the_cycle_collector(started.app.state.engine)
        made_by_a_request = {"answer": (await started.client.get("/healthz")).json()}
        assert _collected_by_the_cycle_collector(made_by_a_request)
    assert gc.get_freeze_count() == 0
    assert _collected_by_the_cycle_collector(started.app.router)
