"""The engine's pool serves requests in the order they asked (app/kit/pool.py), on real Postgres: a returned
connection goes to the longest waiter, never to a request that came later, and none is lost when a waiter gives up.
SQLAlchemy's own asyncio pool fails the first test: its newcomer takes the connection."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from sqlalchemy import exc as sa_exc
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.kit.db import create_engine


@asynccontextmanager
async def pool_of_one(database_url: str, *, seconds: float = 5.0) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url, pool_size=1, pool_overflow=0, pool_timeout_seconds=seconds)
    try:
        yield engine
    finally:
        await engine.dispose()


async def _waiting(engine: AsyncEngine, name: str, served: list[str]) -> asyncio.Task[None]:
    async def use() -> None:
        async with engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
            served.append(name)

    task = asyncio.create_task(use(), name=name)
    await asyncio.sleep(0.05)  # it has asked, and waits
    assert not task.done()
    return task


async def test_a_returned_connection_goes_to_the_longest_waiter_not_to_a_newcomer(database_url: str) -> None:
    served: list[str] = []
    async with pool_of_one(database_url) as engine:
        held = await engine.connect()
        first = await _waiting(engine, "first", served)
        second = await _waiting(engine, "second", served)
        assert engine.sync_engine.pool.waiting() == 2  # type: ignore[attr-defined]  # spark_db_pool_connections
        await held.close()
        # In the same step of the event loop, before either waiter has run: a request that comes now asks last.
        async with engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
            served.append("newcomer")
        await asyncio.gather(first, second)
    assert served == ["first", "second", "newcomer"]


async def test_a_waiter_handed_a_connection_as_it_goes_away_hands_it_on(database_url: str) -> None:
    served: list[str] = []
    async with pool_of_one(database_url, seconds=2.0) as engine:
        held = await engine.connect()
        gone = await _waiting(engine, "gone", served)
        after = await _waiting(engine, "after", served)
        await held.close()  # handed to "gone", which has not run yet...
        gone.cancel()  # ...and goes away first (its client disconnected)
        with pytest.raises(asyncio.CancelledError):
            await gone
        await after  # not left waiting for a connection nobody holds (the pool's timeout would fail it)
    assert served == ["after"]


async def test_a_waiter_that_gives_up_leaves_the_line(database_url: str) -> None:
    async with pool_of_one(database_url, seconds=0.2) as engine:
        held = await engine.connect()
        with pytest.raises(sa_exc.TimeoutError):  # answered 503 database_unavailable
            await engine.connect()
        assert engine.sync_engine.pool.waiting() == 0  # type: ignore[attr-defined]
        await held.close()
        async with engine.connect() as connection:  # at once: nobody ahead of it
            assert (await connection.execute(text("SELECT 1"))).scalar_one() == 1
