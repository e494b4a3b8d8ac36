"""How long a batch of 20 codes takes, as ratios of what it cannot beat.

`python -m benchmarks.batch` (part of `make bench`) starts an embedded Postgres, migrates it, and serves the app
in-process wired to the TikTok sandbox behind an injected latency per call (TikTok over a network). Then:

- one code, alone, with a budget that never makes a call wait;
- a batch of 20 codes with that budget, as a ratio of one code (goal <= 1.2: the 20 go through concurrently);
- a batch of 20 codes at TIKTOK_QPS=10, as a ratio of the lower bound that budget sets: 40 calls (info and
  authorize for each code) at 10 a second go out in bursts of 10 a second apart, so the last call cannot leave
  before 3 s, and answers after one latency more (goal <= 1.1).

Median of `--rounds` runs of each, each with new codes on a new ad account. Nothing here asserts.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import statistics
import time

import httpx
import stamina

from benchmarks.harness import migrated_postgres, started
from dev.sandbox.app import create_sandbox_app
from dev.sandbox.seed import bulk_code

BATCH_SIZE = 20
CALLS_PER_CODE = 2  # tt_video/info, then tt_video/authorize


class _Latency(httpx.AsyncBaseTransport):
    """The sandbox, answering each call after `seconds`."""

    def __init__(self, seconds: float) -> None:
        self._inner = httpx.ASGITransport(app=create_sandbox_app())
        self._seconds = seconds

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(self._seconds)
        return await self._inner.handle_async_request(request)


async def _timed(url: str, *, qps: int, latency: float, rounds: int, batch: bool) -> float:
    """Median seconds of one apply (or one batch of 20), each round on a new ad account with new codes."""
    timings = []
    async with started(url, _Latency(latency), tiktok_qps=qps, tiktok_deadline_seconds=60) as (_, client):
        for round_number in range(rounds):
            advertiser = str(9 * 10**15 + qps * 1000 + round_number * 2 + batch)
            response = await client.post(
                "/v1/advertisers", json={"tiktok_advertiser_id": advertiser, "access_token": "t"}
            )
            response.raise_for_status()
            await asyncio.sleep(1.1)  # the registration's turn is a second old: every measurement starts fresh
            first = (round_number * 2 + batch) * BATCH_SIZE + qps
            codes = [bulk_code(first + k) for k in range(BATCH_SIZE if batch else 1)]
            began = time.perf_counter()
            if batch:
                response = await client.post(
                    f"/v1/advertisers/{advertiser}/authorizations/batch",
                    json={"items": [{"auth_code": code} for code in codes]},
                )
                outcomes = [result["outcome"] for result in response.json()["results"]]
                if outcomes != ["created"] * BATCH_SIZE:
                    raise RuntimeError(f"benchmark batch did not apply: {outcomes}")
            else:
                response = await client.post(
                    f"/v1/advertisers/{advertiser}/authorizations", json={"auth_code": codes[0]}
                )
                if response.status_code != 201:
                    raise RuntimeError(f"benchmark apply failed: {response.status_code} {response.text}")
            timings.append(time.perf_counter() - began)
    return statistics.median(timings)


def _lower_bound(qps: int, latency: float) -> float:
    calls = BATCH_SIZE * CALLS_PER_CODE
    return max(CALLS_PER_CODE * latency, (math.ceil(calls / qps) - 1) + latency)


async def run(url: str, *, latency: float, rounds: int) -> list[str]:
    unlimited = 1000
    one = await _timed(url, qps=unlimited, latency=latency, rounds=rounds, batch=False)
    batch_free = await _timed(url, qps=unlimited, latency=latency, rounds=rounds, batch=True)
    batch_10 = await _timed(url, qps=10, latency=latency, rounds=rounds, batch=True)
    bound = _lower_bound(10, latency)
    return [
        f"A batch of {BATCH_SIZE} codes, TikTok answering each call in {latency * 1000:.0f} ms (median of {rounds}):",
        f"  {'':46} {'time':>9} {'ratio':>7}",
        f"  {'one code, budget never waits':46} {one * 1000:7.0f}ms {1.0:6.2f}x",
        f"  {'20 codes, budget never waits (vs one code)':46} {batch_free * 1000:7.0f}ms {batch_free / one:6.2f}x",
        f"  {'20 codes, TIKTOK_QPS=10 (vs its lower bound)':46} {batch_10 * 1000:7.0f}ms {batch_10 / bound:6.2f}x",
        f"  (lower bound at 10 calls a second: {bound * 1000:.0f} ms)",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--latency", type=float, default=0.2, help="seconds TikTok takes to answer each call")
    args = parser.parse_args()
    stamina.set_active(False)  # no retry is expected; never sleep inside a measurement
    with migrated_postgres() as url:
        lines = asyncio.run(run(url, latency=args.latency, rounds=min(args.rounds, 10)))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
