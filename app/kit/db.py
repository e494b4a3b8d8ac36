"""Database plumbing: the declarative base, the engine, the two ways code gets a session, and the driver's way.

- `DbSession`: for routes that only talk to Postgres. A write (POST, PATCH, DELETE) is one transaction: services
  `flush()`, never `commit()`, and the dependency commits after the route returns and before the response is sent
  (`scope="function"`), so a failed commit becomes the response instead of a surprise after it. A read (GET, HEAD)
  runs without a transaction (autocommit): no BEGIN and COMMIT round trips, and each statement sees every write
  committed before it began.
- `Sessions`: the session factory, for flows that also call TikTok. They open one short transaction per phase
  and hold no connection while TikTok answers, so slow TikTok calls can never exhaust the pool.
- `DriverConnection` (and `driver_connection`, `DriverStatement`): a connection of the same pool as asyncpg's own,
  for the reads callers poll (one authorization, the list, the quota, the deletion verdict) and the rate budget's
  turns: statements written with SQLAlchemy and compiled once, no ORM and no SQLAlchemy work per request.

When Postgres cannot be reached, `is_database_unavailable` says so and the request is answered 503.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Annotated, Any, cast

import asyncpg
from fastapi import Depends, Request
from sqlalchemy import ClauseElement, DateTime, MetaData, func
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects.postgresql import asyncpg as asyncpg_dialect
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.sql.compiler import SQLCompiler

from app.kit.pool import FairQueuePool

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# What a request can raise when Postgres is gone, refuses connections, or the pool has none free in time.
# asyncpg raises the socket's OSError as it is when it cannot connect (refused, no such socket, timed out);
# nothing else a request does raises a bare OSError (TikTok's failures are the adapter's own errors).
DATABASE_ERROR_TYPES: tuple[type[Exception], ...] = (
    sa_exc.DBAPIError,
    sa_exc.TimeoutError,
    asyncpg.PostgresError,
    OSError,
)

# SQLSTATE classes that mean "not now" rather than "wrong": 08 connection exception, 57P operator intervention
# (shutting down, starting up: "cannot connect now"), 53300 too many connections.
_UNAVAILABLE_SQLSTATES = ("08", "57P", "53300")


def is_database_unavailable(error: BaseException) -> bool:
    """Whether `error` means "Postgres cannot be reached now" (answer 503, retry later) rather than a bug."""
    if isinstance(error, sa_exc.DBAPIError):
        # SQLAlchemy sets connection_invalidated when the connection died under the statement (and drops it from
        # the pool); errors while connecting carry only the server's SQLSTATE.
        return error.connection_invalidated or _sqlstate(error.orig).startswith(_UNAVAILABLE_SQLSTATES)
    if isinstance(error, asyncpg.PostgresError):
        return _sqlstate(error).startswith(_UNAVAILABLE_SQLSTATES)
    return isinstance(error, (sa_exc.TimeoutError, OSError))


def _sqlstate(error: object) -> str:
    return str(getattr(error, "sqlstate", None) or "")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: DateTime(timezone=True)}


class IdMixin:
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)


class TimestampMixin:
    # Read server-side defaults back with RETURNING at flush, so no lazy load is needed to see them.
    __mapper_args__ = {"eager_defaults": True}

    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now(), onupdate=func.now())


def create_engine(
    url: str,
    *,
    pool_size: int = 10,
    pool_overflow: int = 0,
    connect_timeout_seconds: float = 5.0,
    pool_timeout_seconds: float = 10.0,
) -> AsyncEngine:
    return create_async_engine(
        url,
        # A fixed pool by default: under more concurrent requests than `pool_size`, requests wait for a connection
        # in the order they asked (app/kit/pool.py), at most `pool_timeout_seconds`, then 503
        # `database_unavailable`. `pool_overflow` more connections may be opened under load, but each is closed
        # again when it is returned to a full pool: under steady load, a new Postgres backend per request. No
        # request holds two connections at once (tests/api/test_pool.py), so a fixed pool cannot deadlock on itself.
        poolclass=FairQueuePool,
        pool_size=pool_size,
        max_overflow=pool_overflow,
        pool_timeout=pool_timeout_seconds,
        # No ping before each use (a round trip per request). A connection that died (Postgres restarted) fails the
        # one request that meets it, answered 503 `database_unavailable` (retry: it is safe); SQLAlchemy then drops
        # every connection opened before the failure, so the next requests get new ones: recovery needs no restart.
        # A Postgres that does not answer is "unavailable" within seconds, not after asyncpg's 60 s default.
        connect_args={"timeout": connect_timeout_seconds},
        # Errors and logs must not carry bound parameters: they hold encrypted codes, fingerprints, captions.
        hide_parameters=True,
    )


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    # expire_on_commit=False: objects stay readable after the commit, with no hidden lazy I/O.
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)


def create_read_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions on the same pool that open no transaction: each statement commits (reads see their own snapshot)."""
    return async_sessionmaker(
        engine.execution_options(isolation_level="AUTOCOMMIT"), expire_on_commit=False, autoflush=False
    )


