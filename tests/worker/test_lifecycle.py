"""The worker's sweep (D3): windows that end become `authorization.expired` within a minute, reminders go out at
each lead time once, and any number of workers sweeping at once change each row, and write each event, once.

The clock is moved with time-machine: the sweep reads it the way the worker's job does (`sweep_now`)."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
import time_machine
from fastapi import FastAPI
from sqlalchemy import text, update
from sqlalchemy.ext.asyncio import AsyncEngine

from app.authorizations import lifecycle
from app.authorizations.models import Authorization
from app.kit.db import create_engine, create_sessionmaker
from app.kit.settings import Settings
from tests.api.helpers import apply

DAY = 86400


async def _events(client: httpx.AsyncClient, **params: Any) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    cursor = None
    while True:
        query = dict(params) | ({"after": cursor} if cursor else {})
        response = await client.get("/v1/events", params=query)
        assert response.status_code == 200, response.text
        page = response.json()
        events.extend(page["items"])
        cursor = page["next_cursor"]
        if not page["has_more"]:
            return events


async def _applied(client: httpx.AsyncClient, code: str = "#SBX+video/30d=") -> dict[str, Any]:
    response = await apply(client, code)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def _end(authorization: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(authorization["auth_end_at"])


async def _sweep_at(app: FastAPI, moment: datetime) -> lifecycle.SweepReport:
    with time_machine.travel(moment, tick=False):
        return await lifecycle.sweep_now(app.state.sessionmaker, app.state.settings)


def _types(events: list[dict[str, Any]], authorization_id: str) -> list[tuple[str, Any]]:
    return [
        (event["type"], event["data"].get("lead_seconds"))
        for event in events
        if event["authorization_id"] == authorization_id and event["type"].startswith("authorization.exp")
    ]


class TestExpiry:
    async def test_reminders_at_each_lead_time_then_expired_once(
        self, app: FastAPI, client: httpx.AsyncClient, advertiser: dict[str, Any]
    ) -> None:
        """D3: 7, 3 and 1 day before the end, once each however often the sweep runs; then expired once."""
        authorization = await _applied(client)
        end = _end(authorization)
        moments = [
            end - timedelta(days=8),
            end - timedelta(days=7) + timedelta(seconds=1),
            end - timedelta(days=7) + timedelta(hours=1),
            end - timedelta(days=3),
            end - timedelta(days=2),
            end - timedelta(days=1) + timedelta(seconds=30),
            end - timedelta(seconds=1),
            end,
            end + timedelta(minutes=1),
        ]
        for moment in moments:
            await _sweep_at(app, moment)
        assert _types(await _events(client), authorization["id"]) == [
            ("authorization.expiring", 7 * DAY),
            ("authorization.expiring", 3 * DAY),
            ("authorization.expiring", DAY),
            ("authorization.expired", None),
        ]

    async def test_expired_within_the_minute_the_worker_runs(
        self, app: FastAPI, client: httpx.AsyncClient, advertiser: dict[str, Any]
    ) -> None:
        """The sweep runs every minute: one run after the end records it, with the authorization as it was."""
        authorization = await _applied(client)
        end = _end(authorization)
        report = await _sweep_at(app, end - timedelta(seconds=1))
        assert report.expired == 0
        report = await _sweep_at(app, end + timedelta(seconds=59))
        assert report.expired == 1
        (expired,) = [e for e in await _events(client, type="authorization.expired")]
        assert expired["data"]["authorization"]["status"] == "expired"
        assert expired["item_id"] == authorization["item_id"]
        assert expired["advertiser_id"] == authorization["advertiser_id"]

    async def test_reads_do_not_wait_for_the_worker(
        self, app: FastAPI, client: httpx.AsyncClient, advertiser: dict[str, Any]
    ) -> None:
        """D3: an ended window reads as expired at once, though no sweep has run."""
        authorization = await _applied(client)
        with time_machine.travel(_end(authorization) + timedelta(seconds=1), tick=False):
            response = await client.get(f"/v1/authorizations/{authorization['id']}")
        assert response.json()["status"] == "expired"
        assert await _events(client, type="authorization.expired") == []

    async def test_missed_lead_times_send_only_the_nearest(
        self, app: FastAPI, client: httpx.AsyncClient, advertiser: dict[str, Any]
    ) -> None:
        """A worker down for days does not send a stale 7-day reminder two days before the end."""
        authorization = await _applied(client)
        end = _end(authorization)
        await _sweep_at(app, end - timedelta(days=2))
        await _sweep_at(app, end - timedelta(hours=12))
        assert _types(await _events(client), authorization["id"]) == [
            ("authorization.expiring", 3 * DAY),
            ("authorization.expiring", DAY),
        ]

    async def test_a_window_that_moves_starts_its_reminders_again(
        self, app: FastAPI, db: AsyncEngine, client: httpx.AsyncClient, advertiser: dict[str, Any]
    ) -> None:
        """The trigger of migration 0008: whoever writes a new end (reconciliation, a renewal), the schedule and
        a recorded expiry start again for it."""
        authorization = await _applied(client)
        end = _end(authorization)
        await _sweep_at(app, end + timedelta(minutes=1))
        new_end = end + timedelta(days=30)
        async with db.begin() as connection:
            await connection.execute(
                update(Authorization)
                .where(Authorization.item_id == authorization["item_id"])
                .values(auth_end_at=new_end)
            )
        await _sweep_at(app, new_end - timedelta(days=6))
        await _sweep_at(app, new_end + timedelta(seconds=1))
        assert _types(await _events(client), authorization["id"]) == [
            ("authorization.expired", None),
            ("authorization.expiring", 7 * DAY),
            ("authorization.expired", None),
        ]

    async def test_lead_times_are_a_setting(
        self, settings: Settings, db: AsyncEngine, sandbox: Any, fast_retries: None
    ) -> None:
        """EXPIRY_REMINDER_LEADS=12h: one reminder, 12 hours before the end."""
        from tests.conftest import register_advertiser, running

        custom = settings.model_copy(update={"expiry_reminder_leads": [12 * 3600]})
        async with running(custom, httpx.ASGITransport(app=sandbox)) as started:
            await register_advertiser(started.client)
            authorization = await _applied(started.client)
            end = _end(authorization)
            for moment in (end - timedelta(days=2), end - timedelta(hours=12), end - timedelta(hours=1)):
                await _sweep_at(started.app, moment)
            assert _types(await _events(started.client), authorization["id"]) == [("authorization.expiring", 12 * 3600)]

    async def test_the_sweep_reads_an_index_not_the_table(self, app: FastAPI, db: AsyncEngine) -> None:
        """What makes a sweep cost what is due: both queries are answered from the partial indexes."""
        async with db.connect() as connection:
            await connection.execute(text("SET enable_seqscan = off"))
            plans = []
            for query in (
                "EXPLAIN SELECT id FROM authorizations "
                "WHERE state = 'active' AND expired_at IS NULL AND auth_end_at <= now()",
                "EXPLAIN SELECT id FROM authorizations WHERE next_reminder_at <= now()",
            ):
                rows = await connection.execute(text(query))
                plans.append("\n".join(row[0] for row in rows))
        assert "ix_authorizations_expiry" in plans[0]
        assert "ix_authorizations_reminders" in plans[1]


class TestManyWorkers:
    async def test_three_workers_sweeping_at_once_change_each_row_once(
        self, app: FastAPI, client: httpx.AsyncClient, advertiser: dict[str, Any], database_url: str
    ) -> None:
        """Three workers, each with its own connections, sweep the same moments at once: every reminder and every
        expiry is written exactly once (rows are taken FOR UPDATE SKIP LOCKED and re-checked under the lock)."""
        authorizations = [await _applied(client, f"#SBX+bulk/{n}=") for n in range(1, 41)]
        end = max(_end(a) for a in authorizations)
        engines = [create_engine(database_url, pool_size=3) for _ in range(3)]
        try:
            makers = [create_sessionmaker(engine) for engine in engines]
            for moment in (end - timedelta(days=7), end - timedelta(days=1), end + timedelta(seconds=1)):
                await asyncio.gather(
                    *(lifecycle.sweep(maker, now=moment, leads=[7 * DAY, 3 * DAY, DAY], batch=7) for maker in makers)
                )
        finally:
            for engine in engines:
                await engine.dispose()
        events = await _events(client)
        for authorization in authorizations:
            assert _types(events, authorization["id"]) == [
                ("authorization.expiring", 7 * DAY),
                ("authorization.expiring", DAY),
                ("authorization.expired", None),
            ], authorization["id"]


@pytest.mark.parametrize("leads", ["7d,3d,1d", "1d, 3d ,7d"])
def test_lead_times_parse_in_any_order(settings: Settings, leads: str) -> None:
    parsed = Settings(**(settings.model_dump() | {"expiry_reminder_leads": leads}))
    assert parsed.expiry_reminder_leads == [7 * DAY, 3 * DAY, DAY]
