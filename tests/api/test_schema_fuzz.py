"""No input makes the service answer 500, and every answer is what openapi.yaml promises.

Schemathesis generates requests from the committed openapi.yaml (valid and invalid ones) and sends them over real
HTTP to the app served by uvicorn on loopback, wired to the real test database and to the TikTok sandbox.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import CHECKS
from sqlalchemy.ext.asyncio import create_async_engine

from app.kit.settings import Settings
from app.main import create_app
from dev.sandbox.app import create_sandbox_app
from tests.conftest import API_KEY, API_KEY_SECRET, served_on_loopback, truncate_all

ROOT = Path(__file__).resolve().parents[2]
schema = schemathesis.openapi.from_path(ROOT / "openapi.yaml")

CHECK_NAMES = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
)
# Not negative_data_rejection: it expects unknown query parameters (even one with an empty name) to be refused,
# and this API ignores them, as HTTP APIs commonly do. Invalid bodies and parameters are still generated, and
# their answers must still be documented problems, never 500s.


def _checks() -> list[Any]:
    by_name = {check.__name__: check for check in CHECKS.get_all()}
    return [by_name[name] for name in CHECK_NAMES]


@pytest.fixture(scope="module")
def live_server(database_url: str) -> Iterator[str]:
    """The app on a loopback port, in a thread with its own event loop, until the module's tests end."""
    config = Settings(
        environment="test",  # type: ignore[arg-type]
        database_url=database_url,
        tiktok_api_base_url="https://sandbox.tiktok.invalid/open_api/",
        bootstrap_api_key=API_KEY,  # type: ignore[arg-type]
        api_key_secret=API_KEY_SECRET,  # type: ignore[arg-type]
        encryption_keys="S3uEsldm1tB0-7Hx6UTfb7HhAdLgd2nsv0k1tq7HdX0=",  # type: ignore[arg-type]
        tiktok_deadline_seconds=1.0,
        tiktok_max_attempts=1,
        tiktok_qps=1000,
        log_level="WARNING",
    )
    app = create_app(config, tiktok_transport=httpx.ASGITransport(app=create_sandbox_app(slow_seconds=5.0)))
    try:
        with served_on_loopback(app, lifespan="on") as base_url:
            yield base_url
    finally:
        asyncio.run(_truncate(database_url))


async def _truncate(database_url: str) -> None:
    engine = create_async_engine(database_url)
    try:
        await truncate_all(engine)
    finally:
        await engine.dispose()


@schema.parametrize()
# Random exploration on a developer's machine (failures are kept in .hypothesis/ and replayed); the same examples
# on every CI run, so that CI is reproducible.
@settings(
    max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), derandomize=bool(os.environ.get("CI"))
)
def test_every_answer_is_documented_and_none_is_a_500(case: Any, live_server: str) -> None:
    case.call_and_validate(base_url=live_server, headers={"Authorization": f"Bearer {API_KEY}"}, checks=_checks())
