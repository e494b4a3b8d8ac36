"""Every answer carries a request id, and every log event of that request carries the same one."""

from __future__ import annotations

import io
import json
import logging
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tests.conftest import API_KEY


def _capture_json_logs() -> tuple[logging.Handler, io.StringIO]:
    import structlog

    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, structlog.processors.JSONRenderer()]
        )
    )
    return handler, buffer


class TestRequestId:
    async def test_generated_when_absent_and_found_in_the_requests_log_events(
        self, client: httpx.AsyncClient, advertiser: dict[str, Any]
    ) -> None:
        handler, buffer = _capture_json_logs()
        root = logging.getLogger()
        root.addHandler(handler)
        try:
            response = await client.post(
                f"/v1/advertisers/{advertiser['tiktok_advertiser_id']}/authorizations",
                json={"auth_code": "#SBX+video/30d="},
            )
        finally:
            root.removeHandler(handler)
        request_id = response.headers["x-request-id"]
        assert len(request_id) == 32
        events = [json.loads(line) for line in buffer.getvalue().splitlines()]
        applied = [event for event in events if event.get("event") == "authorization.applied"]
        assert applied
        assert all(event["request_id"] == request_id for event in applied)

    async def test_a_callers_id_is_kept(self, anonymous: httpx.AsyncClient) -> None:
        response = await anonymous.get("/healthz", headers={"X-Request-ID": "campaign-tool:42"})
        assert response.headers["x-request-id"] == "campaign-tool:42"

    @pytest.mark.parametrize("unsafe", ["has space", "x" * 200, "new\tline"])
    async def test_an_unsafe_id_is_replaced(self, anonymous: httpx.AsyncClient, unsafe: str) -> None:
        response = await anonymous.get("/healthz", headers={"X-Request-ID": unsafe})
        assert response.headers["x-request-id"] != unsafe

    async def test_problems_carry_it_too(self, anonymous: httpx.AsyncClient) -> None:
        response = await anonymous.get("/v1/advertisers/1")
        assert response.status_code == 401
        assert response.headers["x-request-id"]


class TestUnexpectedErrors:
    async def test_a_bug_is_a_problem_with_the_request_id_and_no_internals(
        self, app: FastAPI, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        from app.advertisers import service

        async def broken(*args: Any, **kwargs: Any) -> None:
            raise RuntimeError("secret internals")

        monkeypatch.setattr(service, "get", broken)
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://service.test") as client:
            response = await client.get(
                "/v1/advertisers/1", headers={"Authorization": f"Bearer {API_KEY}", "X-Request-ID": "bug-1"}
            )
        assert response.status_code == 500
        assert response.headers["content-type"] == "application/problem+json"
        assert response.headers["x-request-id"] == "bug-1"
        assert response.json()["reason"] == "internal_error"
        assert "secret internals" not in response.text
