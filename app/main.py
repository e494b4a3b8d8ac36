"""The ASGI app: `app.main:app`. The lifespan opens every process-wide resource and closes it again."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import structlog
from fastapi import APIRouter, Depends, FastAPI

from app.ads.routes import router as ads_router
from app.advertisers.routes import router as advertisers_router
from app.api_keys import service as api_keys
from app.api_keys.dependencies import require_api_key
from app.api_keys.routes import router as api_keys_router
from app.authorizations.routes import router as authorizations_router
from app.health.routes import router as health_router
from app.kit.crypto import KeyHasher
from app.kit.errors import NotAuthenticated, install_problem_handlers, problem_responses
from app.kit.idempotency import IdempotencyMiddleware
from app.kit.logging import configure_logging
from app.kit.request_id import RequestIdMiddleware
from app.kit.resources import open_resources
from app.kit.settings import LogFormat, Settings, get_settings
from app.posts.routes import router as posts_router

log = structlog.get_logger(__name__)

API_TITLE = "Spark Ads authorizations"
API_VERSION = "1.0.0"


def create_app(
    settings: Settings | None = None, *, tiktok_transport: httpx.AsyncBaseTransport | None = None
) -> FastAPI:
    """Build the app. Settings are read when it starts, not when it is built, so the schema needs none.

    `tiktok_transport` replaces the network under the TikTok client (tests use the sandbox in-process).
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        config = settings or get_settings()
        configure_logging(level=config.log_level, json=config.log_format is LogFormat.json)
        async with open_resources(config, tiktok_transport=tiktok_transport) as resources:
            app.state.settings = config
            app.state.engine = resources.engine
            app.state.sessionmaker = resources.sessionmaker
            app.state.secret_box = resources.secret_box
            app.state.tiktok = resources.tiktok
            if config.api_key_secret is None:
                raise RuntimeError("API_KEY_SECRET is required: the secret API keys are hashed under")
            app.state.key_hasher = KeyHasher(config.api_key_secret.get_secret_value())
            if config.bootstrap_api_key is not None:
                async with resources.sessionmaker.begin() as session:
                    await api_keys.ensure_bootstrap_key(
                        session, app.state.key_hasher, key=config.bootstrap_api_key.get_secret_value()
                    )
            log.info("service.started", environment=config.environment.value)
            yield
        log.info("service.stopped")

    app = FastAPI(
        title=API_TITLE,
        version=API_VERSION,
        description=(
            "Takes TikTok creators' video authorization codes, validates and applies them through TikTok's Business "
            "API, and tracks every authorization window. Every error is an RFC 9457 `application/problem+json` "
            "body with a stable `reason`."
        ),
        lifespan=lifespan,
    )
    install_problem_handlers(app)
    # Added first, so it runs inside the request id's: a replayed answer carries the replaying request's id.
    app.add_middleware(IdempotencyMiddleware)
    app.add_middleware(RequestIdMiddleware)
    app.include_router(health_router)
    v1 = APIRouter(prefix="/v1", dependencies=[Depends(require_api_key)], responses=problem_responses(NotAuthenticated))
    v1.include_router(api_keys_router)
    v1.include_router(advertisers_router)
    v1.include_router(authorizations_router)
    v1.include_router(ads_router)
    v1.include_router(posts_router)
    app.include_router(v1)
    return app


app = create_app()
