"""The authorizations' jobs on the queue (app/worker/queue.py): the sweep, every minute."""

from __future__ import annotations

import procrastinate

from app.authorizations import lifecycle
from app.worker.queue import resources_of

SWEEP = "lifecycle:sweep"


async def sweep(context: procrastinate.JobContext, timestamp: int) -> None:
    """D3: windows that ended become `authorization.expired`, within a minute; reminders before they end."""
    resources = resources_of(context)
    await lifecycle.sweep_now(resources.sessionmaker, resources.settings)


def register(queue: procrastinate.App) -> None:
    """Put this feature's jobs on `queue` (app/worker/queue.py makes a fresh queue each time)."""
    queue.periodic(cron="* * * * *", periodic_id="sweep")(
        queue.task(name=SWEEP, queueing_lock="lifecycle-sweep", pass_context=True)(sweep)
    )
