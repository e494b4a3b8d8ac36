"""The schema is built by the migrations, they reverse cleanly, and they match the models (no drift)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import uuid

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from tests.conftest import ROOT, create_database, run_alembic

# MIGRATION_LOCK_KEY of migrations/env.py, repeated rather than imported: importing env.py would run Alembic.
# Were the two to differ, the upgrades would never wait on the lock held below, and the test would fail.
MIGRATION_LOCK_KEY = 3746917218142040416
# Only a bound on a failing run; a passing run waits for events, never for time.
TIMEOUT_SECONDS = 60.0


async def _execute(url: str, statement: str) -> object:
    """Run one statement in its own transaction; return the first column of the first row, if any."""
    engine = create_async_engine(url)
    try:
        async with engine.begin() as connection:
            result = await connection.execute(text(statement))
            return result.scalar() if result.returns_rows else None
    finally:
        await engine.dispose()


class TestMigrations:
    async def test_upgrade_check_downgrade_upgrade(self, postgres_server_url: str) -> None:
        url = await create_database(postgres_server_url, f"spark_migrations_{uuid.uuid4().hex[:8]}")
        for step in (("upgrade", "head"), ("check",), ("downgrade", "base"), ("upgrade", "head"), ("check",)):
            result = run_alembic(url, *step)
            assert result.returncode == 0, f"alembic {' '.join(step)} failed:\n{result.stdout}\n{result.stderr}"

    async def test_check_detects_drift(self, postgres_server_url: str) -> None:
        """`alembic check` is only worth running if it fails on a schema that differs from the models."""
        url = await create_database(postgres_server_url, f"spark_drift_{uuid.uuid4().hex[:8]}")
        assert run_alembic(url, "upgrade", "head").returncode == 0
        await _execute(url, "ALTER TABLE advertisers ADD COLUMN stray text")
        assert run_alembic(url, "check").returncode != 0

    async def test_bootstrap_key_from_before_0002_becomes_admin(self, postgres_server_url: str) -> None:
        url = await create_database(postgres_server_url, f"spark_0002_{uuid.uuid4().hex[:8]}")
        assert run_alembic(url, "upgrade", "0001").returncode == 0
        await _execute(
            url, "INSERT INTO api_keys (id, name, key_hash) VALUES (gen_random_uuid(), 'bootstrap', '\\x01')"
        )
        assert run_alembic(url, "upgrade", "head").returncode == 0
        assert await _execute(url, "SELECT is_admin FROM api_keys") is True


async def _start_alembic(url: str, *args: str) -> asyncio.subprocess.Process:
    """Start the Alembic CLI as `run_alembic` runs it, without waiting for it."""
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "alembic",
        *args,
        cwd=ROOT,
        env={**os.environ, "DATABASE_URL": url},
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def _output(process: asyncio.subprocess.Process) -> str:
    stdout, stderr = await asyncio.wait_for(process.communicate(), TIMEOUT_SECONDS)
    return f"exit {process.returncode}\n{stdout.decode()}\n{stderr.decode()}"


async def _wait_until_waiting_on_migration_lock(
    observer: AsyncEngine, processes: list[asyncio.subprocess.Process]
) -> None:
    """Return once every process's session waits for the migration lock; fail if one ends first, or on timeout."""
    # `observer` autocommits: within one transaction pg_stat_activity would keep showing its first snapshot.
    statement = text(
        """
        SELECT count(*)
        FROM pg_locks AS l JOIN pg_stat_activity AS a ON a.pid = l.pid
        WHERE l.locktype = 'advisory' AND NOT l.granted
          AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
          AND (l.classid::bigint << 32) | l.objid::bigint = :key AND l.objsubid = 1
          AND a.wait_event_type = 'Lock' AND a.wait_event = 'advisory'
        """
    )
    deadline = asyncio.get_running_loop().time() + TIMEOUT_SECONDS
    waiting = 0
    while waiting < len(processes):
        for process in processes:
            if process.returncode is not None:
                pytest.fail(f"alembic ended without waiting for the migration lock:\n{await _output(process)}")
        if asyncio.get_running_loop().time() > deadline:
            pytest.fail(f"after {TIMEOUT_SECONDS}s, {waiting} of {len(processes)} runs wait for the migration lock")
        await asyncio.sleep(0.05)
        async with observer.connect() as connection:
            waiting = (await connection.execute(statement, {"key": MIGRATION_LOCK_KEY})).scalar_one()


class TestConcurrentUpgrades:
    async def test_replicas_starting_together_migrate_once(self, postgres_server_url: str) -> None:
        """Two replicas start while the migration lock is held: both wait, one migrates, the other finds head."""
        url = await create_database(postgres_server_url, f"spark_concurrent_{uuid.uuid4().hex[:8]}")
        holder = create_async_engine(url)
        observer = create_async_engine(url, isolation_level="AUTOCOMMIT")
        replicas: list[asyncio.subprocess.Process] = []
        try:
            async with holder.connect() as held:
                await held.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
                replicas = [await _start_alembic(url, "upgrade", "head") for _ in range(2)]
                await _wait_until_waiting_on_migration_lock(observer, replicas)
                await held.rollback()  # ends the transaction, and with it the lock
            outputs = [await _output(replica) for replica in replicas]
        finally:
            for replica in replicas:
                if replica.returncode is None:
                    with contextlib.suppress(ProcessLookupError):  # it may end just before
                        replica.kill()
                    await replica.wait()
            await holder.dispose()
            await observer.dispose()

        assert [replica.returncode for replica in replicas] == [0, 0], "\n".join(outputs)
        # Whichever got the lock first ran the revisions; the other found the schema at head.
        assert sorted("Running upgrade" in output for output in outputs) == [False, True], "\n".join(outputs)
        current = run_alembic(url, "current")
        assert current.returncode == 0, current.stderr
        assert "(head)" in current.stdout, current.stdout
        check = run_alembic(url, "check")
        assert check.returncode == 0, f"{check.stdout}\n{check.stderr}"
