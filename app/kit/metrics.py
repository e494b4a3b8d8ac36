"""What Prometheus scrapes at `GET /metrics` (prometheus-client's text format): how the service is doing.

- `spark_http_request_duration_seconds{operation, method, status}`: every request, by operation id (the route's,
  or `unmatched`), from the first byte in to the last byte out. Recorded by `MetricsMiddleware`, pure ASGI and
  outermost, so that refusals made before routing (401, 413) count too.
- `spark_tiktok_call_duration_seconds{endpoint, outcome}`: each call to TikTok, retries and waits included, by its
  path and how it ended (`ok`, or the adapter's error: `TikTokTimeout`, `TikTokRequestRejected`...). The adapter
  imports nothing above it: it is handed `TikTokCallMetrics` as its observer.
- `spark_tiktok_budget_wait_seconds`: how long each call waited for a turn of the shared rate budget.
- `spark_db_pool_connections{state}`: the process's pool: in use, idle, overflow, and the requests waiting for one.
- The domain's own, read from Postgres by `refresh_forever` every `DOMAIN_REFRESH_SECONDS` whatever the number of
  scrapes (each Prometheus server scraping every 15 s must not mean a count of the authorizations each time):
  `spark_authorizations{status}`, `spark_ad_account_spark_ads{advertiser_id, kind}` (used and limit),
  `spark_worker_jobs{task, status}` (the queue), `spark_webhook_deliveries_pending`, and
  `spark_reconciliation_overdue_ad_accounts` (due for more than a period: the worker is not keeping up).

The metrics live in prometheus-client's default registry, once per process, whatever number of apps a process
builds (tests build many).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from typing import Any

import structlog
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest, start_http_server
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.kit.db import DATABASE_ERROR_TYPES
from app.kit.operations import OPERATION_ID, operation
from app.kit.settings import Settings

log = structlog.get_logger(__name__)

__all__ = [
    "CONTENT_TYPE",
    "MetricsMiddleware",
    "TikTokCallMetrics",
    "observe_budget_wait",
    "refresh",
    "refresh_forever",
    "render",
    "serving",
]

CONTENT_TYPE = CONTENT_TYPE_LATEST
DOMAIN_REFRESH_SECONDS = 30.0

# Latency buckets from a cached read (ms) to a TikTok-backed call at its deadline (tens of seconds).
_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)

REQUESTS = Histogram(
    "spark_http_request_duration_seconds",
    "HTTP requests by operation id, method and status, from the first byte in to the last byte out.",
    ["operation", "method", "status"],
    buckets=_BUCKETS,
)
TIKTOK_CALLS = Histogram(
    "spark_tiktok_call_duration_seconds",
    "Calls to TikTok by endpoint and outcome, retries and waits for the rate budget included.",
    ["endpoint", "outcome"],
    buckets=_BUCKETS,
)
BUDGET_WAIT = Histogram(
    "spark_tiktok_budget_wait_seconds",
    "How long each call to TikTok waited for a turn of the shared rate budget (TIKTOK_QPS).",
    buckets=(0.0, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 15.0),
)
DB_POOL = Gauge(
    "spark_db_pool_connections",
    "The process's database connections by state, and (`waiting`) the requests waiting for one.",
    ["state"],
)
AUTHORIZATIONS = Gauge("spark_authorizations", "Authorizations by status, as a caller would read them.", ["status"])
AD_ACCOUNT_SPARK_ADS = Gauge(
    "spark_ad_account_spark_ads", "Each ad account's Spark Ads: used, and its limit (D10).", ["advertiser_id", "kind"]
)
WORKER_JOBS = Gauge("spark_worker_jobs", "The worker's queue: jobs by task and status.", ["task", "status"])
WEBHOOK_PENDING = Gauge("spark_webhook_deliveries_pending", "Webhook deliveries not delivered yet (nor given up).")
REFRESH_FAILURES = Counter(
    "spark_metrics_refresh_failures_total", "Rounds in which the domain's gauges could not be read from Postgres."
)
API_KEY_CACHE = Counter(
    "spark_api_key_cache_lookups_total",
    "Requests' API keys looked up in this process's cache: a `hit` needs no round trip, a `miss` waits for a read of "
    "Postgres (one at a time per key).",
    ["result"],
)
API_KEY_CACHE_HIT = API_KEY_CACHE.labels(result="hit")
API_KEY_CACHE_MISS = API_KEY_CACHE.labels(result="miss")
RECONCILE_OVERDUE = Gauge(
    "spark_reconciliation_overdue_ad_accounts",
    "Ad accounts whose reconciliation has been due for more than RECONCILE_PERIOD_SECONDS.",
)


class TikTokCallMetrics:
    """The TikTok client's observer (`app.tiktok.client.CallObserver`)."""

    def observe(self, *, endpoint: str, outcome: str, seconds: float) -> None:
        TIKTOK_CALLS.labels(endpoint=endpoint, outcome=outcome).observe(seconds)


def observe_budget_wait(seconds: float) -> None:
    BUDGET_WAIT.observe(seconds)


