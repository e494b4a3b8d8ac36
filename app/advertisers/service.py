from __future__ import annotations

import asyncpg
import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.advertisers import repository
from app.advertisers.errors import AdvertiserAlreadyExists, AdvertiserNotFound
from app.advertisers.models import Advertiser
from app.api_keys import service as api_keys
from app.api_keys.access import Caller
from app.kit.crypto import SecretBox
from app.kit.pagination import PageParams
from app.kit.tiktok_problems import tiktok_failures_as_problems
from app.tiktok.client import TikTokClient

log = structlog.get_logger(__name__)


async def _verify_token(tiktok: TikTokClient, *, tiktok_advertiser_id: str, access_token: str) -> None:
    async with tiktok_failures_as_problems():
        # The cheapest read that proves both the token and the advertiser id: one post, first page.
        await tiktok.list_posts(advertiser_id=tiktok_advertiser_id, access_token=access_token, page_size=1)


async def register(
    sessions: async_sessionmaker[AsyncSession],
    tiktok: TikTokClient,
    box: SecretBox,
    *,
    tiktok_advertiser_id: str,
    access_token: str,
    name: str | None,
    spark_ads_limit: int,
    caller: Caller,
) -> Advertiser:
    """Register an ad account after TikTok has confirmed that the token may act for it; the key that registers
    it may touch it from then on.

    No transaction is open while TikTok answers; the unique index decides between concurrent registrations. That
    it exists already is said only to a key that may touch it, or that holds a token TikTok accepts for it.
    """
    async with sessions() as session:
        exists = await repository.get_by_tiktok_id(session, tiktok_advertiser_id) is not None
    if exists and caller.may_touch(tiktok_advertiser_id):
        raise AdvertiserAlreadyExists(f"Ad account {tiktok_advertiser_id} is already registered.")
    await _verify_token(tiktok, tiktok_advertiser_id=tiktok_advertiser_id, access_token=access_token)
    async with sessions.begin() as session:
        advertiser = await repository.insert_new(
            session,
            tiktok_advertiser_id=tiktok_advertiser_id,
            name=name,
            access_token_encrypted=box.encrypt(access_token),
            spark_ads_limit=spark_ads_limit,
        )
        if advertiser is not None:
            await api_keys.grant(session, caller=caller, tiktok_advertiser_id=tiktok_advertiser_id)
    if advertiser is None:  # registered already, or by a concurrent request while TikTok answered
        raise AdvertiserAlreadyExists(f"Ad account {tiktok_advertiser_id} is already registered.")
    log.info("advertiser.registered", tiktok_advertiser_id=tiktok_advertiser_id)
    return advertiser


async def list_page(session: AsyncSession, *, caller: Caller, page: PageParams) -> tuple[list[Advertiser], str | None]:
    """A page of the ad accounts the key may touch, oldest first, and the cursor of the next page."""
    rows = await repository.list_page(session, only=caller.advertiser_ids, after=page.cursor, limit=page.limit)
    if len(rows) <= page.limit:
        return rows, None
    rows = rows[: page.limit]
    return rows, page.next_cursor(rows[-1].created_at, rows[-1].id)


async def get(session: AsyncSession, *, tiktok_advertiser_id: str) -> Advertiser:
    """The registered ad account, or AdvertiserNotFound."""
    advertiser = await repository.get_by_tiktok_id(session, tiktok_advertiser_id)
    if advertiser is None:
        raise AdvertiserNotFound(f"Ad account {tiktok_advertiser_id} is not registered with this service.")
    return advertiser


async def read(connection: asyncpg.Connection, *, tiktok_advertiser_id: str) -> asyncpg.Record:
    """The registered ad account as `repository.read` gives it, on a driver connection, or AdvertiserNotFound."""
    row = await repository.read(connection, tiktok_advertiser_id)
    if row is None:
        raise AdvertiserNotFound(f"Ad account {tiktok_advertiser_id} is not registered with this service.")
    return row


async def update(
    session: AsyncSession, *, tiktok_advertiser_id: str, name: str | None, spark_ads_limit: int | None
) -> Advertiser:
    """Change the ad account's name or Spark Ads limit (None: unchanged). A limit below what is used is allowed:
    nothing new links until ads are removed. Locks the row, as links do, so a limit change and a link are
    decided one after the other."""
    advertiser = await repository.get_by_tiktok_id(session, tiktok_advertiser_id, for_update=True)
    if advertiser is None:
        raise AdvertiserNotFound(f"Ad account {tiktok_advertiser_id} is not registered with this service.")
    if name is not None:
        advertiser.name = name
    if spark_ads_limit is not None:
        advertiser.spark_ads_limit = spark_ads_limit
    await session.flush()
    log.info("advertiser.updated", tiktok_advertiser_id=tiktok_advertiser_id, spark_ads_limit=spark_ads_limit)
    return advertiser


async def reconnect(
    sessions: async_sessionmaker[AsyncSession],
    tiktok: TikTokClient,
    box: SecretBox,
    *,
    tiktok_advertiser_id: str,
    access_token: str,
) -> Advertiser:
    """Replace the ad account's access token (after `access_token_invalid`), once TikTok accepts the new one.

    Nothing is locked while TikTok answers: a row lock on the ad account would hold up every authorization
    being stored for it (their foreign key takes a share lock) for as long as TikTok takes.
    """
    async with sessions() as session:
        await get(session, tiktok_advertiser_id=tiktok_advertiser_id)
    await _verify_token(tiktok, tiktok_advertiser_id=tiktok_advertiser_id, access_token=access_token)
    async with sessions.begin() as session:
        advertiser = await repository.replace_token(
            session, tiktok_advertiser_id=tiktok_advertiser_id, access_token_encrypted=box.encrypt(access_token)
        )
    if advertiser is None:
        raise AdvertiserNotFound(f"Ad account {tiktok_advertiser_id} is not registered with this service.")
    log.info("advertiser.reconnected", tiktok_advertiser_id=tiktok_advertiser_id)
    return advertiser
