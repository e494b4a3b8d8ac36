"""Reads on the driver's connection (app.kit.db.driver_connection), on real Postgres: a connection that died under
one is what SQLAlchemy makes of a lost connection, so that a restart of Postgres costs one answer, not one per
pooled connection."""

from __future__ import annotations

import asyncio
import re

import asyncpg
import pytest
from sqlalchemy import bindparam, select
from sqlalchemy import exc as sa_exc

from app.authorizations.models import Authorization
from app.kit.db import DriverStatement, create_engine, driver_connection, is_database_unavailable


async def _terminate(database_url: str, pids: set[int]) -> None:
    """End these backends as a restart of Postgres would, from a connection of its own."""
    connection = await asyncpg.connect(database_url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        for pid in pids:
            assert await connection.fetchval("SELECT pg_terminate_backend($1)", pid)
    finally:
        await connection.close()


async def test_a_lost_connection_is_unavailable_and_every_older_one_is_replaced(database_url: str) -> None:
    engine = create_engine(database_url, pool_size=2, pool_overflow=0)
    try:
        async with driver_connection(engine) as first, driver_connection(engine) as second:
            pids = {first.get_server_pid(), second.get_server_pid()}
        await _terminate(database_url, pids)
        await asyncio.sleep(0.2)  # asyncpg has seen its sockets close: its error is then "connection is closed"

        with pytest.raises(sa_exc.DBAPIError) as raised:
            async with driver_connection(engine) as connection:
                await connection.fetchval("SELECT 1")
        assert raised.value.connection_invalidated
        assert is_database_unavailable(raised.value)  # 503 database_unavailable, retryable

        # The other pooled connection died too, unused: it is replaced rather than failing the next read.
        async with driver_connection(engine) as first, driver_connection(engine) as second:
            assert [await first.fetchval("SELECT 1"), await second.fetchval("SELECT 1")] == [1, 1]
            assert not {first.get_server_pid(), second.get_server_pid()} & pids
    finally:
        await engine.dispose()


async def test_an_error_of_the_statement_is_left_as_it_is(database_url: str) -> None:
    """Only a lost connection is turned into "unavailable": a bad statement stays the bug it is."""
    engine = create_engine(database_url, pool_size=1, pool_overflow=0)
    try:
        with pytest.raises(asyncpg.UndefinedTableError):
            async with driver_connection(engine) as connection:
                await connection.fetchval("SELECT 1 FROM no_such_table")
        async with driver_connection(engine) as connection:  # and the connection stays in use
            assert await connection.fetchval("SELECT 1") == 1
    finally:
        await engine.dispose()


def test_a_statement_is_compiled_once_with_its_constants() -> None:
    """The statement's own values (an enum compared with a column) are sent as the driver takes them."""
    statement = DriverStatement.of(
        select(Authorization.id).where(Authorization.status_at(Authorization.created_at) == "active")
    )
    assert max(int(n) for n in re.findall(r"\$(\d+)", statement.sql)) == len(statement.names) == 4
    assert all(type(value) is str for value in statement.constants.values())


def test_a_parameter_is_neither_forgotten_nor_made_up() -> None:
    """A parameter left out would be sent as NULL and compare as nothing: it is refused, as is one the statement
    does not take."""
    statement = DriverStatement.of(
        select(Authorization.id).where(Authorization.status_at(bindparam("now")) == "active")
    )
    assert statement._args({"now": 1})[statement.names.index("now")] == 1
    with pytest.raises(TypeError, match="missing"):
        statement._args({})
    with pytest.raises(TypeError, match="unknown"):
        statement._args({"now": 1, "nwo": 2})
