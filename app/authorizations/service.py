"""Reading authorizations. Applying codes is a flow across TikTok and several transactions: see `intake`."""

from __future__ import annotations

import uuid
from datetime import datetime

import asyncpg
from sqlalchemy.ext.asyncio import AsyncSession

from app.advertisers import service as advertisers
from app.api_keys.access import Caller
from app.authorizations import repository
from app.authorizations.errors import AuthorizationNotFound
from app.authorizations.models import Authorization, AuthorizationStatus
from app.kit.pagination import PageParams


async def get(session: AsyncSession, *, authorization_id: uuid.UUID, caller: Caller) -> Authorization:
    """The authorization, or AuthorizationNotFound (also when it is in an ad account the key may not touch)."""
    return visible(await repository.get(session, authorization_id), authorization_id, caller)


async def read(connection: asyncpg.Connection, *, authorization_id: uuid.UUID, caller: Caller) -> asyncpg.Record:
    """The same as `get`, as a row (repository.read_one): the read callers poll, served without the ORM."""
    row = await repository.read_one(connection, authorization_id)
    if row is None or not caller.may_touch(row["tiktok_advertiser_id"]):
        raise AuthorizationNotFound(f"Authorization {authorization_id} does not exist.")
    return row


def visible(authorization: Authorization | None, authorization_id: uuid.UUID, caller: Caller) -> Authorization:
    """`authorization` if it exists and the key may touch its ad account; else AuthorizationNotFound, so that
    its existence does not leak."""
    if authorization is None or not caller.may_touch(authorization.advertiser.tiktok_advertiser_id):
        raise AuthorizationNotFound(f"Authorization {authorization_id} does not exist.")
    return authorization


async def read_page(
    connection: asyncpg.Connection,
    *,
    tiktok_advertiser_id: str,
    status: AuthorizationStatus | None,
    page: PageParams,
    now: datetime,
) -> tuple[list[asyncpg.Record], str | None]:
    """A page of the ad account's authorizations as read rows, newest first, and the cursor of the next page;
    AdvertiserNotFound when the ad account is not registered."""
    advertiser = await advertisers.read(connection, tiktok_advertiser_id=tiktok_advertiser_id)
    rows = await repository.read_page(
        connection, advertiser_id=advertiser["id"], now=now, status=status, after=page.cursor, limit=page.limit
    )
    if len(rows) <= page.limit:
        return rows, None
    rows = rows[: page.limit]
    return rows, page.next_cursor(rows[-1]["created_at"], rows[-1]["id"])
