"""Fixtures for the TikTok adapter and its sandbox: no database, no network.

`tiktok` is a client wired to a fresh sandbox through httpx's ASGI transport; `scripted` builds a client whose
transport answers from a list (httpx.MockTransport), for single injected faults and for checking the exact
request on the wire. Every request either sends is recorded as it reaches the transport, so tests count the
attempts really made, not the ones stamina was told to allow.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import stamina
from starlette.applications import Starlette

from app.tiktok.client import TikTokClient
from app.tiktok.models import PostInfo
from dev.sandbox.app import create_sandbox_app

BASE_URL = "http://127.0.0.1:8001/open_api/"
ADVERTISER_ID = "7000000000000000001"
OTHER_ADVERTISER_ID = "7000000000000000002"
ACCESS_TOKEN = "act.sandbox-token-5f2c9e"
SANDBOX_EPOCH = datetime(2025, 5, 20, 11, 40, 50, tzinfo=UTC)
CODE = "#tXWm+UIbX/sLfLzb=="  # the shape of a real code: every character that needs URL-encoding


def post_data(**item_overrides: Any) -> dict[str, Any]:
    """`tt_video/info` data as TikTok documents it."""
    item: dict[str, Any] = {
        "item_id": "7380112233445566002",
        "item_type": "VIDEO",
        "text": "Unboxing the new trail shoes",
        "status": "HESITATE_RECOMMEND",
        "duet_original_item_id": None,
        "stitch_original_item_id": None,
        "is_multi_duet_stitch": False,
        "mentioned_item_ids": [],
    }
    item.update(item_overrides)
    return {
        "item_info": item,
        "user_info": {"identity_id": "7301000000000000001", "identity_type": "AUTH_CODE", "tiktok_name": "ana"},
        "video_info": {
            "duration": 45.0,
            "width": 720,
            "height": 1280,
            "poster_url": "https://p16-sign.example/poster.jpeg?x-expires=1",
            "preview_url": "https://v16-sign.example/preview.mp4?x-expires=1",
        },
        "auth_info": {
            "ad_auth_status": "AUTHORIZED",
            "auth_start_time": "2025-05-19 11:40:50",
            "auth_end_time": "2025-06-18 11:40:50",
        },
    }


OWN_ITEM_ID = "7380112233445567001"
OWN_IDENTITY_ID = "7302000000000000001"
BC_IDENTITY_ID = "7302000000000000002"
BC_ID = "7303000000000000001"


def identity_post_data(**detail_overrides: Any) -> dict[str, Any]:
    """`identity/video/info` data for one `item_id` as TikTok documents it: a TT_USER video, no auth_info."""
    detail: dict[str, Any] = {
        "item_id": OWN_ITEM_ID,
        "item_type": "VIDEO",
        "status": "ITEM_STATUS_HESITATE_RECOMMEND",
        "text": "Our spring collection, in one take",
        "video_info": {
            "duration": 24.0,
            "width": 720,
            "height": 1280,
            "poster_url": "https://p16-sign.example/poster.jpeg?x-expires=1",
            "signature": "0a1b2c",
        },
        "carousel_info": None,
    }
    detail.update(detail_overrides)
    return {"video_detail": detail}


async def own_info(
    client: TikTokClient,
    item_id: str = OWN_ITEM_ID,
    *,
    identity_type: str = "TT_USER",
    identity_id: str = OWN_IDENTITY_ID,
    bc_id: str | None = None,
    advertiser_id: str = ADVERTISER_ID,
    access_token: str = ACCESS_TOKEN,
) -> PostInfo:
    return await client.own_post_info(
        advertiser_id=advertiser_id,
        access_token=access_token,
        identity_type=identity_type,
        identity_id=identity_id,
        item_id=item_id,
        identity_authorized_bc_id=bc_id,
    )


async def info(client: TikTokClient, code: str = CODE) -> PostInfo:
    return await client.post_info(advertiser_id=ADVERTISER_ID, access_token=ACCESS_TOKEN, auth_code=code)


@pytest.fixture(autouse=True)
def _no_backoff_waits() -> Iterator[None]:
    """Retries without stamina's sleeps; `cap=True` keeps each client's own `max_attempts` in force.

    The context manager restores whatever mode was set before (off, unless an outer fixture turned it on),
    so no other test inherits testing mode.
    """
    with stamina.set_testing(True, attempts=10, cap=True):
        yield


@dataclass
class Clock:
    """The sandbox's clock, moved by hand."""

    now: datetime = SANDBOX_EPOCH

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def sandbox_app(clock: Clock) -> Starlette:
    return create_sandbox_app(slow_seconds=30.0, now=clock)


@pytest.fixture
def sent() -> list[httpx.Request]:
    """Every request the client under test sent, in order."""
    return []


class RecordingTransport(httpx.AsyncBaseTransport):
    """Passes each request on to `inner`, recording it as it reaches the transport: one per real attempt."""

    def __init__(self, inner: httpx.AsyncBaseTransport, sent: list[httpx.Request]) -> None:
        self._inner = inner
        self._sent = sent

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self._sent.append(request)
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


@pytest.fixture
async def sandbox_http(sandbox_app: Starlette, sent: list[httpx.Request]) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=RecordingTransport(httpx.ASGITransport(app=sandbox_app), sent)) as http:
        yield http


@pytest.fixture
def tiktok(sandbox_http: httpx.AsyncClient) -> TikTokClient:
    """The client against the sandbox, with the production defaults for attempts and a short deadline."""
    return TikTokClient(sandbox_http, base_url=BASE_URL, deadline_seconds=5.0, max_attempts=4)


def envelope(
    data: Any = None,
    *,
    code: int = 0,
    message: str = "OK",
    request_id: str = "202505201140500A1B2C3D",
    status: int = 200,
) -> httpx.Response:
    """TikTok's envelope as an httpx response (`data` defaults to `{}`)."""
    body = {"code": code, "message": message, "request_id": request_id, "data": {} if data is None else data}
    return httpx.Response(status, json=body)


Answer = httpx.Response | Exception


@dataclass
class Script:
    """A transport that answers from a list, last answer repeated, recording each request."""

    answers: list[Answer]
    requests: list[httpx.Request] = field(default_factory=list)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers[min(len(self.requests), len(self.answers)) - 1]
        if isinstance(answer, Exception):
            raise answer
        return answer

    def json_body(self, index: int = -1) -> Any:
        return json.loads(self.requests[index].content)


ScriptedFactory = Callable[..., tuple[TikTokClient, Script]]


@pytest.fixture
async def scripted() -> AsyncIterator[ScriptedFactory]:
    """`scripted(answer, ..., **client_options) -> (client, script)`."""
    opened: list[httpx.AsyncClient] = []

    def build(*answers: Answer, **options: Any) -> tuple[TikTokClient, Script]:
        script = Script(list(answers))
        http = httpx.AsyncClient(transport=httpx.MockTransport(script))
        opened.append(http)
        options.setdefault("base_url", BASE_URL)
        options.setdefault("deadline_seconds", 5.0)
        options.setdefault("max_attempts", 4)
        return TikTokClient(http, **options), script

    yield build
    for http in opened:
        await http.aclose()
