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
from schemathesis.config import SchemathesisConfig
from sqlalchemy.ext.asyncio import create_async_engine

from app.kit.settings import Settings
from app.main import create_app
from dev.sandbox.app import create_sandbox_app
from tests.conftest import API_KEY, API_KEY_SECRET, served_on_loopback, truncate_all

ROOT = Path(__file__).resolve().parents[2]
# Every check Schemathesis has, as configured by default but for one: valid requests may be refused for what
# the service knows and the schema cannot say (a code TikTok refuses, a cursor it did not sign, an Idempotency-Key
# Schemathesis reused for another request): 422 with the domain's reason. That they are never refused as
# malformed is checked below (valid_data_is_never_request_invalid), which is what the default's "no 422" is for.
# And invalid data may be refused as too large (413) besides the statuses Schemathesis expects by default.
CONFIG = SchemathesisConfig.from_dict(
    {
        "checks": {
            "positive_data_acceptance": {
                "expected-statuses": ["2xx", "401", "403", "404", "409", "422", "429", "5xx"],
            },
            "negative_data_rejection": {
                "expected-statuses": ["400", "401", "403", "404", "405", "406", "409", "413", "415", "422", "5xx"],
            },
        }
    }
)
schema = schemathesis.openapi.from_path(ROOT / "openapi.yaml", config=CONFIG)


@schemathesis.check
def valid_data_is_never_request_invalid(ctx: Any, response: Any, case: Any) -> bool | None:
    """Requests generated from the schema (positive data) may be refused for what the service knows (a code TikTok
    does not know, an ad account not registered: 404, 409, 422 with the domain's reason), never as malformed."""
    if case.meta is None or not case.meta.generation.mode.is_positive:
        return None
    if response.status_code == 422 and response.json().get("reason") == "request_invalid":
        raise AssertionError(f"A request the schema allows was refused as request_invalid: {response.text}")
    return None


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
        worker_in_process=False,  # no background jobs racing the fuzzer's requests
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
    case.call_and_validate(
        base_url=live_server,
        headers={"Authorization": f"Bearer {API_KEY}"},
        additional_checks=[valid_data_is_never_request_invalid],
    )
