"""The baseline that reads are compared with (`benchmarks/load.py`): FastAPI and an asyncpg pool reading from the
service's own Postgres and tables, served by the same uvicorn, with nothing else: no key, no ORM, no middleware.

- `GET /authorizations/{id}`: one row by primary key, the columns an authorization's answer is made from;
- `GET /advertisers/{tiktok_advertiser_id}/authorizations`: the first 50 of an ad account's, in the service's order.

`uvicorn benchmarks.bare:app` with `BARE_DATABASE_URL` (a `postgresql://` URL) and `BARE_POOL_SIZE` (10).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from fastapi import FastAPI, HTTPException

_COLUMNS = """
    id, item_id, item_type, identity_type, identity_id, tiktok_name, caption, duration_seconds, post_status,
    origin_kind, original_item_id, auth_code_hint, code_start_at, code_end_at, auth_start_at, auth_end_at, state,
    unauthorized_at, active_ads, expired_at, revoked_at, tiktok_caption, created_at, updated_at
"""
_ONE = f"SELECT {_COLUMNS} FROM authorizations WHERE id = $1"  # noqa: S608 - constant text
_PAGE = f"""
SELECT {_COLUMNS} FROM authorizations
WHERE advertiser_id = (SELECT id FROM advertisers WHERE tiktok_advertiser_id = $1)
ORDER BY created_at, id LIMIT 50
"""  # noqa: S608 - constant text


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    size = int(os.environ.get("BARE_POOL_SIZE", "10"))
    async with asyncpg.create_pool(os.environ["BARE_DATABASE_URL"], min_size=size, max_size=size) as pool:
        app.state.pool = pool
        yield


app = FastAPI(lifespan=_lifespan)


@app.get("/authorizations/{authorization_id}")
async def one(authorization_id: uuid.UUID) -> dict[str, Any]:
    row = await app.state.pool.fetchrow(_ONE, authorization_id)
    if row is None:
        raise HTTPException(status_code=404)
    return dict(row)


@app.get("/advertisers/{tiktok_advertiser_id}/authorizations")
async def page(tiktok_advertiser_id: str) -> dict[str, Any]:
    rows = await app.state.pool.fetch(_PAGE, tiktok_advertiser_id)
    return {"items": [dict(row) for row in rows]}
