"""Small helpers the API tests share."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.conftest import ADVERTISER_ID


async def count_rows(db: AsyncEngine, table: str) -> int:
    async with db.connect() as connection:
        return int((await connection.execute(text(f"SELECT count(*) FROM {table}"))).scalar_one())  # noqa: S608


async def dump_database(db: AsyncEngine) -> str:
    """Every row of every table as text: what someone with a copy of the database would see."""
    async with db.connect() as connection:
        parts = []
        for table in ("advertisers", "authorizations", "ads", "identity_usage", "api_keys"):
            rows = await connection.execute(text(f"SELECT t::text FROM {table} t"))  # noqa: S608
            parts.extend(rows.scalars().all())
    return "\n".join(parts)


def assert_problem(response: httpx.Response, status: int, reason: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["reason"] == reason
    assert body["status"] == status
    assert body["type"].endswith(reason)
    assert body["title"]
    return body


async def apply(
    client: httpx.AsyncClient, code: str, original: str | None = None, advertiser_id: str = ADVERTISER_ID
) -> httpx.Response:
    body: dict[str, Any] = {"auth_code": code}
    if original is not None:
        body["original_post_auth_code"] = original
    return await client.post(f"/v1/advertisers/{advertiser_id}/authorizations", json=body)


class CountingTransport(httpx.AsyncBaseTransport):
    """Passes requests to another transport and counts them by path: how many calls reached TikTok."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.paths: list[str] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.paths.append(request.url.path)
        return await self.inner.handle_async_request(request)

    def count(self, endpoint: str) -> int:
        return sum(1 for path in self.paths if path.endswith(f"/tt_video/{endpoint}/"))


class GatedTransport(httpx.AsyncBaseTransport):
    """Holds TikTok calls to one endpoint while `held`: a TikTok that takes as long as a test needs."""

    def __init__(self, inner: httpx.AsyncBaseTransport, endpoint: str, *, held: bool = True) -> None:
        self.inner = inner
        self.endpoint = endpoint
        self.waiting = 0
        self._gate = asyncio.Event()
        self._arrivals = asyncio.Condition()
        if not held:
            self._gate.set()

    def hold(self) -> None:
        self._gate.clear()

    def open(self) -> None:
        self._gate.set()

    async def wait_for(self, count: int) -> None:
        """Until `count` calls are held at the gate (fails the test after a minute)."""
        async with asyncio.timeout(60), self._arrivals:
            await self._arrivals.wait_for(lambda: self.waiting >= count)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith(f"/tt_video/{self.endpoint}/") and not self._gate.is_set():
            async with self._arrivals:
                self.waiting += 1
                self._arrivals.notify_all()
            try:
                await self._gate.wait()
            finally:
                self.waiting -= 1
        return await self.inner.handle_async_request(request)


async def authorizations_in_database(db: AsyncEngine) -> list[dict[str, Any]]:
    """Every authorization row, as the database holds it, oldest first."""
    async with db.connect() as connection:
        rows = await connection.execute(
            text(
                "SELECT id, item_id, state, claimed_until, original_authorization_id, caption, tiktok_name, "
                "tiktok_auth_status FROM authorizations ORDER BY created_at, item_id"
            )
        )
        return [dict(row._mapping) for row in rows]


def losing_first_authorize_answer(sandbox: Any) -> httpx.MockTransport:
    """The sandbox, except that the answer to the first `authorize` is lost after TikTok applied the code."""
    inner = httpx.ASGITransport(app=sandbox)
    lost: list[bool] = []

    async def handle(request: httpx.Request) -> httpx.Response:
        response = await inner.handle_async_request(request)
        if request.url.path.endswith("/tt_video/authorize/") and not lost:
            lost.append(True)
            raise httpx.ReadTimeout("the answer never came back", request=request)
        return response

    return httpx.MockTransport(handle)
