"""The worker runs on the job queue: inside the API process by default, on its own with `python -m app.worker`,
and several at once on one database without doing a periodic job twice."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from datetime import timedelta
from typing import Any

import httpx
import procrastinate
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.authorizations import tasks as lifecycle_tasks
from app.kit import clock
from app.kit.resources import open_resources
from app.kit.settings import Settings
from app.worker.queue import SCHEMA_VERSION, running_worker
from tests.api.helpers import apply
from tests.conftest import ROOT, register_advertiser, running


async def _wait_for(predicate: Any, *, seconds: float = 30.0) -> None:
    async with asyncio.timeout(seconds):
        while not await predicate():  # noqa: ASYNC110 (the condition is in the database)
            await asyncio.sleep(0.1)


async def _count(db: AsyncEngine, sql: str) -> int:
    async with db.connect() as connection:
        return int((await connection.execute(text(sql))).scalar_one())


def test_the_queue_schema_is_the_installed_procrastinate_s() -> None:
    """Migration 0008 created procrastinate's schema of SCHEMA_VERSION: an upgrade of procrastinate must come with
    a migration applying its migration files, and then this constant moves."""
    assert procrastinate.__version__ == SCHEMA_VERSION


async def test_a_deferred_sweep_runs_on_the_worker(
    settings: Settings, db: AsyncEngine, sandbox: Any, fast_retries: None
) -> None:
    """The job the periodic tick defers, deferred by hand: a worker picks it up and records the expiry."""
    async with running(settings, httpx.ASGITransport(app=sandbox)) as started:
        await register_advertiser(started.client)
        assert (await apply(started.client, "#SBX+video/7d=")).status_code == 201
    async with db.begin() as connection:  # the window ended a minute ago
        await connection.execute(
            text("UPDATE authorizations SET auth_end_at = :end"), {"end": clock.utcnow() - timedelta(minutes=1)}
        )
    async with open_resources(settings) as resources, running_worker(resources) as queue:
        await queue.configure_task("lifecycle:sweep").defer_async(timestamp=0)
        await _wait_for(lambda: _expired(db))
    assert await _count(db, "SELECT count(*) FROM events WHERE type = 'authorization.expired'") == 1


async def _expired(db: AsyncEngine) -> bool:
    return await _count(db, "SELECT count(*) FROM events WHERE type = 'authorization.expired'") == 1


async def test_three_workers_run_each_periodic_tick_once(settings: Settings, db: AsyncEngine) -> None:
    """Three workers on one database for a few seconds: the webhook dispatcher's tick (every 5 s) and the minute
    ticks are each deferred once, whichever worker defers them (procrastinate's unique periodic key)."""
    async with (
        open_resources(settings) as resources,
        running_worker(resources, name="a"),
        running_worker(resources, name="b"),
        running_worker(resources, name="c"),
    ):
        await asyncio.sleep(7)
    async with db.connect() as connection:
        rows = (
            await connection.execute(
                text(
                    "SELECT task_name, periodic_id, defer_timestamp, count(*) AS n "
                    "FROM procrastinate.procrastinate_periodic_defers "
                    "GROUP BY task_name, periodic_id, defer_timestamp"
                )
            )
        ).all()
    assert rows, "no periodic job was deferred at all"
    assert all(row.n == 1 for row in rows), rows


async def test_the_api_runs_the_worker_in_process_unless_told_not_to(
    settings: Settings, db: AsyncEngine, sandbox: Any, fast_retries: None
) -> None:
    """WORKER_IN_PROCESS (default true): a plain `uvicorn app.main:app` does everything; false leaves it out."""
    for in_process in (True, False):
        await _truncate_workers(db)
        changed = settings.model_copy(update={"worker_in_process": in_process})
        async with running(changed, httpx.ASGITransport(app=sandbox)):
            await asyncio.sleep(0.5)
            workers = await _count(db, "SELECT count(*) FROM procrastinate.procrastinate_workers")
        assert workers == (1 if in_process else 0)


async def _truncate_workers(db: AsyncEngine) -> None:
    async with db.begin() as connection:
        await connection.execute(text("TRUNCATE procrastinate.procrastinate_workers CASCADE"))


@pytest.mark.skipif(sys.platform == "win32", reason="signals")
async def test_python_m_app_worker_runs_on_its_own_and_stops_on_sigterm(settings: Settings, db: AsyncEngine) -> None:
    environment = os.environ | {
        "DATABASE_URL": settings.database_url,
        "TIKTOK_API_BASE_URL": settings.tiktok_api_base_url,
        "ENCRYPTION_KEYS": ",".join(key.get_secret_value() for key in settings.encryption_keys),
        "ENVIRONMENT": "test",
        "LOG_FORMAT": "console",
    }
    process = subprocess.Popen(  # noqa: ASYNC220 (a child that runs beside the test, not awaited)
        [sys.executable, "-m", "app.worker"],
        cwd=ROOT,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        await _wait_for(lambda: _registered(db))
        process.send_signal(signal.SIGTERM)
        output, _ = await asyncio.to_thread(process.communicate, timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, output.decode()
    assert b"worker.stopped" in output


async def _registered(db: AsyncEngine) -> bool:
    return await _count(db, "SELECT count(*) FROM procrastinate.procrastinate_workers") >= 1


async def test_three_workers_sweeping_at_once_expire_and_remind_each_authorization_once(
    settings: Settings, db: AsyncEngine, sandbox: Any, fast_retries: None
) -> None:
    """Three workers on one database, each with its own queue and connections, run sweeps at the same time (more
    sweep jobs than workers, deferred together): each ended window is expired once and each reminder sent once."""
    async with running(settings, httpx.ASGITransport(app=sandbox)) as started:
        await register_advertiser(started.client)
        for n in range(1, 31):
            assert (await apply(started.client, f"#SBX+bulk/{n}=")).status_code == 201
    now = clock.utcnow()
    async with db.begin() as connection:  # half ended a minute ago, half end in two days (the 3-day reminder)
        await connection.execute(
            text(
                "UPDATE authorizations SET auth_end_at = CASE WHEN item_id::numeric % 2 = 0 "
                "THEN CAST(:ended AS timestamptz) ELSE CAST(:soon AS timestamptz) END"
            ),
            {"ended": now - timedelta(minutes=1), "soon": now + timedelta(days=2)},
        )
    async with (
        open_resources(settings) as resources,
        running_worker(resources, name="a") as first,
        running_worker(resources, name="b"),
        running_worker(resources, name="c"),
    ):
        for n in range(9):  # distinct queueing locks: nine sweeps may wait, and three run at once
            await procrastinate.tasks.configure_task(
                name=lifecycle_tasks.SWEEP, job_manager=first.job_manager, queueing_lock=f"test-{n}"
            ).defer_async(timestamp=n)
        await _wait_for(lambda: _jobs_done(db))
    async with db.connect() as connection:
        rows = (
            await connection.execute(
                text("SELECT type, authorization_id, count(*) AS n FROM events GROUP BY type, authorization_id")
            )
        ).all()
    expired = [row for row in rows if row.type == "authorization.expired"]
    expiring = [row for row in rows if row.type == "authorization.expiring"]
    assert len(expired) == 15 and len(expiring) == 15, rows
    assert all(row.n == 1 for row in expired + expiring), rows


async def _jobs_done(db: AsyncEngine) -> bool:
    left = await _count(db, "SELECT count(*) FROM procrastinate.procrastinate_jobs WHERE task_name = 'lifecycle:sweep'")
    return left == 0
