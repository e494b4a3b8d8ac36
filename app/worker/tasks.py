"""Every feature's jobs: what `create_queue` puts on each queue. Each feature keeps its jobs in its own tasks.py,
as plain functions and a `register(queue)` that puts them on a queue under their full names (`feature:job`).

(Not procrastinate blueprints: an app that takes a blueprint renames its tasks in place, so a second queue in the
same process, as tests and several in-process workers make, would find them renamed twice.)
"""

from __future__ import annotations

from collections.abc import Callable

import procrastinate

from app.authorizations import tasks as lifecycle
from app.reconcile import tasks as reconcile
from app.webhooks import tasks as webhooks

REGISTRATIONS: tuple[Callable[[procrastinate.App], None], ...] = (
    lifecycle.register,
    reconcile.register,
    webhooks.register,
)
