"""One budget of TikTok calls per second for every replica: TikTok counts calls per developer app (TIKTOK_QPS),
whichever process sends them, so the turns are kept in Postgres.

The budget is a row holding the times of the last `qps` calls, oldest first. A call takes the turn a second (and
a tolerance) after the oldest of them, or now if that is past, in one UPDATE, and waits until then: no `qps + 1`
calls fall within one second, however many replicas ask at once. Bursts of up to `qps` calls go at once. Times are
the database's clock (`clock_timestamp()`); each caller places its turn on its own clock to within the query's
round trip, never sends before it, and does not send more than the tolerance after it (a slow round trip, a busy
event loop): it takes another turn instead. So calls are never closer together than a second, and replicas need
no synchronised clocks. A turn that would come after the call's deadline is not taken: the call fails
at once with the time a turn frees, and callers answer 503 `tiktok_rate_limited` with `Retry-After`.
"""

from __future__ import annotations

import asyncio
from datetime import datetime

from sqlalchemy import DateTime, Text, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import Mapped, mapped_column

from app.kit import metrics
from app.kit.db import Base, DriverStatement, driver_connection
from app.tiktok.errors import TikTokBudgetExhausted

BUDGET_NAME = "tiktok"
# How late a caller may wake up after its turn and still send; turns are spaced this much beyond a second, so that
# two calls of one slot are a second apart even when the first went out this late. (About 5% of the budget.)
LATE_TOLERANCE_SECONDS = 0.05


class CallTurns(Base):
    """The times of the last calls to one budget, oldest first (as many as its calls per second)."""

    __tablename__ = "call_turns"

    name: Mapped[str] = mapped_column(Text, primary_key=True)
    turns: Mapped[list[datetime]] = mapped_column(ARRAY(DateTime(timezone=True)))


# Take the turn one second after the oldest of the last `qps` calls, if it comes within `max_wait` seconds.
# Returns how long to wait for it. A missing row, or one sized for another qps, takes no turn here.
_TAKE = DriverStatement.of(
    text(
        """
    UPDATE call_turns AS b
    SET turns = b.turns[2:cardinality(b.turns)]
        || greatest(b.turns[1] + make_interval(secs => CAST(:spacing AS double precision)), clock_timestamp())
    WHERE b.name = :name
      AND cardinality(b.turns) = :qps
      AND greatest(b.turns[1] + make_interval(secs => CAST(:spacing AS double precision)), clock_timestamp())
          <= clock_timestamp() + make_interval(secs => CAST(:max_wait AS double precision))
    RETURNING extract(epoch FROM b.turns[cardinality(b.turns)] - clock_timestamp())::float8
    """
    )
)
# (clock_timestamp() rather than one reading in a CTE: a statement that waited for the row's lock re-checks it
# against the new row, and a CTE joined in UPDATE ... FROM takes no part in that re-check: the row would be skipped.)

# How long until a turn frees (for Retry-After), and whether the row is there and sized for this qps.
_PEEK = DriverStatement.of(
    text(
        """
    SELECT cardinality(turns) = :qps,
           extract(epoch FROM greatest(turns[1] + make_interval(secs => CAST(:spacing AS double precision)),
                                       clock_timestamp()) - clock_timestamp())::float8
    FROM call_turns WHERE name = :name
    """
    )
)

# (Re)make the row for this qps: a fresh budget. Racing replicas agree (the last write wins, both are fresh).
_RESET = DriverStatement.of(
    text(
        """
    INSERT INTO call_turns (name, turns)
    VALUES (:name, array_fill('-infinity'::timestamptz, ARRAY[CAST(:qps AS integer)]))
    ON CONFLICT (name) DO UPDATE SET turns = excluded.turns
    WHERE cardinality(call_turns.turns) <> :qps
    """
    )
)


class PostgresCallBudget:
    """`app.tiktok.client.CallBudget`, kept in Postgres: one statement per turn on a driver connection (each is
    atomic alone, so no transaction: the row is locked only while the statement runs, not for a COMMIT's round
    trip more), and no connection held while waiting for the turn."""

    def __init__(self, engine: AsyncEngine, *, qps: int, name: str = BUDGET_NAME) -> None:
        if qps < 1:
            raise ValueError("qps must be at least 1")
        self._engine = engine
        self._qps = qps
        self._name = name

    async def take_turn(self, *, max_wait_seconds: float) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            await self._take_turn(max_wait_seconds=max_wait_seconds)
        finally:
            metrics.observe_budget_wait(loop.time() - started)

    async def _take_turn(self, *, max_wait_seconds: float) -> None:
        loop = asyncio.get_running_loop()
        give_up_at = loop.time() + max_wait_seconds
        while True:
            earliest, latest = await self._reserve(max(give_up_at - loop.time(), 0.0))
            # The turn is a moment of the database's clock, known here to within the round trip: [earliest,
            # latest] of this process's clock. Sending at `latest` or after is never before the turn; sending by
            # `earliest + tolerance` keeps the call within the tolerance after it, which the spacing allows for.
            await asyncio.sleep(max(latest - loop.time(), 0.0))
            if loop.time() <= earliest + LATE_TOLERANCE_SECONDS:
                return
            # Too late (a slow round trip, a busy event loop): sending now could come within a second of the
            # slot's next call. This turn is left unused; take another.

    async def _reserve(self, max_wait_seconds: float) -> tuple[float, float]:
        """Take a turn; the earliest and the latest moment of this process's clock (`loop.time()`) it may be."""
        loop = asyncio.get_running_loop()
        params = {"name": self._name, "qps": self._qps, "spacing": 1.0 + LATE_TOLERANCE_SECONDS}
        async with driver_connection(self._engine) as connection:
            retry_after = 1.0
            for _ in range(3):
                sent = loop.time()
                taken = await _TAKE.fetchrow(connection, **params, max_wait=max_wait_seconds)
                received = loop.time()
                if taken is not None:
                    wait = float(taken[0])
                    return sent + wait, received + wait
                peek = await _PEEK.fetchrow(connection, **params)
                if peek is None or not peek[0]:
                    await _RESET.fetch(connection, name=self._name, qps=self._qps)  # first use, or a new TIKTOK_QPS
                    continue
                retry_after = float(peek[1])
                if retry_after > max_wait_seconds:
                    break
                # A turn is free now: another caller made the row (or freed a turn) between the two statements.
        raise TikTokBudgetExhausted(
            f"no turn to call TikTok frees within {max_wait_seconds:.1f} s", retry_after_seconds=retry_after
        )
