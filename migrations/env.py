"""Alembic environment: async engine, URL from DATABASE_URL, the whole schema from app.models.

Online runs hold a Postgres advisory lock (MIGRATION_LOCK_KEY) for their whole transaction, so replicas that
start together and all run `alembic upgrade head` take turns: the first migrates, the others then find the
schema at head and do nothing. Offline runs (`--sql`) only print SQL and take no lock.
"""

from __future__ import annotations

import asyncio
import os
from logging.config import fileConfig

from alembic import context
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from app.models import Base

config = context.config
if config.config_file_name is not None and config.attributes.get("configure_logger", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)

target_metadata = Base.metadata

# The key of the advisory lock that serialises migration runs on one database (advisory locks are per database).
# Any fixed bigint would do, as long as every replica uses the same one and nothing else does: this is the first
# 8 bytes of sha256(b"spark-ads-authorizations: alembic migrations"), shifted right once to keep it positive.
# The app's own advisory locks are hashtextextended() of "authorization:..." strings: only a 64-bit hash
# collision could make one of them wait on this key.
MIGRATION_LOCK_KEY = 3746917218142040416


def _database_url() -> str:
    url = config.attributes.get("database_url") or os.environ.get("DATABASE_URL")
    if not url:
        raise RuntimeError("Set DATABASE_URL (postgresql+asyncpg://...) to run migrations.")
    if url.startswith(("postgres://", "postgresql://")):
        url = "postgresql+asyncpg://" + url.split("://", 1)[1]
    return str(url)


def _configure(connection: Connection | None = None, url: str | None = None) -> None:
    context.configure(
        connection=connection,
        url=url,
        target_metadata=target_metadata,
        compare_type=True,
        compare_server_default=True,
        literal_binds=connection is None,
    )


def run_migrations_offline() -> None:
    # No lock: `--sql` only prints a script, and never reads alembic_version (it starts from the revision given).
    _configure(url=_database_url())
    with context.begin_transaction():
        context.run_migrations()


def _run_sync(connection: Connection) -> None:
    _configure(connection=connection)
    with context.begin_transaction():
        # Replicas may start together, each running `alembic upgrade head`. Wait here for any other run to commit
        # (or roll back) first: the lock is transaction-scoped, and Alembic runs every revision in this one
        # transaction, so it is released only when the whole run has ended. run_migrations() reads
        # alembic_version after this point (it begins with get_current_heads()), and under READ COMMITTED that
        # read sees what the previous holder committed, so a later replica finds head and does nothing.
        # The lock must be taken here, not on the connection before configure(): a statement there would
        # autobegin a transaction that Alembic then treats as the caller's and never commits.
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
        context.run_migrations()


async def run_migrations_online() -> None:
    engine = create_async_engine(_database_url())
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_run_sync)
    finally:
        await engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    asyncio.run(run_migrations_online())
