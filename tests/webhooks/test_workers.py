"""Three workers on one database, as three replicas run them: the periodic `dispatch` and the `deliver` jobs
share the work through the queue, and every event reaches both subscriptions exactly once, in order.

Each worker is `python -m app.worker`, a process of its own with its own procrastinate App (as deployed), told
its settings by its environment.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import IO, Any

import croniter
import httpx
import procrastinate
import procrastinate.testing
from fastapi import FastAPI

from app.events.models import EventType
from app.webhooks import tasks
from tests.conftest import ADVERTISER_ID, ENCRYPTION_KEY, ROOT
from tests.webhooks.conftest import MakeReceiver, deliveries, record_events, subscribe

WORKERS = 3
DEADLINE_SECONDS = 30.0
# Nothing listens there: no job of these workers reaches TikTok (or the internet).
NO_TIKTOK = "http://127.0.0.1:9/open_api/"
TYPES = [EventType.authorization_applied, EventType.ad_linked, EventType.ad_removed]


def _environment(database_url: str) -> dict[str, str]:
    kept = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("TIKTOK_", "ENCRYPTION_", "DATABASE_", "WORKER_", "WEBHOOK_", "BOOTSTRAP_"))
    }
    return kept | {
        "DATABASE_URL": database_url,
        "TIKTOK_API_BASE_URL": NO_TIKTOK,
        "ENCRYPTION_KEYS": ENCRYPTION_KEY,
        "ENVIRONMENT": "test",
        "LOG_FORMAT": "json",
        "LOG_LEVEL": "WARNING",
        "WORKER_CONCURRENCY": "4",
        "WEBHOOK_TIMEOUT_SECONDS": "5",
    }


@asynccontextmanager
async def _worker(database_url: str, log: IO[bytes]) -> AsyncIterator[asyncio.subprocess.Process]:
    """`python -m app.worker` until the block ends; then SIGTERM, and it must stop by itself."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "app.worker",
        cwd=ROOT,
        env=_environment(database_url),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=log,
        stderr=log,
    )
    try:
        yield process
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), 30)
            except TimeoutError:
                process.kill()
                await process.wait()
                raise


class TestThreeWorkers:
    async def test_every_event_reaches_both_subscriptions_once_and_in_order(
        self,
        client: httpx.AsyncClient,
        advertiser: dict[str, Any],
        app: FastAPI,
        receiver: MakeReceiver,
        database_url: str,
    ) -> None:
        hook = receiver()
        first = await subscribe(client, hook.base + "/first")
        second = await subscribe(client, hook.base + "/second", ["ad.linked", "ad.removed"])
        expected: list[str] = []
        for _ in range(5):  # waiting for the workers
            expected += await record_events(app, ADVERTISER_ID, TYPES)

        with tempfile.TemporaryDirectory(prefix="webhook-workers-") as folder:
            logs = [(Path(folder) / f"worker-{number}.log").open("wb") for number in range(WORKERS)]
            try:
                async with AsyncExitStack() as stack:
                    workers = [await stack.enter_async_context(_worker(database_url, log)) for log in logs]
                    for _ in range(5):  # while they run
                        expected += await record_events(app, ADVERTISER_ID, TYPES)
                        await asyncio.sleep(0.3)
                    expected_second = [
                        event_id for number, event_id in enumerate(expected) if TYPES[number % 3] is not TYPES[0]
                    ]

                    deadline = time.monotonic() + DEADLINE_SECONDS
                    while len(hook.ids("/first")) < len(expected) or len(hook.ids("/second")) < len(expected_second):
                        assert all(worker.returncode is None for worker in workers), "a worker stopped"
                        assert time.monotonic() < deadline, (
                            f"after {DEADLINE_SECONDS:g} s: {len(hook.ids('/first'))}/{len(expected)} and "
                            f"{len(hook.ids('/second'))}/{len(expected_second)} delivered"
                        )
                        await asyncio.sleep(0.2)
                    await asyncio.sleep(1.0)  # anything sent twice would arrive meanwhile
                for worker in workers:
                    assert worker.returncode == 0
            except BaseException:
                for number, log in enumerate(logs):
                    log.close()
                    print(f"--- worker {number}:\n" + (Path(folder) / f"worker-{number}.log").read_text()[-3000:])
                raise
            finally:
                for log in logs:
                    log.close()

        # Exactly once each (a normal run: no worker died, no lease ran out), in the events' order.
        assert hook.ids("/first") == expected
        assert hook.ids("/second") == expected_second
        for subscription, count in ((first, len(expected)), (second, len(expected_second))):
            items = await deliveries(client, subscription["id"], limit=200)
            assert len(items) == count
            assert {(item["state"], item["attempts"]) for item in items} == {("delivered", 1)}


class TestSchedule:
    def test_dispatch_is_deferred_every_five_seconds(self) -> None:
        """procrastinate reads the cron with croniter, whose 6th field is the seconds, LAST: the schedule is every
        5 seconds (the same cron with the seconds first would be every second of every 5th minute)."""
        queue = procrastinate.App(connector=procrastinate.testing.InMemoryConnector())
        tasks.register(queue)
        (periodic,) = queue.periodic_registry.periodic_tasks.values()
        assert periodic.periodic_id == "dispatch"
        assert periodic.task.queueing_lock == "webhooks-dispatch"
        start = 1_800_000_001.5  # any time, not on a tick
        ticks = croniter.croniter(periodic.cron, start)
        times = [ticks.get_next(float) for _ in range(30)]
        assert times[0] - start <= 5
        assert {round(later - earlier, 6) for earlier, later in itertools.pairwise(times)} == {5.0}
        wrong = croniter.croniter("*/5 * * * * *", start)
        assert round(wrong.get_next(float) - start) != 5
