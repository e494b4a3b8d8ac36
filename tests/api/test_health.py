from __future__ import annotations

import httpx
from fastapi import FastAPI


class TestHealth:
    async def test_healthz_needs_no_key(self, anonymous: httpx.AsyncClient) -> None:
        response = await anonymous.get("/healthz")
        assert response.status_code == 200
        assert response.json() == {"status": "ok"}

    async def test_readyz_answers_when_the_database_does(self, anonymous: httpx.AsyncClient) -> None:
        response = await anonymous.get("/readyz")
        assert response.status_code == 200

    async def test_readyz_is_a_problem_when_the_database_is_gone(
        self, app: FastAPI, anonymous: httpx.AsyncClient
    ) -> None:
        await app.state.engine.dispose()
        real = app.state.engine
        from sqlalchemy.ext.asyncio import create_async_engine

        # A server that is not there: a closed port on loopback.
        app.state.engine = create_async_engine("postgresql+asyncpg://nobody@127.0.0.1:1/none")
        try:
            response = await anonymous.get("/readyz")
        finally:
            await app.state.engine.dispose()
            app.state.engine = real
        assert response.status_code == 503
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["reason"] == "database_unavailable"
        assert response.json()["retryable"] is True
