"""How fast intake is, relative to a baseline measured in the same run.

`python -m benchmarks.intake` (or `make bench`) starts an embedded Postgres, migrates it, serves the app in-process
wired to the TikTok sandbox, and times each operation against `GET /healthz` on the same machine, in the same run:
the ratios are what to compare between commits, not the absolute numbers. Memory is the peak traced allocation
per request, again as a ratio to the baseline's.

Nothing here asserts: a benchmark reports, and people judge.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import stamina
from cryptography.fernet import Fernet

from app.kit.settings import Settings
from app.main import create_app
from dev.embedded_postgres import start_embedded_postgres
from dev.sandbox.app import create_sandbox_app

ROOT = Path(__file__).resolve().parent.parent
API_KEY = "bench-" + "k" * 40
CODE = "#SBX+video/30d="

Operation = Callable[[int], Awaitable[httpx.Response]]


async def _measure(operation: Operation, rounds: int) -> tuple[float, int]:
    """Median seconds per call (untraced), then peak traced bytes over a second, traced pass."""
    await operation(-1)  # warm-up
    timings = []
    for index in range(rounds):
        started = time.perf_counter()
        response = await operation(index)
        timings.append(time.perf_counter() - started)
        if response.status_code >= 400:
            raise RuntimeError(f"benchmark request failed: {response.status_code} {response.text}")
    tracemalloc.start()
    try:
        for index in range(rounds, rounds + max(rounds // 4, 1)):
            await operation(index)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return statistics.median(timings), peak


async def run(url: str, rounds: int) -> list[tuple[str, float, float, float]]:
    try:
        settings = Settings(
            environment="test",
            database_url=url,
            tiktok_api_base_url="https://sandbox.tiktok.invalid/open_api/",
            bootstrap_api_key=API_KEY,
            encryption_keys=Fernet.generate_key().decode(),
            log_level="WARNING",
        )
        stamina.set_active(False)  # no retry is expected; never sleep inside a measurement
        app = create_app(settings, tiktok_transport=httpx.ASGITransport(app=create_sandbox_app()))
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app),
                base_url="http://bench.test",
                headers={"Authorization": f"Bearer {API_KEY}"},
            ) as client,
        ):
            # One ad account per round, so that every "apply a new code" round really applies one.
            for index in range(-1, rounds + max(rounds // 4, 1)):
                await client.post(
                    "/v1/advertisers", json={"tiktok_advertiser_id": str(10**15 + index + 1), "access_token": "t"}
                )
            first = (await client.post(f"/v1/advertisers/{10**15}/authorizations", json={"auth_code": CODE})).json()

            def advertiser(index: int) -> str:
                return str(10**15 + index + 1)

            operations: list[tuple[str, Operation]] = [
                ("baseline: GET /healthz", lambda i: client.get("/healthz")),
                (
                    "register an ad account (TikTok list + insert)",
                    lambda i: client.post(
                        "/v1/advertisers", json={"tiktok_advertiser_id": str(2 * 10**15 + i + 1), "access_token": "t"}
                    ),
                ),
                (
                    "apply a new code (TikTok info + authorize + insert)",
                    lambda i: client.post(f"/v1/advertisers/{advertiser(i)}/authorizations", json={"auth_code": CODE}),
                ),
                (
                    "apply a code already applied (no TikTok call)",
                    lambda i: client.post(f"/v1/advertisers/{10**15}/authorizations", json={"auth_code": CODE}),
                ),
                ("GET one authorization", lambda i: client.get(f"/v1/authorizations/{first['id']}")),
                (
                    "list authorizations (page of 50)",
                    lambda i: client.get(f"/v1/advertisers/{10**15}/authorizations", params={"limit": 50}),
                ),
            ]
            results = []
            for name, operation in operations:
                seconds, peak = await _measure(operation, rounds)
                results.append((name, seconds, 0.0, float(peak)))
    finally:
        stamina.set_active(True)
    base_seconds, base_peak = results[0][1], results[0][3]
    return [(name, s, s / base_seconds, peak / max(base_peak, 1.0)) for name, s, _, peak in results]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=200)
    args = parser.parse_args()
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
        rows = asyncio.run(run(url, args.rounds))
    finally:
        server.cleanup()
    print(f"{'operation':55} {'median':>10} {'time x':>8} {'memory x':>9}")
    for name, seconds, ratio, memory in rows:
        print(f"{name:55} {seconds * 1000:8.2f}ms {ratio:8.1f} {memory:9.1f}")


if __name__ == "__main__":
    main()
