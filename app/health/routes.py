from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel
from sqlalchemy import text

from app.kit.errors import DatabaseUnavailable, NotFound, problem_responses
from app.kit.metrics import CONTENT_TYPE, render

router = APIRouter(tags=["health"])


class Health(BaseModel):
    status: Literal["ok"]


@router.get("/healthz", operation_id="getHealth", summary="The process is up")
async def healthz() -> Health:
    return Health(status="ok")


@router.get(
    "/readyz",
    operation_id="getReadiness",
    summary="The service can serve: its database answers",
    responses=problem_responses(DatabaseUnavailable),
)
async def readyz(request: Request) -> Health:
    try:
        async with request.app.state.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
    except Exception as exc:  # any failure to reach the database means "not ready", never a 500
        raise DatabaseUnavailable() from exc
    return Health(status="ok")


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    """Prometheus' text format (app/kit/metrics.py), without an API key. Here unless METRICS_PORT serves it on a
    port of its own, or METRICS_ENABLED=false turns it off."""
    settings = request.app.state.settings
    if not settings.metrics_enabled or settings.metrics_port is not None:
        raise NotFound(f"{request.url.path} is not served here.")
    return Response(render(), media_type=CONTENT_TYPE)
