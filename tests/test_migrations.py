"""The schema is built by the migrations, they reverse cleanly, they carry the data stored before them, and they
match the models (no drift)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import sys
import uuid
from typing import Any

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
        assert await _execute(url, "SELECT 'admin' = ANY(scopes) FROM api_keys") is True


# -- 0003: a Duet/Stitch's original post gets an authorization of its own

ORIGINAL_ITEM_ID = "7380000000000000100"
# Fernet tokens in production; to the migration, bytes to move.
ORIGINAL_CODE = b"the original post's code, encrypted"


async def _query(url: str, statement: str, **params: object) -> list[dict[str, Any]]:
    """Run one statement in its own transaction; every row it returns, as dicts."""
    engine = create_async_engine(url)
    try:
        async with engine.begin() as connection:
            result = await connection.execute(text(statement), params)
            return [dict(row) for row in result.mappings()] if result.returns_rows else []
    finally:
        await engine.dispose()


async def _database_at_0002(postgres_server_url: str) -> str:
    url = await create_database(postgres_server_url, f"spark_0003_{uuid.uuid4().hex[:8]}")
    _alembic(url, "upgrade", "0002")
    return url


def _alembic(url: str, *args: str) -> None:
    result = run_alembic(url, *args)
    assert result.returncode == 0, f"alembic {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"


async def _advertiser_at_0002(url: str, tiktok_advertiser_id: str) -> uuid.UUID:
    advertiser_id = uuid.uuid4()
    await _query(
        url,
        "INSERT INTO advertisers (id, tiktok_advertiser_id, name, access_token_encrypted) "
        "VALUES (:id, :tiktok_id, 'Brand', '\\x01')",
        id=advertiser_id,
        tiktok_id=tiktok_advertiser_id,
    )
    return advertiser_id


async def _authorization_at_0002(
    url: str,
    advertiser_id: uuid.UUID,
    item_id: str,
    *,
    code: bytes,
    original_item_id: str | None = None,
    original_code: bytes | None = None,
) -> uuid.UUID:
    """An active authorization as 0002's schema held it: a Duet kept its original's code on its own row."""
    authorization_id = uuid.uuid4()
    await _query(
        url,
        """
        INSERT INTO authorizations (id, advertiser_id, item_id, item_type, identity_type, identity_id, tiktok_name,
                                    post_status, origin_kind, original_item_id, auth_code_encrypted,
                                    auth_code_fingerprint, auth_code_hint, original_post_auth_code_encrypted,
                                    auth_start_at, auth_end_at, state)
        VALUES (:id, :advertiser_id, :item_id, 'VIDEO', 'AUTH_CODE', 'creator', 'Creator', 'PUBLIC', :origin_kind,
                :original_item_id, :code, :fingerprint, '…abcd', :original_code, now(), now() + interval '30 days',
                'active')
        """,
        id=authorization_id,
        advertiser_id=advertiser_id,
        item_id=item_id,
        origin_kind="duet" if original_item_id else None,
        original_item_id=original_item_id,
        code=code,
        fingerprint=hashlib.sha256(code).digest(),
        original_code=original_code,
    )
    return authorization_id


async def _authorizations(url: str) -> dict[Any, dict[str, Any]]:
    """Every authorization, every column, by id."""
    return {row["id"]: row for row in await _query(url, "SELECT * FROM authorizations")}


def _for_post(rows: dict[Any, dict[str, Any]], advertiser_id: uuid.UUID, item_id: str) -> list[dict[str, Any]]:
    return [row for row in rows.values() if (row["advertiser_id"], row["item_id"]) == (advertiser_id, item_id)]


class TestPairsStoredBefore0003:
    async def test_the_original_post_gets_a_pending_authorization_and_downgrade_puts_its_code_back(
        self, postgres_server_url: str
    ) -> None:
        url = await _database_at_0002(postgres_server_url)
        brand = await _advertiser_at_0002(url, "7000000000000000001")
        duet = await _authorization_at_0002(
            url,
            brand,
            "7380000000000000200",
            code=b"the duet's code",
            original_item_id=ORIGINAL_ITEM_ID,
            original_code=ORIGINAL_CODE,
        )
        plain = await _authorization_at_0002(url, brand, "7380000000000000300", code=b"a plain video's code")
        # Another ad account's authorization of the same original post is not this ad account's.
        other_brand = await _advertiser_at_0002(url, "7000000000000000002")
        elsewhere = await _authorization_at_0002(url, other_brand, ORIGINAL_ITEM_ID, code=b"another brand's code")

        _alembic(url, "upgrade", "head")

        rows = await _authorizations(url)
        (original,) = _for_post(rows, brand, ORIGINAL_ITEM_ID)
        assert original["state"] == "pending"  # for `python -m app.cli settle` to complete from TikTok
        assert original["auth_code_encrypted"] == ORIGINAL_CODE
        assert original["auth_code_fingerprint"] is None  # SQL cannot compute it; settle does
        assert (original["item_type"], original["identity_type"], original["post_status"]) == (
            "VIDEO",
            "AUTH_CODE",
            "UNKNOWN",
        )
        assert (original["claimed_until"], original["original_authorization_id"]) == (None, None)
        assert rows[duet]["original_authorization_id"] == original["id"]
        assert "original_post_auth_code_encrypted" not in rows[duet]
        assert rows[plain]["original_authorization_id"] is None
        assert rows[elsewhere]["state"] == "active"
        assert len(rows) == 4  # one new row: the original post's, for the brand whose Duet it is

        _alembic(url, "downgrade", "0002")

        rows = await _authorizations(url)
        assert rows[duet]["original_post_auth_code_encrypted"] == ORIGINAL_CODE
        assert _for_post(rows, brand, ORIGINAL_ITEM_ID) == []  # the pending row is gone
        assert set(rows) == {duet, plain, elsewhere}

    async def test_an_original_post_already_authorized_is_linked_not_duplicated(self, postgres_server_url: str) -> None:
        url = await _database_at_0002(postgres_server_url)
        brand = await _advertiser_at_0002(url, "7000000000000000001")
        own_code = b"the original's code, applied alone"
        alone = await _authorization_at_0002(url, brand, ORIGINAL_ITEM_ID, code=own_code)
        duet = await _authorization_at_0002(
            url,
            brand,
            "7380000000000000200",
            code=b"the duet's code",
            original_item_id=ORIGINAL_ITEM_ID,
            original_code=ORIGINAL_CODE,
        )

        _alembic(url, "upgrade", "head")

        rows = await _authorizations(url)
        assert set(rows) == {alone, duet}
        assert rows[duet]["original_authorization_id"] == alone
        assert (rows[alone]["state"], rows[alone]["auth_code_encrypted"]) == ("active", own_code)  # untouched

        _alembic(url, "downgrade", "0002")

        rows = await _authorizations(url)
        assert set(rows) == {alone, duet}  # the original's row stays, as a plain authorization
        assert rows[duet]["original_post_auth_code_encrypted"] == own_code  # the code of the row it was linked to

    async def test_two_pairs_of_one_original_share_its_authorization(self, postgres_server_url: str) -> None:
        url = await _database_at_0002(postgres_server_url)
        brand = await _advertiser_at_0002(url, "7000000000000000001")
        pairs = [
            await _authorization_at_0002(
                url,
                brand,
                f"738000000000000020{n}",
                code=f"duet {n}'s code".encode(),
                original_item_id=ORIGINAL_ITEM_ID,
                original_code=ORIGINAL_CODE + str(n).encode(),
            )
            for n in (1, 2)
        ]

        _alembic(url, "upgrade", "head")

        rows = await _authorizations(url)
        (original,) = _for_post(rows, brand, ORIGINAL_ITEM_ID)
        assert original["state"] == "pending"
        assert original["auth_code_encrypted"] in {ORIGINAL_CODE + b"1", ORIGINAL_CODE + b"2"}
        assert [rows[pair]["original_authorization_id"] for pair in pairs] == [original["id"]] * 2


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
