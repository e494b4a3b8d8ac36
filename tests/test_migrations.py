"""The schema is built by the migrations, they reverse cleanly, and they match the models (no drift)."""

from __future__ import annotations

import uuid

from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from tests.conftest import create_database, run_alembic


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