_READ_METHODS = frozenset({"GET", "HEAD"})


async def _engine(request: Request) -> AsyncEngine:
    engine: AsyncEngine = request.app.state.engine
    return engine


async def _sessionmaker(request: Request) -> async_sessionmaker[AsyncSession]:
    sessionmaker: async_sessionmaker[AsyncSession] = request.app.state.sessionmaker
    return sessionmaker


async def _request_session(request: Request) -> AsyncIterator[AsyncSession]:
    if request.method in _READ_METHODS:
        reader: async_sessionmaker[AsyncSession] = request.app.state.read_sessionmaker
        async with reader() as session:
            yield session
        return
    sessionmaker: async_sessionmaker[AsyncSession] = request.app.state.sessionmaker
    async with sessionmaker() as session:
        try:
            yield session
        except BaseException:
            await session.rollback()
            raise
        else:
            await session.commit()


DbSession = Annotated[AsyncSession, Depends(_request_session, scope="function")]


@asynccontextmanager
async def driver_connection(engine: AsyncEngine) -> AsyncIterator[asyncpg.Connection]:
    """A connection of the engine's pool as asyncpg's own, for the hot reads: no ORM, no SQLAlchemy statement, no
    transaction. SQLAlchemy's execution path costs about twice the query itself per request (its greenlet bridge,
    the statement's cache key, the result's processing), which the reads that callers poll do not need.

    A connection that died under it is what SQLAlchemy would make of it: the error becomes a DBAPIError with
    `connection_invalidated` (503 `database_unavailable`), the connection is dropped, and so is every connection
    opened before it (as SQLAlchemy does on a disconnect), so that one restart of Postgres costs one answer."""
    async with engine.connect() as connection:
        fairy = await connection.get_raw_connection()
        driver: asyncpg.Connection = fairy.driver_connection
        try:
            yield driver
        except (asyncpg.PostgresConnectionError, asyncpg.InterfaceError, OSError) as error:
            if not (isinstance(error, (asyncpg.PostgresConnectionError, OSError)) or driver.is_closed()):
                raise  # a misuse of the connection, not a lost one
            # Pool._invalidate is what SQLAlchemy's own disconnect handling calls: every connection checked out
            # before now is replaced when next used, not just this one.
            engine.sync_engine.pool._invalidate(fairy, error)
            raise sa_exc.DBAPIError(None, None, error, connection_invalidated=True) from error


_ASYNCPG = asyncpg_dialect.dialect()  # type: ignore[no-untyped-call]


@dataclass(frozen=True, slots=True)
class DriverStatement:
    """A SQLAlchemy statement compiled once, for asyncpg (`$n` placeholders): written with the models' columns
    and SQL rules (`Authorization.status_at`), run on a `driver_connection` with no SQLAlchemy work per request.
    Its parameters are named (`bindparam`) and must be asyncpg's own types (UUID, datetime, str, int)."""

    sql: str
    names: tuple[str, ...]  # of `$1`, `$2`...
    constants: dict[str, Any]  # the statement's own values; every other name is a parameter the caller must give

    @classmethod
    def of(cls, statement: ClauseElement) -> DriverStatement:
        compiled = cast(SQLCompiler, statement.compile(dialect=_ASYNCPG))
        names = tuple(compiled.positiontup or ())
        constants = {name: _plain(compiled.params[name]) for name in names if not compiled.binds[name].required}
        return cls(str(compiled), names, constants)

    def _args(self, params: dict[str, Any]) -> list[Any]:
        missing = {name for name in self.names if name not in self.constants} - params.keys()
        unknown = params.keys() - set(self.names)
        if missing or unknown:
            raise TypeError(f"parameters missing: {sorted(missing)}, unknown: {sorted(unknown)}")
        return [self.constants[name] if name in self.constants else params[name] for name in self.names]

    async def fetch(self, connection: asyncpg.Connection, **params: Any) -> list[asyncpg.Record]:
        rows: list[asyncpg.Record] = await connection.fetch(self.sql, *self._args(params))
        return rows

    async def fetchrow(self, connection: asyncpg.Connection, **params: Any) -> asyncpg.Record | None:
        row: asyncpg.Record | None = await connection.fetchrow(self.sql, *self._args(params))
        return row


def _plain(value: Any) -> Any:
    # The statement's own constants (an enum's value compared with a column) as the driver takes them.
    return value.value if isinstance(value, Enum) else value


async def _request_driver_connection(request: Request) -> AsyncIterator[asyncpg.Connection]:
    async with driver_connection(request.app.state.engine) as connection:
        yield connection


# For GET routes that read with SQL of their own (repository functions taking an asyncpg connection): autocommit,
# so each statement sees every write committed before it began.
DriverConnection = Annotated[asyncpg.Connection, Depends(_request_driver_connection, scope="function")]
Sessions = Annotated[async_sessionmaker[AsyncSession], Depends(_sessionmaker)]
# For flows that read on a `driver_connection` between calls to TikTok (the confirmed deletion verdict).
DbEngine = Annotated[AsyncEngine, Depends(_engine)]
