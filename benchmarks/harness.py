"""What every benchmark needs: an embedded Postgres migrated to head, and the app started on it, in-process."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import httpx
from cryptography.fernet import Fernet
from fastapi import FastAPI

from app.kit.settings import Settings
from app.main import create_app
from dev.embedded_postgres import start_embedded_postgres

ROOT = Path(__file__).resolve().parent.parent
API_KEY = "bench-" + "k" * 40


def progress(message: str) -> None:
    """A line on stderr, at once: stdout is the benchmark's report."""
    print(message, file=sys.stderr, flush=True)


def percentile(values: list[float], fraction: float) -> float:
    """The value at `fraction` (0.99: p99) of `values`, nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


@contextmanager
def migrated_postgres() -> Iterator[str]:
    """An embedded Postgres in a temporary folder, migrated to head; deleted afterwards. Yields its URL."""
    folder = Path(tempfile.mkdtemp(prefix="spark-bench-"))
    server, url = start_embedded_postgres(folder / "pgdata", cleanup="delete")
    try:
        subprocess.run(
            [sys.executable, "-m", "alembic", "upgrade", "head"],
            cwd=ROOT,
            env={**os.environ, "DATABASE_URL": url},
            check=True,
            capture_output=True,
        )
        yield url
    finally:
        server.cleanup()
        shutil.rmtree(folder, ignore_errors=True)  # the data is gone; the folder that held it too


@asynccontextmanager
async def started(
    url: str, tiktok: httpx.AsyncBaseTransport, **settings: Any
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """The app on `url`'s database and the given TikTok, started, and a client holding the API key."""
    config = Settings(
        environment="test",
        database_url=url,
        tiktok_api_base_url="https://sandbox.tiktok.invalid/open_api/",
        bootstrap_api_key=API_KEY,
        api_key_secret="bench-hmac-" + "s" * 40,
        encryption_keys=Fernet.generate_key().decode(),
        log_level="WARNING",
        # Neither the rate budget nor background jobs (the sweep, reconciliation, deliveries) are what is measured,
        # unless a benchmark says so.
        **({"tiktok_qps": 1000, "worker_in_process": False} | settings),
    )
    app = create_app(config, tiktok_transport=tiktok)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://bench.test",
            headers={"Authorization": f"Bearer {API_KEY}"},
        ) as client,
    ):
        yield app, client