class MetricsMiddleware:
    """Times every HTTP request and records it under its operation id and status."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the server answers if the app raises before it starts a response

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            REQUESTS.labels(operation=_operation_id(scope), method=scope["method"], status=str(status)).observe(
                time.perf_counter() - started
            )


def _operation_id(scope: Scope) -> str:
    if OPERATION_ID in scope:
        return str(scope[OPERATION_ID])
    route = scope.get("route")
    operation_id = getattr(route, "operation_id", None)
    if operation_id:
        return str(operation_id)
    if route is not None and getattr(route, "path", None):
        return str(route.path)  # a route outside the API's document: /healthz, /metrics, /docs
    # Answered before routing (authentication, limits): the operation the path and method are documented as.
    found = operation(scope["app"], scope["method"], scope["path"]) if "app" in scope else None
    return str(found.get("operationId", "unmatched")) if found else "unmatched"


async def refresh(engine: AsyncEngine, *, reconcile_period_seconds: int) -> None:
    """Read the pool's state and the domain's gauges now."""
    pool: Any = engine.pool
    DB_POOL.labels(state="in_use").set(pool.checkedout())
    DB_POOL.labels(state="idle").set(pool.checkedin())
    DB_POOL.labels(state="overflow").set(max(pool.overflow(), 0))
    DB_POOL.labels(state="waiting").set(pool.waiting())
    async with engine.connect() as connection:
        statuses = (await connection.execute(_AUTHORIZATIONS_BY_STATUS)).all()
        accounts = (await connection.execute(_SPARK_ADS_BY_ACCOUNT)).all()
        jobs = (await connection.execute(_JOBS)).all()
        pending = (await connection.execute(_WEBHOOKS_PENDING)).scalar_one()
        overdue = (await connection.execute(_RECONCILE_OVERDUE, {"period": reconcile_period_seconds})).scalar_one()
    AUTHORIZATIONS.clear()
    for status, count in statuses:
        AUTHORIZATIONS.labels(status=status).set(count)
    AD_ACCOUNT_SPARK_ADS.clear()
    for advertiser_id, used, limit in accounts:
        AD_ACCOUNT_SPARK_ADS.labels(advertiser_id=advertiser_id, kind="used").set(used)
        AD_ACCOUNT_SPARK_ADS.labels(advertiser_id=advertiser_id, kind="limit").set(limit)
    WORKER_JOBS.clear()
    for task, status, count in jobs:
        WORKER_JOBS.labels(task=task, status=status).set(count)
    WEBHOOK_PENDING.set(pending)
    RECONCILE_OVERDUE.set(overdue)


async def refresh_forever(engine: AsyncEngine, *, reconcile_period_seconds: int) -> None:
    """`refresh` every DOMAIN_REFRESH_SECONDS until cancelled (the API's lifespan runs it). Postgres being away
    leaves the last values and is counted (`spark_metrics_refresh_failures_total`); the next round tries again."""
    while True:
        try:
            await refresh(engine, reconcile_period_seconds=reconcile_period_seconds)
        except DATABASE_ERROR_TYPES as error:
            REFRESH_FAILURES.inc()
            log.warning("metrics.refresh_failed", error=type(error).__name__)
        await asyncio.sleep(DOMAIN_REFRESH_SECONDS)


# The status rule of Authorization.status_at (D3), as callers read it; by the database's clock.
_AUTHORIZATIONS_BY_STATUS = text(
    """
    SELECT CASE
             WHEN state = 'active' AND revoked_at IS NOT NULL THEN 'revoked'
             WHEN state = 'active' AND auth_end_at <= now() THEN 'expired'
             ELSE state
           END AS status,
           count(*)
    FROM authorizations GROUP BY 1
    """
)
_SPARK_ADS_BY_ACCOUNT = text("SELECT tiktok_advertiser_id, spark_ads_used, spark_ads_limit FROM advertisers")
_JOBS = text(
    "SELECT task_name, status::text, count(*) FROM procrastinate.procrastinate_jobs GROUP BY task_name, status"
)
_WEBHOOKS_PENDING = text("SELECT count(*) FROM webhook_deliveries WHERE state = 'pending'")
_RECONCILE_OVERDUE = text(
    "SELECT count(*) FROM advertisers WHERE reconcile_due_at < now() - make_interval(secs => :period)"
)


@asynccontextmanager
async def serving(settings: Settings, engine: AsyncEngine) -> AsyncIterator[None]:
    """While the block runs: the domain's gauges refreshed, and with METRICS_PORT, /metrics on that port (a
    thread of prometheus-client's own, which serves the registry and nothing else)."""
    refreshing = asyncio.create_task(
        refresh_forever(engine, reconcile_period_seconds=settings.reconcile_period_seconds), name="metrics-refresh"
    )
    server = None
    if settings.metrics_port is not None:
        server, _thread = start_http_server(settings.metrics_port, addr=settings.metrics_host)
        log.info("metrics.serving", port=settings.metrics_port)
    try:
        yield
    finally:
        refreshing.cancel()
        with suppress(asyncio.CancelledError):
            await refreshing
        if server is not None:
            server.shutdown()
            server.server_close()


def render() -> bytes:
    """The text a scrape gets."""
    rendered: bytes = generate_latest()
    return rendered
