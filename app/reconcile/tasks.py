"""Jobs of this feature on the queue (app/worker/queue.py).

- `schedule`, every minute (once per tick however many workers run; one waiting at a time): picks the ad accounts
  whose reconciliation is due (`reconcile_due_at`, a bounded batch, taken `FOR UPDATE SKIP LOCKED` and pushed a
  little later in the same statement) and defers an `advertiser` run for each.
- `advertiser(advertiser_id)`: reconciles one ad account with TikTok; its `lock` keeps one run per ad account at a
  time, its `queueing_lock` one waiting. The run sets when the ad account is next due (RECONCILE_PERIOD_SECONDS).
"""

from __future__ import annotations

import uuid

import procrastinate
import structlog
from procrastinate import JobContext

from app.kit import clock
from app.reconcile import service
from app.worker.queue import defer_once, resources_of

log = structlog.get_logger(__name__)

SCHEDULE = "reconcile:schedule"
ADVERTISER = "reconcile:advertiser"


async def defer_reconcile(app: procrastinate.App, advertiser_id: uuid.UUID | str) -> bool:
    """Defer an `advertiser` run for the ad account unless one is already waiting; whether one was deferred."""
    return await defer_once(app, ADVERTISER, lock=f"reconcile:{advertiser_id}", advertiser_id=str(advertiser_id))


async def schedule(context: JobContext, timestamp: int) -> None:
    resources = resources_of(context)
    deferred = 0
    for advertiser_id in await service.pick_due(resources.sessionmaker, now=clock.utcnow()):
        deferred += await defer_reconcile(context.app, advertiser_id)
    if deferred:
        log.info("reconcile.scheduled", runs=deferred)


async def advertiser(context: JobContext, advertiser_id: str) -> None:
    resources = resources_of(context)
    await service.reconcile_advertiser(
        resources.sessionmaker,
        resources.tiktok,
        resources.secret_box,
        uuid.UUID(advertiser_id),
        clock.utcnow(),
        period_seconds=resources.settings.reconcile_period_seconds,
    )


def register(queue: procrastinate.App) -> None:
    """Put this feature's jobs on `queue` (app/worker/queue.py makes a fresh queue each time)."""
    queue.periodic(cron="* * * * *", periodic_id="reconcile")(
        queue.task(name=SCHEDULE, queueing_lock="reconcile-schedule", pass_context=True)(schedule)
    )
    queue.task(name=ADVERTISER, pass_context=True)(advertiser)
