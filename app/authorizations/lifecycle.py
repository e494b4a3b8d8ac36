"""What time does to authorizations, recorded by the worker's sweep (D3): windows that end, and reminders before.

Reads never wait for this: an ended window reads as expired at once (`Authorization.status_at`). The sweep makes
the change news: it records when it noticed (`expired_at`) and writes `authorization.expired`, and it writes
`authorization.expiring` at each configured lead time before the end (EXPIRY_REMINDER_LEADS), once per lead time
and window. Both read partial indexes that hold only what is still to do, so a sweep costs what is due, not the
size of the table. Rows are taken `FOR UPDATE SKIP LOCKED` and every condition is in the statement, so any number
of workers may sweep at once: each change, and its event, happens once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.authorizations import repository
from app.authorizations.events import authorization_event, authorizations_changed
from app.authorizations.models import Authorization, AuthorizationState
from app.events import service as events
from app.events.models import EventType
from app.kit import clock
from app.kit.settings import Settings

log = structlog.get_logger(__name__)

BATCH = 500
# A pending row (its apply still under way) is looked at again this much later.
_PENDING_RECHECK = timedelta(minutes=1)


@dataclass(slots=True)
class SweepReport:
    expired: int = 0
    reminded: int = 0


async def sweep_now(sessionmaker: async_sessionmaker[AsyncSession], settings: Settings) -> SweepReport:
    """The sweep as the worker runs it: at the clock's now, with the configured lead times."""
    return await sweep(sessionmaker, now=clock.utcnow(), leads=settings.expiry_reminder_leads)


async def sweep(
    sessionmaker: async_sessionmaker[AsyncSession], *, now: datetime, leads: Sequence[int], batch: int = BATCH
) -> SweepReport:
    """Record every window that has ended by `now`, and every reminder due by `now`; a batch per transaction."""
    report = SweepReport()
    while (done := await _expire_batch(sessionmaker, now=now, batch=batch)) > 0:
        report.expired += done
        if done < batch:
            break
    while True:
        looked_at, reminded = await _remind_batch(sessionmaker, now=now, leads=leads, batch=batch)
        report.reminded += reminded
        if looked_at < batch:
            break
    if report.expired or report.reminded:
        log.info("authorizations.swept", expired=report.expired, reminded=report.reminded)
    return report


async def _expire_batch(sessionmaker: async_sessionmaker[AsyncSession], *, now: datetime, batch: int) -> int:
    async with sessionmaker.begin() as session:
        rows = await repository.lock_ended(session, now=now, limit=batch)
        await repository.record_expired(session, [row.id for row in rows], now=now)
        await authorizations_changed(session, EventType.authorization_expired, rows, now=now)
    return len(rows)


async def _remind_batch(
    sessionmaker: async_sessionmaker[AsyncSession], *, now: datetime, leads: Sequence[int], batch: int
) -> tuple[int, int]:
    """One batch of rows whose reminders are due to be looked at: (rows looked at, reminders written)."""
    async with sessionmaker.begin() as session:
        rows = await repository.lock_reminders_due(session, now=now, limit=batch)
        due: list[tuple[Authorization, int]] = []
        schedules = []
        for row in rows:
            plan = _plan_reminder(row, now=now, leads=leads)
            schedules.append(repository.ReminderSchedule(row.id, plan.next_at, plan.reminded_lead_seconds))
            if plan.sent is not None:
                due.append((row, plan.sent))
        await repository.set_reminder_schedules(session, schedules)
        await events.record_many(
            session,
            [
                authorization_event(
                    EventType.authorization_expiring,
                    row,
                    now=now,
                    lead_seconds=lead,
                    ends_at=row.auth_end_at.isoformat() if row.auth_end_at else None,
                )
                for row, lead in due
            ],
        )
    return len(rows), len(due)


@dataclass(frozen=True, slots=True)
class _ReminderPlan:
    sent: int | None  # the lead time to remind of now
    next_at: datetime | None  # when to look at the row again
    reminded_lead_seconds: int | None


def _plan_reminder(row: Authorization, *, now: datetime, leads: Sequence[int]) -> _ReminderPlan:
    """The row's reminder schedule moved on: the lead time to remind of now, if one is due, and what to store.

    When several lead times have passed unseen (the worker was down), only the shortest is sent: the longer ones
    would be stale news. A window that moves resets the schedule (the trigger of migration 0008).
    """
    reminded = row.reminded_lead_seconds
    if row.state == AuthorizationState.pending.value:
        return _ReminderPlan(None, now + _PENDING_RECHECK, reminded)
    end = row.auth_end_at
    if row.state != AuthorizationState.active.value or end is None or row.revoked_at is not None or end <= now:
        return _ReminderPlan(None, None, reminded)
    remaining = (end - now).total_seconds()
    not_sent = [lead for lead in leads if reminded is None or lead < reminded]
    passed = [lead for lead in not_sent if lead >= remaining]
    sent = min(passed) if passed else None
    upcoming = [lead for lead in not_sent if lead < remaining and (sent is None or lead < sent)]
    next_at = end - timedelta(seconds=max(upcoming)) if upcoming else None
    return _ReminderPlan(sent, next_at, sent if sent is not None else reminded)
