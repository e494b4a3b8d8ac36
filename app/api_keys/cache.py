"""The API keys this process authenticated recently, so that most requests need no round trip to authenticate.

An entry is used for at most `API_KEY_CACHE_SECONDS` after it was read: that bounds how long a change to a key
(revoked, scopes, ad accounts granted or taken away) can go unseen by a replica. In practice a change is seen at
once: migration 0009's triggers `pg_notify` the key's id when its transaction commits, every replica listens
(`listening`) and forgets that key; a commit made in this process also forgets the keys it changed before the
response is sent (`forget_after_commit`), so the replica that made a change never serves the old state. When the
listening connection is lost, the cache is emptied on reconnecting, and the time bound holds meanwhile.
Only keys that authenticated are kept: a new key works at its first request.

Under load an entry expires while dozens of requests with that key are in flight, and each would read the key at
the same moment: a burst that set the p99 of reads. Requests that miss the same key while it is being read wait for
that one read (`read_once`). A read begun before something was forgotten is neither kept nor joined by the requests
that come after: they read again.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager, suppress
from functools import partial

import asyncpg
import structlog
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session

from app.api_keys.access import Caller

log = structlog.get_logger(__name__)

CHANNEL = "spark_api_keys"
LISTENER_NAME = "spark-api-key-cache"  # the listening connection's application_name, as pg_stat_activity shows it
MAX_ENTRIES = 10_000  # keys in use at once: far more than a deployment has; past it, start again
_RETRY_SECONDS = 1.0
_CHANGED = "api_keys.changed"  # in a session's info: the keys its transaction changed
_CACHE = "api_keys.cache"  # in a session's info: the cache of the app the session belongs to


class KeyCache:
    def __init__(self, seconds: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds = seconds
        self.clock = clock  # what entries' ages are measured on (tests move it)
        self._entries: dict[bytes, tuple[float, Caller]] = {}
        self._reads: dict[bytes, asyncio.Future[Caller]] = {}  # the reads under way, by key hash
        self._forgets = 0  # how many times anything was forgotten: a read begun before a forget is not kept

    def get(self, key_hash: bytes) -> Caller | None:
        entry = self._entries.get(key_hash)
        if entry is None:
            return None
        if self.clock() - entry[0] >= self.seconds:
            del self._entries[key_hash]
            return None
        return entry[1]

    def put(self, key_hash: bytes, caller: Caller, *, read_at: float) -> None:
        """`read_at`: `self.clock()` before the key was read, so that the bound counts from the read."""
        if self.seconds <= 0:
            return
        if len(self._entries) >= MAX_ENTRIES:
            self._entries.clear()
        self._entries[key_hash] = (read_at, caller)

    async def read_once(self, key_hash: bytes, read: Callable[[], Awaitable[Caller]]) -> Caller:
        """What `read()` answers, kept; every request that asks about the same key meanwhile waits for the same read.
        The read goes on if the request that began it goes away: the others still wait for it."""
        if self.seconds <= 0:  # nothing is kept: every request reads for itself
            return await read()
        shared = self._reads.get(key_hash)
        if shared is None:
            shared = asyncio.ensure_future(self._read_and_keep(key_hash, read))
            self._reads[key_hash] = shared
            shared.add_done_callback(partial(self._read_ended, key_hash))
        return await asyncio.shield(shared)

    async def _read_and_keep(self, key_hash: bytes, read: Callable[[], Awaitable[Caller]]) -> Caller:
        read_at, forgets = self.clock(), self._forgets
        caller = await read()
        if self._forgets == forgets:
            self.put(key_hash, caller, read_at=read_at)
        return caller

    def _read_ended(self, key_hash: bytes, read: asyncio.Future[Caller]) -> None:
        if self._reads.get(key_hash) is read:
            del self._reads[key_hash]
        if not read.cancelled():
            read.exception()  # retrieved: its waiters raise it; if they all went away, nobody has to

    def forget(self, api_key_id: uuid.UUID | None) -> None:
        """Forget one key (None: every key), and any read under way: the requests that follow read again."""
        self._forgets += 1
        self._reads.clear()
        if api_key_id is None:
            self._entries.clear()
            return
        # A copy first: a commit in another thread (uvicorn in a test's thread) may forget while this one reads.
        for key_hash, (_, caller) in list(self._entries.items()):
            if caller.api_key_id == api_key_id:
                self._entries.pop(key_hash, None)


def attach(sessionmaker: async_sessionmaker[AsyncSession], cache: KeyCache) -> None:
    """Sessions from `sessionmaker` forget the keys they changed in `cache` when they commit (see `changed`)."""
    sessionmaker.configure(info={_CACHE: cache})


def changed(session: AsyncSession, api_key_ids: Iterable[uuid.UUID]) -> None:
    """These keys change in this session's transaction: its process's cache forgets them once it commits."""
    session.sync_session.info.setdefault(_CHANGED, set()).update(api_key_ids)


@event.listens_for(Session, "after_commit")
def forget_after_commit(session: Session) -> None:
    api_key_ids = session.info.pop(_CHANGED, ())
    cache: KeyCache | None = session.info.get(_CACHE)
    if cache is not None:
        for api_key_id in api_key_ids:
            cache.forget(api_key_id)


@event.listens_for(Session, "after_rollback")
def _nothing_changed(session: Session) -> None:
    session.info.pop(_CHANGED, None)


def _on_notification(cache: KeyCache, payload: str) -> None:
    try:
        cache.forget(None if payload == "*" else uuid.UUID(payload))
    except ValueError:
        cache.forget(None)


@asynccontextmanager
async def listening(cache: KeyCache, database_url: str) -> AsyncIterator[None]:
    """Listens for key changes on a connection of its own (not the pool's) while the block runs."""
    if cache.seconds <= 0:
        yield
        return
    dsn = make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)
    task = asyncio.create_task(_listen_forever(cache, dsn), name="api-key-cache-listener")
    try:
        yield
    finally:
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task


async def _listen_forever(cache: KeyCache, dsn: str) -> None:
    while True:
        connection: asyncpg.Connection | None = None
        try:
            connection = await asyncpg.connect(dsn, timeout=5, server_settings={"application_name": LISTENER_NAME})
            lost = asyncio.Event()
            connection.add_termination_listener(lambda _, lost=lost: lost.set())
            await connection.add_listener(CHANNEL, lambda _c, _p, _ch, payload: _on_notification(cache, payload))
            cache.forget(None)  # whatever changed while nobody listened
            # An idle connection to a server that vanished is not noticed until it is used: check it as often as
            # entries expire, so that a lost listener never lasts longer than the time bound itself.
            while not lost.is_set():
                with suppress(TimeoutError):
                    await asyncio.wait_for(lost.wait(), timeout=cache.seconds)
                if not lost.is_set():
                    await connection.execute("SELECT 1", timeout=cache.seconds)
        except Exception as error:  # whatever ended it, listen again: the time bound holds meanwhile
            log.warning("api_key_cache.listener_lost", error=type(error).__name__)
        finally:
            cache.forget(None)
            if connection is not None and not connection.is_closed():
                connection.terminate()
        await asyncio.sleep(_RETRY_SECONDS)
