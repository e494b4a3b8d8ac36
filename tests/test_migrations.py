"""The schema is built by the migrations, they reverse cleanly, and they match the models (no drift)."""

from __future__ import annotations

import uuid

from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from tests.conftest import create_database, run_alembic


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
        engine = create_async_engine(url)
        try:
            async with engine.begin() as connection:
                await connection.execute(text("ALTER TABLE advertisers ADD COLUMN stray text"))
        finally:
            await engine.dispose()
        assert run_alembic(url, "check").returncode != 0

    async def test_bootstrap_key_from_before_0002_becomes_admin(self, postgres_server_url: str) -> None:
        url = await create_database(postgres_server_url, f"spark_0002_{uuid.uuid4().hex[:8]}")
        assert run_alembic(url, "upgrade", "0001").returncode == 0
        engine = create_async_engine(url)
        try:
            async with engine.begin() as connection:
                await connection.execute(
                    text("INSERT INTO api_keys (id, name, key_hash) VALUES (gen_random_uuid(), 'bootstrap', '\\x01')")
                )
            assert run_alembic(url, "upgrade", "head").returncode == 0
            async with engine.connect() as connection:
                assert (await connection.execute(text("SELECT is_admin FROM api_keys"))).scalar_one() is True
        finally:
            await engine.dispose()
