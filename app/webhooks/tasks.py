"""Jobs of this feature on the queue (app/worker/queue.py): thin wrappers over app/webhooks/delivery.py.

- `dispatch`, every 5 seconds (once per tick however many workers run; one waiting at a time): finds the
  subscriptions with something to do and defers a `deliver` for each.
- `deliver(subscription_id)`: one run for one subscription. Its `lock` keeps one run per subscription at a time
  (so its deliveries go in order), its `queueing_lock` one waiting; a run that stops at its bounds with work left
  defers the next one itself. A receiver that hangs holds up only its own subscription's job.
"""

from __future__ import annotations

import uuid

import procrastinate
import structlog
from procrastinate import JobContext

from app.webhooks import delivery
from app.worker.queue import defer_once, resources_of

log = structlog.get_logger(__name__)

DISPATCH = "webhooks:dispatch"
DELIVER = "webhooks:deliver"

# croniter reads a 6th field as the seconds, and it comes LAST: "* * * * * */5" is every 5 seconds (whereas
# "*/5 * * * * *" would be every second of every 5th minute).
DISPATCH_CRON = "* * * * * */5"


async def defer_delivery(app: procrastinate.App, subscription_id: uuid.UUID | str) -> bool:
    """Defer a `deliver` run for the subscription on `app`'s queue, unless one is already waiting; whether one was
    deferred."""
    return await defer_once(app, DELIVER, lock=f"webhook:{subscription_id}", subscription_id=str(subscription_id))


async def dispatch(context: JobContext, timestamp: int) -> None:
    resources = resources_of(context)
    deferred = 0
    for subscription_id in await delivery.subscriptions_with_work(resources.sessionmaker):
        deferred += await defer_delivery(context.app, subscription_id)
    if deferred:
        log.info("webhook.dispatched", runs=deferred)


async def deliver(context: JobContext, subscription_id: str) -> None:
    resources = resources_of(context)
    outcome = await delivery.deliver(
        resources.sessionmaker,
        resources.secret_box,
        resources.webhook_http,
        uuid.UUID(subscription_id),
        timeout_seconds=resources.settings.webhook_timeout_seconds,
    )
    if outcome.more:
        await defer_delivery(context.app, subscription_id)


def register(queue: procrastinate.App) -> None:
    """Put this feature's jobs on `queue` (app/worker/queue.py makes a fresh queue each time)."""
    queue.periodic(cron=DISPATCH_CRON, periodic_id="dispatch")(
        queue.task(name=DISPATCH, queueing_lock="webhooks-dispatch", pass_context=True)(dispatch)
    )
    queue.task(name=DELIVER, pass_context=True)(deliver)
