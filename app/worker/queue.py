"""The job queue (procrastinate, on the service's own Postgres) and the worker that runs its jobs.

Each feature keeps its jobs in its own `tasks.py`, with a `register(queue)` that `create_queue` calls. Periodic
jobs are deferred once per tick however many workers run (procrastinate records each tick under a unique key),
jobs that must not overlap share a `lock`, and a `queueing_lock` keeps one waiting at a time.
The jobs themselves are written so that running one twice changes nothing: correctness never rests on the queue
alone (every transition is a conditional UPDATE).

By default the worker runs inside the API process (`WORKER_IN_PROCESS=true`, started by the lifespan), so one
`uvicorn app.main:app` does everything; `python -m app.worker` runs it on its own. Any number of either, on any
number of machines, share the work through the database.

The queue's tables live in the `procrastinate` schema (migration 0008), reached through the connection's
`search_path`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from typing import Any

import procrastinate
import structlog
from procrastinate.exceptions import AlreadyEnqueued
from psycopg.conninfo import make_conninfo
from sqlalchemy.engine import make_url

from app.kit.resources import Resources
from app.kit.settings import Settings

__all__ = [
    "QUEUE_SCHEMA",
    "SCHEMA_VERSION",
    "create_queue",
    "defer_once",
    "libpq_conninfo",
    "resources_of",
    "running_worker",
]

log = structlog.get_logger(__name__)

QUEUE_SCHEMA = "procrastinate"
# The procrastinate version whose schema migration 0008 created. Upgrading procrastinate means a migration that
# applies its migration files from this version on, then changing this (tests/worker checks the two agree).
SCHEMA_VERSION = "3.10.0"


def libpq_conninfo(database_url: str) -> str:
    """The service's DATABASE_URL (SQLAlchemy's `postgresql+asyncpg://`) as a libpq connection string for
    psycopg, with the queue's schema first on the search path."""
    url = make_url(database_url).set(drivername="postgresql")
    return make_conninfo(url.render_as_string(hide_password=False), options=f"-c search_path={QUEUE_SCHEMA}")


def create_queue(settings: Settings) -> procrastinate.App:
    """A queue with every feature's jobs, on its own connection pool. Opening it (`open_async`) connects; nothing
    connects before. Any number may exist in one process (tests run several workers in one)."""
    from app.worker import tasks  # the jobs import services: only once a queue is actually made

    queue = procrastinate.App(
        connector=procrastinate.PsycopgConnector(
            conninfo=libpq_conninfo(settings.database_url),
            min_size=1,
            max_size=max(2, settings.worker_concurrency + 1),
        )
    )
    for register in tasks.REGISTRATIONS:
        register(queue)
    return queue


def resources_of(context: procrastinate.JobContext) -> Resources:
    """What a job works with: the resources of the worker that runs it (`running_worker`)."""
    resources: Resources = context.additional_context["resources"]
    return resources


async def defer_once(queue: procrastinate.App, task_name: str, *, lock: str, **task_kwargs: Any) -> bool:
    """Defer `task_name` on `queue` unless a job with the same lock is already waiting: one run at a time per lock
    (its `lock`), and at most one more waiting (its `queueing_lock`). Whether one was deferred."""
    deferrer = procrastinate.tasks.configure_task(
        name=task_name, job_manager=queue.job_manager, lock=lock, queueing_lock=lock
    )
    try:
        await deferrer.defer_async(**task_kwargs)
    except AlreadyEnqueued:
        return False
    return True


@asynccontextmanager
async def running_worker(
    resources: Resources, *, name: str = "worker", concurrency: int | None = None
) -> AsyncIterator[procrastinate.App]:
    """A worker running in this process until the block ends (the API's lifespan, `python -m app.worker`, tests).

    Jobs get `resources` (the database, TikTok, the secrets) through their context. Ending the block stops the
    worker: jobs in flight get `shutdown_graceful_timeout` to finish, then are cancelled and left for another
    worker to find (procrastinate marks a stalled worker's jobs once its heartbeat stops).
    """
    settings = resources.settings
    queue = create_queue(settings)
    async with queue.open_async():
        options: dict[str, Any] = {
            "name": name,
            "concurrency": concurrency or settings.worker_concurrency,
            "install_signal_handlers": False,
            "additional_context": {"resources": resources},
            "shutdown_graceful_timeout": 5.0,
            # Finished jobs are history nobody reads: deleted, so the queue's tables stay small.
            "delete_jobs": "successful",
        }
        task = asyncio.create_task(queue.run_worker_async(**options), name=f"procrastinate-{name}")
        log.info("worker.started", name=name, concurrency=options["concurrency"])
        try:
            yield queue
        finally:
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task
            log.info("worker.stopped", name=name)
