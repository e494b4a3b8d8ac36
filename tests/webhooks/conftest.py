"""Fixtures of the webhook tests: receivers over real HTTP on loopback, keys, events, and runs of the delivery.

Receivers are small Starlette apps served by uvicorn on a loopback port (tests/conftest.served_on_loopback), in
a thread of their own: deliveries reach them over real HTTP, as they would reach another system.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from app.advertisers.models import Advertiser
from app.events import service as events
from app.events.models import EventType
from app.kit import clock
from app.kit.resources import Resources
from app.kit.settings import Settings
from app.webhooks import delivery
from tests.conftest import ADVERTISER_TOKEN, served_on_loopback, settings_for

OTHER_ADVERTISER_ID = "7000000000000000002"
# Short, so that a receiver that hangs fails its attempt quickly.
TIMEOUT_SECONDS = 1.0


@pytest.fixture
def settings(database_url: str) -> Settings:
    return settings_for(database_url, webhook_timeout_seconds=TIMEOUT_SECONDS)


# --- receivers ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float  # time.monotonic() when it arrived

    @property
    def webhook_id(self) -> str:
        return self.headers["webhook-id"]


@dataclass
class Receiver:
    """Records every request; answers `statuses` in turn (the last one ever after), or what `answer` says for a
    request; `delay` seconds after recording it."""

    base: str = ""  # http://127.0.0.1:<port>
    url: str = ""  # base + /hook
    statuses: list[int] = field(default_factory=lambda: [200])
    answer: Callable[[Received], int] | None = None
    delay: float = 0.0
    received: list[Received] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def app(self) -> Starlette:
        async def handle(request: Request) -> Response:
            body = await request.body()
            arrival = Received(request.url.path, dict(request.headers), body, time.monotonic())
            with self._lock:
                self.received.append(arrival)
                index = len(self.received) - 1
            if self.delay:
                await asyncio.sleep(self.delay)
            if self.answer is not None:
                status = self.answer(arrival)
            else:
                status = self.statuses[min(index, len(self.statuses) - 1)]
            headers = {"Location": "https://elsewhere.invalid/"} if 300 <= status < 400 else None
            return Response(status_code=status, headers=headers)

        return Starlette(routes=[Route("/{path:path}", handle, methods=["POST"])])

    def ids(self, path: str | None = None) -> list[str]:
        with self._lock:
            return [item.webhook_id for item in self.received if path is None or item.path == path]


MakeReceiver = Callable[..., Receiver]


@pytest.fixture
def receiver() -> Iterator[MakeReceiver]:
    """`receiver(statuses=[500, 200], delay=...)`: a receiver served on loopback until the test ends."""
    with ExitStack() as stack:

        def make(**options: Any) -> Receiver:
            made = Receiver(**options)
            made.base = stack.enter_context(served_on_loopback(made.app()))
            made.url = made.base + "/hook"
            return made

        yield make


def refusing_url() -> str:
    """A loopback URL where nothing listens: every connection is refused."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/hook"


# --- keys, ad accounts, subscriptions, events ---------------------------------------------------------------


async def register_other_advertiser(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/advertisers", json={"tiktok_advertiser_id": OTHER_ADVERTISER_ID, "access_token": ADVERTISER_TOKEN}
    )
    assert response.status_code == 201, response.text


async def subscribe(client: httpx.AsyncClient, url: str, event_types: list[str] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"url": url}
    if event_types is not None:
        body["event_types"] = event_types
    response = await client.post("/v1/webhooks", json=body)
    assert response.status_code == 201, response.text
    subscription: dict[str, Any] = response.json()
    return subscription


async def record_events(
    app: FastAPI, tiktok_advertiser_id: str, types: list[EventType], *, item_id: str = "7380112233445566001"
) -> list[str]:
    """The events, written in one transaction as a state change would write them; their ids, in order."""
    async with app.state.sessionmaker.begin() as session:
        advertiser_id = (
            await session.execute(select(Advertiser.id).where(Advertiser.tiktok_advertiser_id == tiktok_advertiser_id))
        ).scalar_one()
        ids = []
        for number, event_type in enumerate(types):
            event_id = await events.record(
                session,
                event_type,
                advertiser_id=advertiser_id,
                tiktok_advertiser_id=tiktok_advertiser_id,
                now=clock.utcnow(),
                data={"number": number},
                item_id=item_id,
            )
            ids.append(str(event_id))
    return ids


async def run_delivery(app: FastAPI, subscription_id: str, **options: Any) -> delivery.RunOutcome:
    """One `deliver` run for the subscription, as the job runs it, with the app's resources."""
    resources: Resources = app.state.resources
    return await delivery.deliver(
        resources.sessionmaker,
        resources.secret_box,
        resources.webhook_http,
        uuid.UUID(subscription_id),
        timeout_seconds=resources.settings.webhook_timeout_seconds,
        **options,
    )


async def deliveries(client: httpx.AsyncClient, subscription_id: str, **params: Any) -> list[dict[str, Any]]:
    response = await client.get(f"/v1/webhooks/{subscription_id}/deliveries", params=params)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items
