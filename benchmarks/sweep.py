"""Whether the worker's sweep (D3) costs what is due or what is stored, as a ratio.

`python -m benchmarks.sweep` (part of `make bench`) starts an embedded Postgres, migrates it, and fills two ad
accounts' worth of authorizations straight into the table: 10,000 in the first run and 1,000,000 in the second,
of which 1,000 have just ended each time. Every other window ends 8 to 365 days away, its next reminder already
scheduled (as after an earlier sweep). It then times `lifecycle.sweep` (median of `--rounds`, the 1,000 expiries
put back between rounds) and prints the ratio large/small: near 1 means the sweep reads the partial indexes
(`ix_authorizations_expiry`, `ix_authorizations_reminders`), not the table. The plans are printed too.

Nothing here asserts: a benchmark reports, and people judge.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from datetime import UTC, datetime

from sqlalchemy import text

from app.authorizations import lifecycle
from app.kit.db import create_engine, create_sessionmaker
from benchmarks.harness import migrated_postgres

EXPIRING = 1_000
SIZES = (10_000, 1_000_000)
LEADS = [7 * 86400, 3 * 86400, 86400]
# The shape of the sweep's two reads (app/authorizations/lifecycle.py), to show their plans.
_SWEEP_QUERIES = (
    "EXPLAIN SELECT id FROM authorizations WHERE state = 'active' AND expired_at IS NULL AND auth_end_at <= now()",
    "EXPLAIN SELECT id FROM authorizations WHERE next_reminder_at <= now()",
)

_FILL = """
INSERT INTO authorizations (
    id, advertiser_id, item_id, item_type, identity_type, identity_id, post_status, state,
    auth_start_at, auth_end_at, code_start_at, code_end_at, next_reminder_at, created_at, updated_at
)
SELECT gen_random_uuid(), :advertiser_id, (7400000000000000000 + n)::text, 'VIDEO', 'TT_USER', 'bench',
       'HESITATE_RECOMMEND', 'active', now() - interval '30 days', ends, now() - interval '30 days', ends,
       ends - interval '7 days', now(), now()
FROM (
    SELECT n, CASE WHEN n <= :expiring THEN now() - interval '1 second' * n
                   ELSE now() + interval '8 days' + random() * interval '357 days' END AS ends
    FROM generate_series(1, :count) AS n
) AS rows
"""


async def _fill(url: str, count: int) -> None:
    engine = create_engine(url)
    async with engine.begin() as connection:
        await connection.execute(text("TRUNCATE events, ads, authorizations, advertisers CASCADE"))
        advertiser_id = (
            await connection.execute(
                text(
                    "INSERT INTO advertisers (id, tiktok_advertiser_id, access_token_encrypted) "
                    "VALUES (gen_random_uuid(), '7000000000000000001', 'x') RETURNING id"
                )
            )
        ).scalar_one()
        # The trigger would mark every new window as "reminders to plan"; the fill writes the planned state.
        await connection.execute(text("ALTER TABLE authorizations DISABLE TRIGGER authorizations_window_changed"))
        await connection.execute(text(_FILL), {"advertiser_id": advertiser_id, "count": count, "expiring": EXPIRING})
        await connection.execute(text("ALTER TABLE authorizations ENABLE TRIGGER authorizations_window_changed"))
    async with engine.connect() as connection:
        await connection.execution_options(isolation_level="AUTOCOMMIT")
        await connection.execute(text("VACUUM ANALYZE authorizations"))
    await engine.dispose()


async def _reset(url: str) -> None:
    """The 1,000 windows not recorded as ended again, and the table vacuumed, as autovacuum keeps it between real
    sweeps (each round otherwise leaves the last round's dead row versions in the indexes it reads)."""
    engine = create_engine(url)
    async with engine.begin() as connection:
        await connection.execute(text("UPDATE authorizations SET expired_at = NULL WHERE expired_at IS NOT NULL"))
        await connection.execute(text("DELETE FROM events"))
    async with engine.connect() as connection:
        await connection.execution_options(isolation_level="AUTOCOMMIT")
        await connection.execute(text("VACUUM authorizations, events"))
    await engine.dispose()


async def _plans(url: str) -> list[str]:
    engine = create_engine(url)
    lines = []
    async with engine.connect() as connection:
        for query in _SWEEP_QUERIES:
            rows = await connection.execute(text(query))
            lines.append(" / ".join(row[0].strip().split("  (cost")[0] for row in rows))
    await engine.dispose()
    return lines


async def _time_sweeps(url: str, rounds: int) -> tuple[float, int]:
    seconds = []
    expired = 0
    for _ in range(rounds):
        await _reset(url)
        engine = create_engine(url)
        sessionmaker = create_sessionmaker(engine)
        started = time.perf_counter()
        report = await lifecycle.sweep(sessionmaker, now=datetime.now(UTC), leads=LEADS)
        seconds.append(time.perf_counter() - started)
        expired = report.expired
        await engine.dispose()
    return statistics.median(seconds), expired


async def run(url: str, rounds: int) -> list[str]:
    results: dict[int, float] = {}
    lines = [f"Sweep with {EXPIRING:,} windows just ended, median of {rounds} sweeps:"]
    for count in SIZES:
        started = time.perf_counter()
        await _fill(url, count)
        filled = time.perf_counter() - started
        seconds, expired = await _time_sweeps(url, rounds)
        results[count] = seconds
        plans = await _plans(url)
        lines.append(
            f"  {count:>9,} authorizations: {seconds * 1000:8.1f} ms ({expired:,} expired; filled in {filled:.0f} s)"
        )
        lines.extend(f"      plan: {plan}" for plan in plans)
    small, large = SIZES
    lines.append(f"  ratio {large:,} / {small:,}: {results[large] / results[small]:.2f} (goal: near 1)")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    arguments = parser.parse_args()
    with migrated_postgres() as url:
        lines = asyncio.run(run(url, arguments.rounds))
    print("\n".join(lines))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
