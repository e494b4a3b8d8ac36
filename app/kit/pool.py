"""The engine's connection pool, first come first served.

SQLAlchemy's asyncio pool queues connections in an `asyncio.Queue`, whose `get` takes a free connection whenever
one is there, even while others have been waiting for one: a returned connection wakes the longest waiter, but a
request that arrives before that waiter runs takes it, and the waiter goes back to the end of the line. At
saturation the same requests lose again and again: in the load benchmark a fixed pool put the p99 of one read at
1.4 s for a p50 of 30 ms. The overflow the default used to allow hid this, at the price of a new Postgres backend
per request under load (85 a second with 32 concurrent reads on a pool of 10), which cost more than the reads.

`FairQueuePool` is SQLAlchemy's own pool (`AsyncAdaptedQueuePool`: overflow, timeout, invalidation, events, all
as they are) over `FairQueue`: a returned connection goes to the longest waiter, handed over directly; a request
that finds others waiting waits behind them. So a fixed pool (`DATABASE_POOL_OVERFLOW=0`, the default) serves
requests in the order they asked, and a connection that was not closed is never left idle while a request waits.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any, Generic, TypeVar, cast

from sqlalchemy.pool import AsyncAdaptedQueuePool
from sqlalchemy.util import await_
from sqlalchemy.util.queue import AsyncAdaptedQueue, Empty

_T = TypeVar("_T")


class FairQueue(AsyncAdaptedQueue[_T], Generic[_T]):
    def __init__(self, maxsize: int = 0, use_lifo: bool = False) -> None:
        super().__init__(maxsize, use_lifo)
        self._waiters: deque[asyncio.Future[_T]] = deque()  # oldest first; each done once it is handed an item

    def put_nowait(self, item: _T) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(item)
                return
        super().put_nowait(item)

    def get_nowait(self) -> _T:
        if self._waiters:  # not before those already waiting
            raise Empty()
        return super().get_nowait()

    def get(self, block: bool = True, timeout: float | None = None) -> _T:
        try:
            return self.get_nowait()
        except Empty:
            if not block:
                raise
        return await_(self._wait(timeout))

    async def _wait(self, seconds: float | None) -> _T:
        waiter: asyncio.Future[_T] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            async with asyncio.timeout(seconds):
                return await waiter
        except BaseException as error:
            if waiter.done() and not waiter.cancelled():
                self.put_nowait(waiter.result())  # handed one just as it gave up: to the next in line
            else:
                waiter.cancel()
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
            if isinstance(error, TimeoutError):
                raise Empty() from error
            raise


class FairQueuePool(AsyncAdaptedQueuePool):
    _queue_class: Any = FairQueue
    # Its log lines under SQLAlchemy's logger, with the rest of the pool's (WARNING unless configured otherwise).
    _sqla_logger_namespace = "sqlalchemy.pool.impl.FairQueuePool"

    def waiting(self) -> int:
        """Requests waiting for a connection now."""
        queue = cast(FairQueue[Any], self._pool)
        return len(queue._waiters)
