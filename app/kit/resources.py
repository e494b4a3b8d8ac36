"""The process-wide resources every entry point needs (the API's lifespan, the commands), opened and closed
in one place: the database engine and sessions, the secrets, and the TikTok client."""

from __future__ import annotations

import functools
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import certifi
import httpx
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.kit.crypto import SecretBox
from app.kit.db import create_engine, create_read_sessionmaker, create_sessionmaker
from app.kit.metrics import TikTokCallMetrics
from app.kit.rate_budget import PostgresCallBudget
from app.kit.settings import Settings
from app.tiktok.client import TikTokClient

USER_AGENT = "spark-authorizations/1.0"


@functools.cache
def _tls() -> ssl.SSLContext:
    """One TLS context for the process's clients: building one reads the CA bundle, which costs tens of ms."""
    return ssl.create_default_context(cafile=certifi.where())


@dataclass(frozen=True, slots=True)
class Resources:
    settings: Settings
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    # The same pool, without transactions: for reads that need no shared snapshot (and API keys).
    read_sessionmaker: async_sessionmaker[AsyncSession]
    secret_box: SecretBox
    tiktok: TikTokClient
    # For webhook deliveries: its own client, so receivers never share connections or limits with TikTok.
    webhook_http: httpx.AsyncClient


@asynccontextmanager
async def open_resources(
    settings: Settings,
    *,
    tiktok_transport: httpx.AsyncBaseTransport | None = None,
    webhook_transport: httpx.AsyncBaseTransport | None = None,
) -> AsyncIterator[Resources]:
    """`tiktok_transport` replaces the network under the TikTok client (tests use the sandbox in-process);
    `webhook_transport` the one under webhook deliveries."""
    engine = create_engine(
        settings.database_url,
        pool_size=settings.database_pool_size,
        pool_overflow=settings.database_pool_overflow,
        connect_timeout_seconds=settings.database_connect_timeout_seconds,
        pool_timeout_seconds=settings.database_pool_timeout_seconds,
    )
    http = httpx.AsyncClient(
        transport=tiktok_transport,
        verify=_tls(),
        timeout=settings.tiktok_request_timeout_seconds,
        headers={"User-Agent": USER_AGENT},
    )
    webhook_http = httpx.AsyncClient(
        transport=webhook_transport,
        verify=_tls(),
        timeout=settings.webhook_timeout_seconds,
        headers={"User-Agent": USER_AGENT},
        follow_redirects=False,  # a receiver answers where it was subscribed, or the delivery failed
    )
    sessionmaker = create_sessionmaker(engine)
    try:
        yield Resources(
            settings=settings,
            engine=engine,
            sessionmaker=sessionmaker,
            read_sessionmaker=create_read_sessionmaker(engine),
            secret_box=SecretBox([key.get_secret_value() for key in settings.encryption_keys]),
            tiktok=TikTokClient(
                http,
                base_url=settings.tiktok_api_base_url,
                deadline_seconds=settings.tiktok_deadline_seconds,
                request_timeout_seconds=settings.tiktok_request_timeout_seconds,
                max_attempts=settings.tiktok_max_attempts,
                budget=PostgresCallBudget(engine, qps=settings.tiktok_qps),
                observer=TikTokCallMetrics(),
            ),
            webhook_http=webhook_http,
        )
    finally:
        await webhook_http.aclose()
        await http.aclose()
        await engine.dispose()
