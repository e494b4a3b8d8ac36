"""The schema is built by the migrations, they reverse cleanly, and they match the models (no drift)."""

from __future__ import annotations

import uuid

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
        from sqlalchemy import text
        from sqlalchemy.ext.asyncio import create_async_engine

        engine = create_async_engine(url)
        try:
            async with engine.begin() as connection:
                await connection.execute(text("ALTER TABLE advertisers ADD COLUMN stray text"))
        finally:
            await engine.dispose()
        assert run_alembic(url, "check").returncode != 0
