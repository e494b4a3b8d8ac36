"""Events other systems follow (GET /v1/events): every change written with its change, in one total order, with a
cursor that never skips an event committed late, seen only by keys that may touch its ad account."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.events import service as events
from app.events.models import EventType
from tests.api.helpers import apply, assert_problem
from tests.conftest import ADVERTISER_ID


async def _feed(client: httpx.AsyncClient, after: str | None = None, **params: Any) -> dict[str, Any]:
    response = await client.get("/v1/events", params=params | ({"after": after} if after else {}))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def _all(client: httpx.AsyncClient, **params: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    after = None
    while True:
        page = await _feed(client, after, limit=3, **params)
        items.extend(page["items"])
        after = page["next_cursor"]
        if not page["has_more"]:
            return items


class TestTheFeed:
    async def test_a_post_s_life_in_order(self, client: httpx.AsyncClient, advertiser: dict[str, Any]) -> None:
        """Applied, ad linked, ad removed, un-authorized, deletion safe (D7): each with its resource as it was."""
        created = (await apply(client, "#SBX+video/30d=")).json()
        authorization_id = created["id"]
        linked = await client.post(
            f"/v1/authorizations/{authorization_id}/ads",
            json={"ad_id": "1790000000000000001", "campaign_type": "STANDARD", "only_show_as_ad": True},
        )
        assert linked.status_code == 201, linked.text
        removed = await client.delete(f"/v1/authorizations/{authorization_id}/ads/1790000000000000001")
        assert removed.status_code == 204, removed.text
        unauthorized = await client.post(f"/v1/authorizations/{authorization_id}/unauthorize")
        assert unauthorized.status_code == 200, unauthorized.text

        items = await _all(client)
        assert [item["type"] for item in items] == [
            "authorization.applied",
            "ad.linked",
            "ad.removed",
            "authorization.unauthorized",
            "post.deletion_safe",
        ]
        assert len({item["id"] for item in items}) == 5
        assert all(item["advertiser_id"] == ADVERTISER_ID for item in items)
        assert all(item["item_id"] == created["item_id"] for item in items)
        assert items[0]["data"]["authorization"]["status"] == "active"
        assert items[1]["data"]["ad"]["state"] == "active"
        assert items[1]["data"]["authorization"]["active_ads"] == 1
        assert items[2]["data"]["ad"]["state"] == "removed"
        assert items[3]["data"]["authorization"]["status"] == "unauthorized"

    async def test_a_renewal_and_a_refused_code(self, client: httpx.AsyncClient, advertiser: dict[str, Any]) -> None:
        """A later code for the same post is `renewed`; a code TikTok refuses is `rejected`, with its reason and
        only the code's hint."""
        assert (await apply(client, "#SBX+video/30d=")).status_code == 201
        assert (await apply(client, "#SBX+video/30d-renewed=")).status_code == 200
        refused = await apply(client, "#SBX+expired/error=")
        assert refused.status_code == 422
        items = await _all(client)
        assert [item["type"] for item in items] == [
            "authorization.applied",
            "authorization.renewed",
            "authorization.rejected",
        ]
        rejected = items[2]["data"]
        assert rejected["reason"] == refused.json()["reason"]
        assert "#SBX" not in str(items[2])

    async def test_an_empty_page_keeps_the_place_to_poll_from(
        self, client: httpx.AsyncClient, advertiser: dict[str, Any]
    ) -> None:
        first = await _feed(client)
        assert first["items"] == [] and first["has_more"] is False
        assert (await apply(client, "#SBX+video/30d=")).status_code == 201
        second = await _feed(client, first["next_cursor"])
        assert [item["type"] for item in second["items"]] == ["authorization.applied"]
        third = await _feed(client, second["next_cursor"])
        assert third["items"] == []

    async def test_filters(self, client: httpx.AsyncClient, advertiser: dict[str, Any]) -> None:
        a = (await apply(client, "#SBX+video/30d=")).json()
        b = (await apply(client, "#SBX+video/60d=")).json()
        assert [i["item_id"] for i in await _all(client, item_id=b["item_id"])] == [b["item_id"]]
        assert [i["authorization_id"] for i in await _all(client, authorization_id=a["id"])] == [a["id"]]
        assert len(await _all(client, type=["authorization.applied", "ad.linked"])) == 2
        assert await _all(client, type="ad.linked") == []
        assert len(await _all(client, advertiser_id=ADVERTISER_ID)) == 2

    async def test_a_forged_cursor_is_refused(self, client: httpx.AsyncClient) -> None:
        assert_problem(await client.get("/v1/events", params={"after": "not-a-cursor"}), 422, "cursor_invalid")


