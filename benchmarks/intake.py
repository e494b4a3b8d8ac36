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
import statistics
import time
import tracemalloc
from collections.abc import Awaitable, Callable

import httpx
import stamina

from benchmarks.harness import migrated_postgres, percentile, started
from dev.sandbox.app import create_sandbox_app

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
        stamina.set_active(False)  # no retry is expected; never sleep inside a measurement
        async with started(url, httpx.ASGITransport(app=create_sandbox_app())) as (_, client):
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


class _SlowTikTok(httpx.AsyncBaseTransport):
    """The sandbox, answering every call after `seconds`: TikTok on a bad day."""

    def __init__(self, seconds: float) -> None:
        self._inner = httpx.ASGITransport(app=create_sandbox_app())
        self._seconds = seconds

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(self._seconds)
        return await self._inner.handle_async_request(request)


async def reads_while_tiktok_is_slow(url: str, *, applies: int, tiktok_seconds: float) -> list[str]:
    """GET one authorization alone, then while `applies` intakes wait on a TikTok that answers in
    `tiktok_seconds`: no connection is held while TikTok answers, so reads should not notice."""
    async with started(url, _SlowTikTok(tiktok_seconds), tiktok_deadline_seconds=30) as (app, client):
        base = 3 * 10**15
        registered = await asyncio.gather(
            *(
                client.post("/v1/advertisers", json={"tiktok_advertiser_id": str(base + index), "access_token": "t"})
                for index in range(applies + 1)
            )
        )
        for response in registered:
            response.raise_for_status()
        first = await client.post(f"/v1/advertisers/{base}/authorizations", json={"auth_code": CODE})
        path = f"/v1/authorizations/{first.json()['id']}"

        async def read_for(seconds: float | None, count: int | None = None) -> list[float]:
            timings: list[float] = []
            loop = asyncio.get_running_loop()
            stop = loop.time() + seconds if seconds is not None else None
            while (stop is None or loop.time() < stop) and (count is None or len(timings) < count):
                started = time.perf_counter()
                (await client.get(path)).raise_for_status()
                timings.append(time.perf_counter() - started)
            return timings

        alone = await read_for(None, count=200)
        intakes = [
            asyncio.create_task(
                client.post(f"/v1/advertisers/{base + 1 + index}/authorizations", json={"auth_code": CODE})
            )
            for index in range(applies)
        ]
        peak_connections = 0

        async def watch_pool() -> None:
            nonlocal peak_connections
            while not all(task.done() for task in intakes):
                peak_connections = max(peak_connections, app.state.engine.pool.checkedout())
                await asyncio.sleep(0.01)

        watcher = asyncio.create_task(watch_pool())
        during = await read_for(tiktok_seconds * 1.5)
        statuses = [(await task).status_code for task in intakes]
        await watcher
    p50, p99 = (
        (percentile(alone, 0.5), percentile(during, 0.5)),
        (percentile(alone, 0.99), percentile(during, 0.99)),
    )
    return [
        f"GET one authorization while {applies} intakes wait {tiktok_seconds:g} s on each TikTok call"
        f" ({statuses.count(201)}/{applies} applied; at most {peak_connections} connections in use at once):",
        f"  {'':20} {'p50':>9} {'p99':>9}",
        f"  {'alone':20} {p50[0] * 1000:7.2f}ms {p99[0] * 1000:7.2f}ms",
        f"  {'during the intakes':20} {p50[1] * 1000:7.2f}ms {p99[1] * 1000:7.2f}ms",
        f"  {'ratio':20} {p50[1] / p50[0]:8.1f}x {p99[1] / p99[0]:8.1f}x",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=200)
    args = parser.parse_args()
    with migrated_postgres() as url:
        rows = asyncio.run(run(url, args.rounds))
        slow = asyncio.run(reads_while_tiktok_is_slow(url, applies=30, tiktok_seconds=2.0))
    print(f"{'operation':55} {'median':>10} {'time x':>8} {'memory x':>9}")
    for name, seconds, ratio, memory in rows:
        print(f"{name:55} {seconds * 1000:8.2f}ms {ratio:8.1f} {memory:9.1f}")
    print()
    print("\n".join(slow))


if __name__ == "__main__":
    main()
