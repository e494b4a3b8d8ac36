"""Whether the Spark Ads limit check and the deletion verdict scale with the number of ads, as ratios.

`python -m benchmarks.ads` (the second half of `make bench`) starts an embedded Postgres, migrates it, serves the
app in-process wired to the TikTok sandbox, and then:

- links 10,000 ads to one ad account (its limit, D10), spread over four authorizations, and compares the time of
  the last hundred links with the first hundred: near 1 means the limit check reads a counter, not a count of rows;
- times the deletion verdict (D7) of a post with 1,000 active ads across 10 ad accounts against a post with the
  same 10 authorizations and no ads (median of `--rounds` calls each). The verdict lists every blocker, so some
  growth is the answer itself; a post never seen is shown for scale.

Nothing here asserts: a benchmark reports, and people judge.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import statistics
import time
from collections.abc import Awaitable, Callable

import httpx
import stamina

from benchmarks.harness import migrated_postgres, progress, started
from dev.sandbox.app import create_sandbox_app
from dev.sandbox.seed import demo_code

LIMIT = 10_000  # an ad account's default Spark Ads limit
# Four posts for the limit run, from two creators: 5,000 ads each, so neither identity nears its own 10,000-ad cap.
LIMIT_CODES = ("#SBX+video/7d=", "#SBX+video/30d=", "#SBX+video/30d-b=", "#SBX+video/60d=")
# Two posts the limit run does not use: 1,000 ads over 10 ad accounts (its creator: 5,000 + 1,000 ads), and none.
BUSY_CODE = "#SBX+video/365d="
IDLE_CODE = "#SBX+original/unrelated="
UNKNOWN_ITEM_ID = "7380112233445599999"  # a post the service never saw
VERDICT_ACCOUNTS = 10
ADS_PER_ACCOUNT = 100
HUNDRED = 100

LIMIT_ACCOUNT = str(5 * 10**15)
WARM_UP_ACCOUNT = str(5 * 10**15 + 1)
VERDICT_ACCOUNT_BASE = 6 * 10**15


def _item_id(code: str) -> str:
    post = demo_code(code).post
    if post is None:
        raise LookupError(f"the sandbox's {code} has no post")
    return post.item_id


def _checked(response: httpx.Response, *statuses: int) -> httpx.Response:
    if response.status_code not in statuses:
        raise RuntimeError(f"benchmark request failed: {response.status_code} {response.text}")
    return response


async def _register(client: httpx.AsyncClient, advertiser_id: str) -> None:
    _checked(
        await client.post("/v1/advertisers", json={"tiktok_advertiser_id": advertiser_id, "access_token": "t"}), 201
    )


async def _apply(client: httpx.AsyncClient, advertiser_id: str, code: str) -> str:
    response = await client.post(f"/v1/advertisers/{advertiser_id}/authorizations", json={"auth_code": code})
    authorization_id: str = _checked(response, 201).json()["id"]
    return authorization_id


def _link(client: httpx.AsyncClient, authorization_id: str, ad_id: int) -> Awaitable[httpx.Response]:
    return client.post(
        f"/v1/authorizations/{authorization_id}/ads",
        json={"ad_id": str(ad_id), "campaign_type": "STANDARD", "only_show_as_ad": True},
    )


async def _median_seconds(call: Callable[[], Awaitable[httpx.Response]], rounds: int) -> float:
    _checked(await call(), 200)  # warm-up
    timings = []
    for _ in range(rounds):
        started = time.perf_counter()
        _checked(await call(), 200)
        timings.append(time.perf_counter() - started)
    return statistics.median(timings)


async def link_up_to_the_limit(client: httpx.AsyncClient) -> list[str]:
    """10,000 links, one at a time, to one ad account; the first and last hundred compared."""
    await _register(client, WARM_UP_ACCOUNT)
    warm_up = await _apply(client, WARM_UP_ACCOUNT, LIMIT_CODES[0])
    for index in range(20):  # the first timed links should not pay for cold caches and a fresh pool
        _checked(await _link(client, warm_up, 10**17 + index), 201)

    await _register(client, LIMIT_ACCOUNT)
    authorizations = [await _apply(client, LIMIT_ACCOUNT, code) for code in LIMIT_CODES]
    timings: list[float] = []
    for index in range(LIMIT):
        started = time.perf_counter()
        _checked(await _link(client, authorizations[index % len(authorizations)], 2 * 10**17 + index), 201)
        timings.append(time.perf_counter() - started)
        if (index + 1) % 2_500 == 0:
            progress(f"  ... {index + 1:,} of {LIMIT:,} ads linked")
    over = await _link(client, authorizations[0], 3 * 10**17)
    refusal = f"{over.status_code} {over.json().get('reason')}"

    first, last = timings[:HUNDRED], timings[-HUNDRED:]
    return [
        f"Linking {LIMIT:,} ads to one ad account ({len(authorizations)} authorizations), one at a time"
        f" ({sum(timings):.1f} s in all; link {LIMIT + 1:,}: {refusal}):",
        f"  {'':28} {'total':>10} {'median':>10}",
        f"  {'links 1-100':28} {sum(first) * 1000:8.1f}ms {statistics.median(first) * 1000:8.2f}ms",
        f"  {f'links {LIMIT - HUNDRED + 1:,}-{LIMIT:,}':28} {sum(last) * 1000:8.1f}ms"
        f" {statistics.median(last) * 1000:8.2f}ms",
        f"  {'ratio, last / first':28} {sum(last) / sum(first):9.2f}x"
        f" {statistics.median(last) / statistics.median(first):9.2f}x",
    ]


async def verdict_with_many_ads(client: httpx.AsyncClient, rounds: int) -> list[str]:
    """The deletion verdict of a post with 1,000 ads over 10 ad accounts, against one with none."""
    accounts = [str(VERDICT_ACCOUNT_BASE + index) for index in range(VERDICT_ACCOUNTS)]
    await asyncio.gather(*(_register(client, account) for account in accounts))
    busy = await asyncio.gather(*(_apply(client, account, BUSY_CODE) for account in accounts))
    await asyncio.gather(*(_apply(client, account, IDLE_CODE) for account in accounts))
    # One ad per ad account at a time, concurrently: ten transactions that lock different authorizations.
    for round_index in range(ADS_PER_ACCOUNT):
        responses = await asyncio.gather(
            *(
                _link(client, authorization_id, 4 * 10**17 + round_index * VERDICT_ACCOUNTS + account_index)
                for account_index, authorization_id in enumerate(busy)
            )
        )
        for response in responses:
            _checked(response, 201)
    progress(f"  ... {VERDICT_ACCOUNTS * ADS_PER_ACCOUNT:,} ads linked to one post over {VERDICT_ACCOUNTS} ad accounts")

    rows: list[tuple[str, float, int]] = []
    for label, item_id in (
        ("a post never seen", UNKNOWN_ITEM_ID),
        (f"{VERDICT_ACCOUNTS} authorizations, no ad", _item_id(IDLE_CODE)),
        (f"{VERDICT_ACCOUNTS} authorizations, {VERDICT_ACCOUNTS * ADS_PER_ACCOUNT:,} ads", _item_id(BUSY_CODE)),
    ):
        path = f"/v1/posts/{item_id}/deletion-safety"
        seconds = await _median_seconds(functools.partial(client.get, path), rounds)
        blockers = len(_checked(await client.get(path), 200).json()["blockers"])
        rows.append((label, seconds, blockers))
    baseline = rows[1][1]
    lines = [
        f"GET /v1/posts/{{item_id}}/deletion-safety, median of {rounds} calls each:",
        f"  {'post':36} {'blockers':>8} {'median':>10} {'ratio':>8}",
    ]
    for label, seconds, blockers in rows:
        lines.append(f"  {label:36} {blockers:8,} {seconds * 1000:8.2f}ms {seconds / baseline:7.2f}x")
    return lines


async def run(url: str, rounds: int) -> list[str]:
    try:
        stamina.set_active(False)  # no retry is expected; never sleep inside a measurement
        async with started(url, httpx.ASGITransport(app=create_sandbox_app())) as (_, client):
            progress("Linking ads up to the ad account's limit...")
            limit = await link_up_to_the_limit(client)
            progress("Timing the deletion verdict...")
            verdict = await verdict_with_many_ads(client, rounds)
    finally:
        stamina.set_active(True)
    return [*limit, "", *verdict]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=200, help="calls per verdict timed (the median is shown)")
    args = parser.parse_args()
    with migrated_postgres() as url:
        lines = asyncio.run(run(url, args.rounds))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
