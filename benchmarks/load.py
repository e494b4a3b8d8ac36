"""The service's hot paths under load, against a bare baseline measured in the same run: `python -m benchmarks.load`.

It starts what a deployment runs, each in its own process: an embedded Postgres migrated to head, the TikTok sandbox
(with `--latency-ms` added to every call, as a TikTok that far away), the service under uvicorn as the image serves
it, and the bare baseline (`benchmarks/bare.py`: FastAPI and asyncpg reading the same rows from the same Postgres,
under the same uvicorn). It seeds through the API (and fills one ad account with thousands of authorizations in
SQL), then:

- **Reads**, driven by wrk (`benchmarks/check.lua`), or locust where wrk is not installed
  (`benchmarks/locustfile.py`), with `--connections` for `--seconds`, in `--rounds` rounds in
  which the service and the baseline take turns (each round reverses who goes first): one authorization, a page of
  50 of an ad account with thousands, the Spark Ads quota, the deletion verdict of a post with three
  authorizations. Each round runs both as fast as they go (requests/s, p50, p99), then both paced at half the
  baseline's rate in that round (p99 there: latency when not saturated). Reported: the median over rounds of
  service/baseline. The paced runs are closed-loop (each connection waits before its next request), as wrk paces.
- **Writes**, driven from Python (they need a fresh code each): applying a new code, one at a time and
  `--concurrency` at a time, against the time of the TikTok calls it makes (counted from the service's
  `/metrics`, each timed directly against the sandbox); and a batch of 20 against one code.
- **The process**: seconds from start to `/readyz` answering 200, and the service's RSS after the reads.

Every measured answer is checked (status and a piece of its body); a read with a wrong answer is flagged in the
table with their number and an example, so that an error page cannot pass for a fast answer. The table is printed
and written as JSON (`--json`). The sweep has its own benchmark (`benchmarks/sweep.py`). Nothing here asserts: a
benchmark reports, and people judge. Needs wrk on the PATH (`apt-get install wrk`, `brew install wrk`), or else
locust (`make bench` installs it from `requirements/bench.txt`; `--generator locust` chooses it).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import importlib.util
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from cryptography.fernet import Fernet
from prometheus_client.parser import text_string_to_metric_families

from benchmarks.harness import ROOT, migrated_postgres, percentile, progress
from dev.sandbox.seed import BULK_CODE_COUNT, bulk_code

API_KEY = "sa_bench_" + "k" * 40
LUA = Path(__file__).with_name("check.lua")
LOCUSTFILE = Path(__file__).with_name("locustfile.py")
ACCOUNTS = ("7100000000000000001", "7100000000000000002", "7100000000000000003")
BIG_ACCOUNT = "7100000000000000009"
BIG_ACCOUNT_SIZE = 5_000
ONE_CODE = "#SBX+video/30d="
VERDICT_CODE = "#SBX+video/60d="
TIKTOK_INFO = "/open_api/v1.3/tt_video/info/"


@dataclass
class Run:
    """One wrk run."""

    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    wrong: int
    sample: str = ""


@dataclass
class ReadResult:
    name: str
    service: list[Run] = field(default_factory=list)
    bare: list[Run] = field(default_factory=list)
    service_paced: list[Run] = field(default_factory=list)
    bare_paced: list[Run] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        def median(runs: list[Run], attribute: str) -> float:
            return float(statistics.median(getattr(run, attribute) for run in runs))

        def ratio(mine: list[Run], theirs: list[Run], attribute: str) -> float:
            pairs = zip(mine, theirs, strict=True)
            return float(statistics.median(getattr(a, attribute) / getattr(b, attribute) for a, b in pairs))

        return {
            "name": self.name,
            "service_rps": median(self.service, "rps"),
            "bare_rps": median(self.bare, "rps"),
            "rps_ratio": ratio(self.service, self.bare, "rps"),
            "service_p50_ms": median(self.service, "p50_ms"),
            "service_p99_ms": median(self.service, "p99_ms"),
            "bare_p50_ms": median(self.bare, "p50_ms"),
            "bare_p99_ms": median(self.bare, "p99_ms"),
            "paced_rps": median(self.bare_paced, "rps"),
            "service_paced_p99_ms": median(self.service_paced, "p99_ms"),
            "bare_paced_p99_ms": median(self.bare_paced, "p99_ms"),
            "paced_p99_ratio": ratio(self.service_paced, self.bare_paced, "p99_ms"),
            "wrong_answers": sum(run.wrong for run in self.service + self.bare + self.service_paced + self.bare_paced),
        }


@dataclass
class Read:
    """A read to measure: the service's path and the bare baseline's, each with text its answers must contain."""

    name: str
    service_path: str
    service_expect: str
    bare_path: str
    bare_expect: str


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class Process:
    process: subprocess.Popen[bytes]
    base_url: str
    ready_seconds: float


@contextmanager
def serving(command: Sequence[str], *, env: dict[str, str], ready_path: str, port: int) -> Iterator[Process]:
    """Runs `command` (which listens on `port`) until the block ends; yields once `ready_path` answers 200. Its
    output is kept in a temporary file, shown if it fails to start."""
    started = time.perf_counter()
    with tempfile.TemporaryFile() as output:
        process = subprocess.Popen(command, cwd=ROOT, env={**os.environ, **env}, stdout=output, stderr=output)
        base_url = f"http://127.0.0.1:{port}"
        try:
            while True:
                failed = process.poll() is not None or time.perf_counter() - started > 60
                if failed:
                    output.seek(0)
                    said = output.read().decode(errors="replace")[-3000:]
                    raise RuntimeError(f"{' '.join(command)} did not become ready:\n{said}")
                try:
                    if httpx.get(base_url + ready_path, timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                time.sleep(0.02)
            yield Process(process, base_url, time.perf_counter() - started)
        finally:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()


def _uvicorn(target: str, port: int, workers: int) -> list[str]:
    # As the image serves it (docker-entrypoint.sh), on loopback.
    return [
        sys.executable,
        "-m",
        "uvicorn",
        target,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
    ]


def make_run_ready_seconds() -> tuple[float, float]:
    """Seconds from `make run`'s command (`python -m dev.server`) to `/readyz` answering 200: the first time in a
    fresh data folder (the embedded Postgres made, the schema migrated), then again on the same folder."""
    folder = Path(tempfile.mkdtemp(prefix="spark-bench-run-"))
    seconds = []
    for _ in range(2):
        port, sandbox_port = _free_port(), _free_port()
        env = {
            "DEV_DATA_DIR": str(folder),
            "PORT": str(port),
            "SANDBOX_PORT": str(sandbox_port),
            "WORKER_IN_PROCESS": "true",
            "LOG_LEVEL": "WARNING",
        }
        with serving([sys.executable, "-m", "dev.server"], env=env, ready_path="/readyz", port=port) as started:
            seconds.append(started.ready_seconds)
    shutil.rmtree(folder, ignore_errors=True)
    return seconds[0], seconds[1]


def rss_mb(pid: int) -> float:
    """The resident memory of `pid` and its children (uvicorn's workers), in MiB."""
    total = 0
    pids = [pid]
    children = Path(f"/proc/{pid}/task/{pid}/children")
    if children.exists():
        pids += [int(child) for child in children.read_text().split()]
    for one in pids:
        for line in Path(f"/proc/{one}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total / 1024


def drive(
    url: str, *, generator: str, connections: int, seconds: float, expect: str, auth: str | None, delay_ms: float = 0
) -> Run:
    """GETs `url` on `connections` connections for `seconds`, checking every answer (status 200, `expect` in the
    body), with `generator` (wrk or locust)."""
    env = {
        **os.environ,
        "BENCH_STATUS": "200",
        "BENCH_EXPECT": expect,
        "BENCH_AUTH": auth or "",
        "BENCH_DELAY_MS": f"{delay_ms:.3f}",
    }
    if generator == "wrk":
        return _wrk(url, connections=connections, seconds=seconds, env=env)
    return _locust(url, connections=connections, seconds=seconds, env=env)


def load_generator(chosen: str | None = None) -> str:
    """`chosen` if given; else wrk if it is installed, else locust if it is installed."""
    if chosen is not None:
        return chosen
    if shutil.which("wrk") is not None:
        return "wrk"
    if importlib.util.find_spec("locust") is not None:
        return "locust"
    sys.exit(
        "benchmarks.load needs wrk on the PATH (apt-get install wrk, brew install wrk), or locust "
        "(`make bench` installs it from requirements/bench.txt)"
    )


def _wrk(url: str, *, connections: int, seconds: float, env: dict[str, str]) -> Run:
    threads = min(2, connections)
    completed = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{connections}", f"-d{round(seconds)}s", "--timeout", "10s", "-s", str(LUA), url],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    report: dict[str, Any] = {}
    sample = ""
    for line in completed.stdout.splitlines():
        if line.startswith("BENCH_JSON "):
            report = json.loads(line.removeprefix("BENCH_JSON "))
        elif line.startswith("BENCH_SAMPLE "):
            sample = line.removeprefix("BENCH_SAMPLE ")
    if not report:
        raise RuntimeError(f"wrk said nothing usable: {completed.stdout} {completed.stderr}")
    wrong = report["wrong"] + report["socket_errors"] + max(0, report["requests"] - report["checked"])
    return Run(
        rps=report["requests"] / (report["duration_us"] / 1e6),
        p50_ms=report["p50_us"] / 1000,
        p99_ms=report["p99_us"] / 1000,
        requests=report["requests"],
        wrong=wrong,
        sample=sample,
    )


def _locust(url: str, *, connections: int, seconds: float, env: dict[str, str]) -> Run:
    parts = httpx.URL(url)
    host = f"{parts.scheme}://{parts.host}:{parts.port}"
    path = parts.raw_path.decode()
    with tempfile.TemporaryDirectory(prefix="spark-bench-locust-") as folder:
        prefix = Path(folder) / "run"
        completed = subprocess.run(
            [
                sys.executable,
                "-m",
                "locust",
                "-f",
                str(LOCUSTFILE),
                "--headless",
                "--only-summary",
                "--users",
                str(connections),
                "--spawn-rate",
                str(max(connections, 1000)),
                "--run-time",
                f"{round(seconds)}s",
                "--host",
                host,
                "--csv",
                str(prefix),
                "--loglevel",
                "ERROR",
            ],
            env={**env, "BENCH_PATH": path},
            capture_output=True,
            text=True,
            check=False,  # locust exits 1 when a request failed: that is counted below, not an error of the run
        )
        stats = [row for row in csv.DictReader(prefix.with_name("run_stats.csv").open()) if row["Name"] == "read"]
        if not stats:
            raise RuntimeError(f"locust said nothing usable: {completed.stdout} {completed.stderr}")
        failures = list(csv.DictReader(prefix.with_name("run_failures.csv").open()))
    row = stats[0]
    return Run(
        rps=float(row["Requests/s"]),
        p50_ms=float(row["50%"]),
        p99_ms=float(row["99%"]),
        requests=int(row["Request Count"]),
        wrong=int(row["Failure Count"]),
        sample=failures[0]["Error"] if failures else "",
    )


def _checked(response: httpx.Response, status: int) -> dict[str, Any]:
    if response.status_code != status:
        raise RuntimeError(
            f"{response.request.method} {response.request.url.path}: {response.status_code} {response.text}"
        )
    body: dict[str, Any] = response.json() if response.content else {}
    return body


_FILL = """
INSERT INTO authorizations (
    id, advertiser_id, item_id, item_type, identity_type, identity_id, post_status, state,
    auth_start_at, auth_end_at, code_start_at, code_end_at, created_at, updated_at
)
SELECT gen_random_uuid(), a.id, (7410000000000000000 + n)::text, 'VIDEO', 'TT_USER', 'bench-brand',
       'HESITATE_RECOMMEND', 'active', now() - interval '1 day', now() + interval '29 days',
       now() - interval '1 day', now() + interval '29 days', now() - interval '1 second' * n, now()
FROM advertisers AS a, generate_series(1, $2::int) AS n
WHERE a.tiktok_advertiser_id = $1
"""


async def _fill_big_account(database_url: str) -> None:
    import asyncpg

    connection = await asyncpg.connect(database_url)
    try:
        await connection.execute(_FILL, BIG_ACCOUNT, BIG_ACCOUNT_SIZE)
        await connection.execute("VACUUM ANALYZE authorizations")
    finally:
        await connection.close()


def seed(service: str, database_url: str) -> list[Read]:
    """Ad accounts, authorizations and a post with three, through the API; one account with thousands, in SQL."""
    with httpx.Client(base_url=service, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=60) as client:
        for account in (*ACCOUNTS, BIG_ACCOUNT):
            _checked(client.post("/v1/advertisers", json={"tiktok_advertiser_id": account, "access_token": "t"}), 201)
        one = _checked(client.post(f"/v1/advertisers/{ACCOUNTS[0]}/authorizations", json={"auth_code": ONE_CODE}), 201)
        verdict_item = ""
        for account in ACCOUNTS:
            applied = _checked(
                client.post(f"/v1/advertisers/{account}/authorizations", json={"auth_code": VERDICT_CODE}), 201
            )
            verdict_item = applied["item_id"]
    asyncio.run(_fill_big_account(database_url.replace("postgresql+asyncpg://", "postgresql://")))
    return [
        Read(
            "GET one authorization",
            f"/v1/authorizations/{one['id']}",
            one["id"],
            f"/authorizations/{one['id']}",
            one["id"],
        ),
        Read(
            f"GET a page of 50 of {BIG_ACCOUNT_SIZE:,}",
            f"/v1/advertisers/{BIG_ACCOUNT}/authorizations?limit=50",
            '"next_cursor":"',
            f"/advertisers/{BIG_ACCOUNT}/authorizations",
            '"items":[',
        ),
        Read(
            "GET the Spark Ads quota",
            f"/v1/advertisers/{ACCOUNTS[0]}/spark-ads-quota",
            '"limit":',
            f"/authorizations/{one['id']}",
            one["id"],
        ),
        Read(
            "GET the deletion verdict (3 ad accounts)",
            f"/v1/posts/{verdict_item}/deletion-safety",
            '"safe":',
            f"/authorizations/{one['id']}",
            one["id"],
        ),
    ]


def measure_reads(
    reads: list[Read], *, generator: str, service: str, bare: str, rounds: int, seconds: float, connections: int
) -> list[ReadResult]:
    auth = f"Bearer {API_KEY}"
    results = []
    for read in reads:
        result = ReadResult(read.name)
        # Warm both up (connections in the pools, code paths), unmeasured.
        for url, expect in (
            (service + read.service_path, read.service_expect),
            (bare + read.bare_path, read.bare_expect),
        ):
            drive(url, generator=generator, connections=connections, seconds=2, expect=expect, auth=auth)
        for index in range(rounds):
            turns = [("bare", bare + read.bare_path), ("service", service + read.service_path)]
            if index % 2:
                turns.reverse()
            full: dict[str, Run] = {}
            for who, url in turns:
                expect = read.bare_expect if who == "bare" else read.service_expect
                full[who] = drive(
                    url, generator=generator, connections=connections, seconds=seconds, expect=expect, auth=auth
                )
            # Half the baseline's rate in this round, spread over the connections.
            delay_ms = connections * 1000 / (full["bare"].rps / 2)
            paced: dict[str, Run] = {}
            for who, url in turns:
                expect = read.bare_expect if who == "bare" else read.service_expect
                paced[who] = drive(
                    url,
                    generator=generator,
                    connections=connections,
                    seconds=seconds,
                    expect=expect,
                    auth=auth,
                    delay_ms=delay_ms,
                )
            result.service.append(full["service"])
            result.bare.append(full["bare"])
            result.service_paced.append(paced["service"])
            result.bare_paced.append(paced["bare"])
            for who, run in [*full.items(), *(("paced " + k, v) for k, v in paced.items())]:
                if run.wrong:
                    progress(f"  !! {read.name}, {who}: {run.wrong} wrong answers, e.g. {run.sample}")
        summary = result.summary()
        progress(
            f"  {read.name}: {summary['service_rps']:.0f} vs {summary['bare_rps']:.0f} requests/s "
            f"({summary['rps_ratio']:.2f}), paced p99 ratio {summary['paced_p99_ratio']:.2f}"
        )
        results.append(result)
    return results


def _tiktok_calls(service: httpx.Client) -> float:
    text = service.get("/metrics").text
    for family in text_string_to_metric_families(text):
        if family.name == "spark_tiktok_call_duration_seconds":
            return sum(sample.value for sample in family.samples if sample.name.endswith("_count"))
    return 0.0


async def _timed(requests: list[Any], concurrency: int) -> list[float]:
    """Runs each zero-argument coroutine function, `concurrency` at a time; the seconds each took."""
    semaphore = asyncio.Semaphore(concurrency)
    timings: list[float] = []

    async def one(request: Any) -> None:
        async with semaphore:
            started = time.perf_counter()
            await request()
            timings.append(time.perf_counter() - started)

    await asyncio.gather(*(one(request) for request in requests))
    return timings


def measure_writes(*, service: str, sandbox: str, codes: int, concurrency: int) -> dict[str, Any]:
    """Applying new codes (the TikTok calls' time is the baseline), and a batch of 20 against one code."""
    headers = {"Authorization": f"Bearer {API_KEY}"}
    next_code = iter(range(BULK_CODE_COUNT))

    async def run() -> dict[str, Any]:
        async with (
            httpx.AsyncClient(base_url=service, headers=headers, timeout=120) as client,
            httpx.AsyncClient(base_url=sandbox, timeout=60) as tiktok,
        ):

            def apply() -> Any:
                code = bulk_code(next(next_code))

                async def call() -> None:
                    response = await client.post(
                        f"/v1/advertisers/{ACCOUNTS[1]}/authorizations", json={"auth_code": code}
                    )
                    if response.status_code != 201 or response.json().get("status") != "active":
                        raise RuntimeError(f"apply {code}: {response.status_code} {response.text}")

                return call

            def batch() -> Any:
                items = [{"auth_code": bulk_code(next(next_code))} for _ in range(20)]

                async def call() -> None:
                    response = await client.post(
                        f"/v1/advertisers/{ACCOUNTS[2]}/authorizations/batch", json={"items": items}
                    )
                    body = response.json()
                    if response.status_code != 200 or any(item["outcome"] != "created" for item in body["results"]):
                        raise RuntimeError(f"batch: {response.status_code} {response.text[:500]}")

                return call

            async def direct_call() -> None:
                # What TikTok's own answer costs, through the same kind of client: a code's info.
                response = await tiktok.get(
                    f"{TIKTOK_INFO}",
                    params={"advertiser_id": ACCOUNTS[0], "auth_code": ONE_CODE},
                    headers={"Access-Token": "t"},
                )
                if response.status_code != 200 or response.json()["code"] != 0:
                    raise RuntimeError(f"sandbox: {response.text}")

            await _timed([apply() for _ in range(5)], 1)  # warm up
            tiktok_call = await _timed([direct_call for _ in range(50)], 1)
            with httpx.Client(base_url=service) as plain:
                before = _tiktok_calls(plain)
                one_at_a_time = await _timed([apply() for _ in range(codes)], 1)
                calls_per_apply = (_tiktok_calls(plain) - before) / codes
            parallel = await _timed([apply() for _ in range(codes)], concurrency)
            batches = await _timed([batch() for _ in range(max(3, codes // 20))], 1)
        tiktok_p50 = statistics.median(tiktok_call)
        apply_p50 = statistics.median(one_at_a_time)
        return {
            "tiktok_call_p50_ms": tiktok_p50 * 1000,
            "tiktok_calls_per_apply": calls_per_apply,
            "apply_p50_ms": apply_p50 * 1000,
            "apply_p99_ms": percentile(one_at_a_time, 0.99) * 1000,
            "apply_over_tiktok_ms": (apply_p50 - calls_per_apply * tiktok_p50) * 1000,
            "apply_ratio_to_tiktok": apply_p50 / (calls_per_apply * tiktok_p50),
            "apply_concurrent": concurrency,
            "apply_concurrent_p50_ms": statistics.median(parallel) * 1000,
            "apply_concurrent_p99_ms": percentile(parallel, 0.99) * 1000,
            "apply_concurrent_per_second": len(parallel) / (sum(parallel) / concurrency),
            "batch_of_20_p50_ms": statistics.median(batches) * 1000,
            "batch_ratio_to_one_code": statistics.median(batches) / apply_p50,
        }

    return asyncio.run(run())


def _table(
    reads: list[dict[str, Any]], writes: dict[str, Any] | None, process: dict[str, Any], context: dict[str, Any]
) -> str:
    lines = [
        f"{context['machine']}; {context['connections']} connections, {context['rounds']} rounds of "
        f"{context['seconds']:g} s with {context['load_generator']}; TikTok sandbox latency "
        f"{context['sandbox_latency_ms']:g} ms",
        "",
        f"{'read':<42} {'service/s':>9} {'bare/s':>8} {'ratio':>6} {'p50 ms':>13} {'p99 ms':>13} "
        f"{'paced/s':>8} {'paced p99 ms':>14} {'p99 ratio':>9}",
    ]
    for read in reads:
        lines.append(
            f"{read['name']:<42} {read['service_rps']:>9.0f} {read['bare_rps']:>8.0f} {read['rps_ratio']:>6.2f} "
            f"{read['service_p50_ms']:>5.1f} / {read['bare_p50_ms']:>5.1f} {read['service_p99_ms']:>5.1f} / "
            f"{read['bare_p99_ms']:>5.1f} {read['paced_rps']:>8.0f} {read['service_paced_p99_ms']:>6.1f} / "
            f"{read['bare_paced_p99_ms']:>5.1f} {read['paced_p99_ratio']:>9.2f}"
            + (f"   !! {read['wrong_answers']} wrong answers" if read["wrong_answers"] else "")
        )
    lines += ["(p50 and p99: service / bare, as fast as each goes; paced: both at half the bare rate)", ""]
    if writes is not None:
        lines += [
        f"apply a new code, one at a time: p50 {writes['apply_p50_ms']:.1f} ms, p99 {writes['apply_p99_ms']:.1f} ms "
        f"for {writes['tiktok_calls_per_apply']:.1f} TikTok calls of {writes['tiktok_call_p50_ms']:.1f} ms: "
        f"{writes['apply_over_tiktok_ms']:.1f} ms over TikTok's time (ratio {writes['apply_ratio_to_tiktok']:.2f})",
        f"apply a new code, {writes['apply_concurrent']} at a time: p50 {writes['apply_concurrent_p50_ms']:.1f} ms, "
        f"p99 {writes['apply_concurrent_p99_ms']:.1f} ms, {writes['apply_concurrent_per_second']:.0f} codes/s",
        f"a batch of 20: p50 {writes['batch_of_20_p50_ms']:.1f} ms, {writes['batch_ratio_to_one_code']:.2f} times "
        "one code",
        "",
        ]  # fmt: skip
    lines += [
        f"service ready {process['ready_seconds']:.2f} s after start (bare: {process['bare_ready_seconds']:.2f} s); "
        f"make run ready in {process['make_run_ready_seconds']:.2f} s ({process['make_run_ready_cold_seconds']:.2f} s "
        "the first time, making the database); "
        f"RSS after the reads {process['service_rss_mb']:.0f} MiB per worker (bare: {process['bare_rss_mb']:.0f} MiB)",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=5, help="length of each wrk run")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--workers", type=int, default=1, help="uvicorn workers, for the service and the baseline")
    parser.add_argument("--sandbox-latency-ms", type=float, default=50.0)
    parser.add_argument("--codes", type=int, default=100, help="new codes applied in each write run")
    parser.add_argument("--concurrency", type=int, default=8, help="codes applied at once in the concurrent run")
    parser.add_argument(
        "--json",
        type=Path,
        default=ROOT / "benchmarks" / "latest.json",
        help="where to write the table (the README cites it)",
    )
    parser.add_argument("--generator", choices=["wrk", "locust"], help="the load generator (default: wrk if installed)")
    parser.add_argument("--only", help="measure only the reads whose name contains this, and no writes")
    arguments = parser.parse_args()
    generator = load_generator(arguments.generator)

    sandbox_port, service_port, bare_port = _free_port(), _free_port(), _free_port()
    with migrated_postgres() as url:
        service_env = {
            "DATABASE_URL": url,
            "TIKTOK_API_BASE_URL": f"http://127.0.0.1:{sandbox_port}/open_api/",
            "BOOTSTRAP_API_KEY": API_KEY,
            "API_KEY_SECRET": "bench-hmac-" + "s" * 40,
            "ENCRYPTION_KEYS": Fernet.generate_key().decode(),
            "TIKTOK_QPS": "1000",
            # The worker runs as its own process in this deployment; its work is the sweep benchmark's.
            "WORKER_IN_PROCESS": "false",
            "LOG_LEVEL": "WARNING",
        }
        bare_env = {"BARE_DATABASE_URL": url.replace("postgresql+asyncpg://", "postgresql://")}
        sandbox_command = [
            sys.executable, "-m", "dev.sandbox", "--port", str(sandbox_port),
            "--latency-ms", str(arguments.sandbox_latency_ms),
        ]  # fmt: skip
        with (
            serving(
                sandbox_command, env={}, ready_path=f"{TIKTOK_INFO}?advertiser_id=1&auth_code=x", port=sandbox_port
            ) as sandbox,
            serving(
                _uvicorn("app.main:app", service_port, arguments.workers),
                env=service_env,
                ready_path="/readyz",
                port=service_port,
            ) as service,
            serving(
                _uvicorn("benchmarks.bare:app", bare_port, arguments.workers),
                env=bare_env,
                ready_path="/docs",
                port=bare_port,
            ) as bare,
        ):
            progress(f"service ready in {service.ready_seconds:.2f} s; seeding")
            reads = seed(service.base_url, url)
            if arguments.only:
                reads = [read for read in reads if arguments.only in read.name]
            progress("reads")
            read_results = measure_reads(
                reads,
                generator=generator,
                service=service.base_url,
                bare=bare.base_url,
                rounds=arguments.rounds,
                seconds=arguments.seconds,
                connections=arguments.connections,
            )
            process = {
                "ready_seconds": service.ready_seconds,
                "bare_ready_seconds": bare.ready_seconds,
                "service_rss_mb": rss_mb(service.process.pid) / arguments.workers,
                "bare_rss_mb": rss_mb(bare.process.pid) / arguments.workers,
            }
            writes = None
            if not arguments.only:
                progress("writes")
                writes = measure_writes(
                    service=service.base_url,
                    sandbox=sandbox.base_url,
                    codes=arguments.codes,
                    concurrency=arguments.concurrency,
                )
    progress("make run, cold and warm")
    process["make_run_ready_cold_seconds"], process["make_run_ready_seconds"] = make_run_ready_seconds()
    context = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "connections": arguments.connections,
        "rounds": arguments.rounds,
        "seconds": arguments.seconds,
        "workers": arguments.workers,
        "sandbox_latency_ms": arguments.sandbox_latency_ms,
        "load_generator": generator,
    }
    summaries = [result.summary() for result in read_results]
    table = _table(summaries, writes, process, context)
    print(table)
    arguments.json.parent.mkdir(parents=True, exist_ok=True)
    arguments.json.write_text(
        json.dumps(
            {"context": context, "reads": summaries, "writes": writes, "process": process,
             "runs": {result.name: asdict(result) for result in read_results}},
            indent=2,
        ) + "\n"
    )  # fmt: skip
    progress(f"written to {arguments.json}")


if __name__ == "__main__":
    main()
