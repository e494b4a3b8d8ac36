"""The ASGI app: `app.main:app`. The lifespan opens every process-wide resource and closes it again."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import httpx
import structlog
from fastapi import Depends, FastAPI

from app.ads.routes import router as ads_router
from app.advertisers.routes import router as advertisers_router
from app.api_keys import service as api_keys
from app.api_keys.cache import KeyCache
from app.api_keys.cache import attach as attach_key_cache
from app.api_keys.cache import listening as key_cache_listening
from app.api_keys.dependencies import SECURITY_SCHEME, SECURITY_SCHEME_NAME, current_caller
from app.api_keys.errors import ScopeRequired
from app.api_keys.middleware import AuthenticationMiddleware
from app.api_keys.routes import router as api_keys_router
from app.authorizations.routes import router as authorizations_router
from app.diagnosis.routes import router as diagnosis_router
from app.events.routes import router as events_router
from app.health.routes import router as health_router
from app.kit import metrics
from app.kit.contract import Security, install_contract
from app.kit.crypto import KeyHasher
from app.kit.docs import install_docs
from app.kit.errors import NotAuthenticated, ProblemError, install_problem_handlers
from app.kit.heap import frozen as frozen_heap
from app.kit.hot_reads import HotReadsMiddleware
from app.kit.idempotency import IdempotencyMiddleware
from app.kit.logging import configure_logging
from app.kit.operations import API_PREFIX, under_api_prefix
from app.kit.query import refuse_undeclared_query_parameters
from app.kit.request_id import RequestIdMiddleware
from app.kit.request_limits import RequestLimitsMiddleware
from app.kit.resources import open_resources
from app.kit.settings import LogFormat, Settings, get_settings
from app.posts.routes import router as posts_router
from app.reconcile.routes import router as reconcile_router
from app.webhooks.routes import payloads as webhook_payloads
from app.webhooks.routes import router as webhooks_router
from app.worker.queue import running_worker

log = structlog.get_logger(__name__)

API_TITLE = "Spark Ads authorizations"
API_VERSION = "1.0.0"
DESCRIPTION = """Takes TikTok creators' video authorization codes, validates and applies them through TikTok's Business
API, and tracks every authorization window, every ad that uses an authorized post, and every un-authorization.

**Authentication.** Every `/v1` operation needs `Authorization: Bearer <api key>`, with the `read` scope for GET
and `write` for the others. A key that is not an admin key touches only its own ad accounts: anywhere else the
answer is 404, as for an ad account that does not exist.

**Errors.** Every error is an RFC 9457 `application/problem+json` body (`Problem`) with a stable `reason`
(`ProblemReason`) to switch on; each operation lists the reasons it can answer with each status. Paths have no
trailing slash (404 `not_found` names the path without it); a method a path does not serve is 405
`method_not_allowed`, with `Allow` listing those it does. Request bodies are JSON (else 415
`unsupported_media_type`), at most `MAX_BODY_BYTES` (64 KiB by default; else 413 `request_too_large`), and
strictly typed: no field takes a value of another JSON type, and unknown fields are refused (422).

**Timeouts.** Operations that call TikTok say so. Each call to TikTok, retries included, ends within
`TIKTOK_DEADLINE_SECONDS` (15 s by default). One code makes up to five (waiting for another request on the same
post, reading the code, finding the post, applying it), a Duet/Stitch pair up to seven: with the default deadline,
give those operations a client timeout of at least two minutes (`docs/operations.md` has the table). Every other
operation answers in well under a second.