class TestLateCommits:
    async def test_an_event_committed_late_is_never_skipped(
        self, app: FastAPI, db: AsyncEngine, client: httpx.AsyncClient, advertiser: dict[str, Any]
    ) -> None:
        """A transaction that wrote an event first but commits last: a sequence alone would hand out a cursor past
        it. The feed shows nothing of later transactions until it ends, then both, in order."""
        async with db.connect() as connection:
            advertiser_row_id = (await connection.execute(text("SELECT id FROM advertisers LIMIT 1"))).scalar_one()
        now = datetime.now(UTC)

        async def write(session: Any, name: str) -> None:
            await events.record(
                session,
                EventType.authorization_rejected,
                advertiser_id=advertiser_row_id,
                tiktok_advertiser_id=ADVERTISER_ID,
                now=now,
                data={"reason": name},
            )

        sessions = app.state.sessionmaker
        early = sessions()
        await early.begin()
        await write(early, "early")  # its transaction id is taken now
        async with sessions.begin() as late:
            await write(late, "late")
        page = await _feed(client)
        assert page["items"] == []  # "late" is committed, but "early" may still land before it
        await early.commit()
        await early.close()
        page = await _feed(client, page["next_cursor"])
        assert [item["data"]["reason"] for item in page["items"]] == ["early", "late"]

    async def test_concurrent_writers_and_a_reader_lose_nothing(
        self, app: FastAPI, client: httpx.AsyncClient, advertiser: dict[str, Any], db: AsyncEngine
    ) -> None:
        """Writers commit in random order while a reader follows the feed: it sees every event exactly once."""
        async with db.connect() as connection:
            advertiser_row_id = (await connection.execute(text("SELECT id FROM advertisers LIMIT 1"))).scalar_one()
        sessions = app.state.sessionmaker
        written = 120

        async def writer(n: int) -> None:
            async with sessions.begin() as session:
                await events.record(
                    session,
                    EventType.authorization_rejected,
                    advertiser_id=advertiser_row_id,
                    tiktok_advertiser_id=ADVERTISER_ID,
                    now=datetime.now(UTC),
                    data={"n": n},
                )
                await asyncio.sleep((n * 7 % 5) / 1000)

        seen: list[int] = []
        done = asyncio.Event()

        async def reader() -> None:
            after = None
            while True:
                page = await _feed(client, after, limit=7)
                seen.extend(item["data"]["n"] for item in page["items"])
                after = page["next_cursor"]
                if done.is_set() and not page["has_more"] and len(seen) >= written:
                    return
                await asyncio.sleep(0)

        reading = asyncio.create_task(reader())
        await asyncio.gather(*(writer(n) for n in range(written)))
        done.set()
        await asyncio.wait_for(reading, timeout=30)
        assert sorted(seen) == list(range(written))


class TestScopes:
    async def test_a_key_sees_only_its_ad_accounts_events(
        self, client: httpx.AsyncClient, advertiser: dict[str, Any], make_key: Any
    ) -> None:
        assert (await apply(client, "#SBX+video/30d=")).status_code == 201
        outsider = await make_key("outsider", advertiser_ids=[], scopes=["read"])
        assert (await _feed(outsider.client))["items"] == []
        assert_problem(
            await outsider.client.get("/v1/events", params={"advertiser_id": ADVERTISER_ID}),
            404,
            "advertiser_not_found",
        )
        insider = await make_key("insider", advertiser_ids=[ADVERTISER_ID], scopes=["read"])
        assert [item["type"] for item in (await _feed(insider.client))["items"]] == ["authorization.applied"]
