"""Fixtures the API tests share, beyond the suite's own (tests/conftest.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from app.kit.settings import Settings
from tests.conftest import Running, register_advertiser, running


@pytest.fixture
async def service(settings: Settings, db: AsyncEngine, fast_retries: None) -> AsyncIterator[Callable[..., Any]]:
    """`await service(transport, settings=...)`: an app of the test's own on that TikTok (another replica, when
    called twice), on the test database, with the test ad account registered."""
    async with AsyncExitStack() as stack:

        async def start(transport: httpx.AsyncBaseTransport, app_settings: Settings = settings) -> Running:
            started = await stack.enter_async_context(running(app_settings, transport))
            await register_advertiser(started.client)
            return started

        yield start