**Safe retries.** Writes take an `Idempotency-Key` header; see the parameter.
"""


def create_app(
    settings: Settings | None = None,
    *,
    tiktok_transport: httpx.AsyncBaseTransport | None = None,
    webhook_transport: httpx.AsyncBaseTransport | None = None,
) -> FastAPI:
    """Build the app. Settings are read when it starts, not when it is built, so the schema needs none.

    `tiktok_transport` replaces the network under the TikTok client (tests use the sandbox in-process), and
    `webhook_transport` the one under webhook deliveries.
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        config = settings or get_settings()
        configure_logging(level=config.log_level, json=config.log_format is LogFormat.json)
        async with open_resources(
            config, tiktok_transport=tiktok_transport, webhook_transport=webhook_transport
        ) as resources:
            app.state.settings = config
            app.state.engine = resources.engine
            app.state.sessionmaker = resources.sessionmaker
            app.state.read_sessionmaker = resources.read_sessionmaker
            app.state.secret_box = resources.secret_box
            app.state.tiktok = resources.tiktok
            app.state.resources = resources
            if config.api_key_secret is None:
                raise RuntimeError("API_KEY_SECRET is required: the secret API keys are hashed under")
            app.state.key_hasher = KeyHasher(config.api_key_secret.get_secret_value())
            if config.bootstrap_api_key is not None:
                async with resources.sessionmaker.begin() as session:
                    await api_keys.ensure_bootstrap_key(
                        session, app.state.key_hasher, key=config.bootstrap_api_key.get_secret_value()
                    )
            app.state.key_cache = KeyCache(config.api_key_cache_seconds)
            attach_key_cache(resources.sessionmaker, app.state.key_cache)
            async with AsyncExitStack() as stack:
                await stack.enter_async_context(key_cache_listening(app.state.key_cache, config.database_url))
                if config.metrics_enabled:
                    await stack.enter_async_context(metrics.serving(config, resources.engine))
                if config.worker_in_process:
                    await stack.enter_async_context(running_worker(resources, name="in-process"))
                stack.enter_context(frozen_heap())  # last: everything started is built (app/kit/heap.py)
                log.info("service.started", environment=config.environment.value, worker=config.worker_in_process)
                yield
        log.info("service.stopped")

    app = FastAPI(
        title=API_TITLE,
        version=API_VERSION,
        description=DESCRIPTION,
        servers=[{"url": "/", "description": "Where this document is served from (`make run`: http://127.0.0.1:8000)"}],
        lifespan=lifespan,
        # A trailing slash is a 404 problem that names the path without it, not a bare redirect.
        redirect_slashes=False,
        dependencies=[Depends(refuse_undeclared_query_parameters)],
        docs_url=None,  # served by install_docs, from packaged assets rather than a CDN
        redoc_url=None,
    )
    install_problem_handlers(app)
    install_contract(
        app,
        kind_level=_problems_of_every_operation_under,
        security=Security(SECURITY_SCHEME_NAME, SECURITY_SCHEME, required_under=under_api_prefix),
    )
    install_docs(app)
    # Outermost last: request id, then authentication (before anything reads the body), then the body's limits,
    # then idempotency (which replays an answer with the replaying request's id), then the hot reads, then the app.
    app.add_middleware(HotReadsMiddleware)  # innermost: the plain case of the reads callers poll (app/kit/hot_reads.py)
    app.add_middleware(IdempotencyMiddleware)
    app.add_middleware(RequestLimitsMiddleware)
    app.add_middleware(AuthenticationMiddleware)
    app.add_middleware(RequestIdMiddleware)
    app.add_middleware(metrics.MetricsMiddleware)  # outermost: every answer is timed, refusals before routing too
    app.include_router(health_router)
    # Each under /v1 directly, not through a /v1 router: FastAPI matches an included router's routes again at
    # every level of inclusion, on every request, so a level costs routing work on the hot path and buys nothing.
    for router in (
        api_keys_router,
        advertisers_router,
        authorizations_router,
        diagnosis_router,
        reconcile_router,
        ads_router,
        posts_router,
        events_router,
        webhooks_router,
    ):
        app.include_router(router, prefix=API_PREFIX, dependencies=[Depends(current_caller)])
    app.webhooks.include_router(webhook_payloads)  # documented under `webhooks`, never served
    return app


def _problems_of_every_operation_under(path: str) -> list[type[ProblemError]]:
    """What every operation under `path` can answer besides its own problems (for the OpenAPI document)."""
    return [NotAuthenticated, ScopeRequired] if under_api_prefix(path) else []


app = create_app()
