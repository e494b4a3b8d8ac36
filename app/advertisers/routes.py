from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, status

from app.advertisers import service
from app.advertisers.errors import AdvertiserAlreadyExists, AdvertiserNotFound
from app.advertisers.schemas import AccessTokenUpdate, AdvertiserCreate, AdvertiserRead, AdvertiserUpdate
from app.kit.db import DbSession, Sessions
from app.kit.deps import Secrets, TikTok
from app.kit.errors import problem_responses
from app.kit.tiktok_problems import TIKTOK_PROBLEMS

router = APIRouter(prefix="/advertisers", tags=["advertisers"])

AdvertiserIdPath = Annotated[str, Path(pattern=r"^[0-9]{1,32}$", description="TikTok's advertiser id.")]


@router.post(
    "",
    operation_id="registerAdvertiser",
    status_code=status.HTTP_201_CREATED,
    summary="Register an ad account",
    responses=problem_responses(AdvertiserAlreadyExists, *TIKTOK_PROBLEMS),
)
async def register_advertiser(
    body: AdvertiserCreate, sessions: Sessions, tiktok: TikTok, box: Secrets
) -> AdvertiserRead:
    """Register a TikTok ad account and its access token, once TikTok accepts the token for it."""
    advertiser = await service.register(
        sessions,
        tiktok,
        box,
        tiktok_advertiser_id=body.tiktok_advertiser_id,
        access_token=body.access_token,
        name=body.name,
        spark_ads_limit=body.spark_ads_limit,
    )
    return AdvertiserRead.model_validate(advertiser)


@router.get(
    "/{tiktok_advertiser_id}",
    operation_id="getAdvertiser",
    summary="Read an ad account",
    responses=problem_responses(AdvertiserNotFound),
)
async def get_advertiser(tiktok_advertiser_id: AdvertiserIdPath, session: DbSession) -> AdvertiserRead:
    advertiser = await service.get(session, tiktok_advertiser_id=tiktok_advertiser_id)
    return AdvertiserRead.model_validate(advertiser)


@router.patch(
    "/{tiktok_advertiser_id}",
    operation_id="updateAdvertiser",
    summary="Change an ad account's name or Spark Ads limit",
    responses=problem_responses(AdvertiserNotFound),
)
async def update_advertiser(
    tiktok_advertiser_id: AdvertiserIdPath, body: AdvertiserUpdate, session: DbSession
) -> AdvertiserRead:
    """Fields left out (or null) stay as they are. The limit may be set below what is used: then nothing new
    links until ads are removed (`spark_ads_limit_reached`)."""
    advertiser = await service.update(
        session, tiktok_advertiser_id=tiktok_advertiser_id, name=body.name, spark_ads_limit=body.spark_ads_limit
    )
    return AdvertiserRead.model_validate(advertiser)


@router.put(
    "/{tiktok_advertiser_id}/access-token",
    operation_id="reconnectAdvertiser",
    summary="Replace an ad account's access token",
    responses=problem_responses(AdvertiserNotFound, *TIKTOK_PROBLEMS),
)
async def reconnect_advertiser(
    tiktok_advertiser_id: AdvertiserIdPath, body: AccessTokenUpdate, sessions: Sessions, tiktok: TikTok, box: Secrets
) -> AdvertiserRead:
    """Re-connect an ad account whose token TikTok no longer accepts (`access_token_invalid`).

    The new token replaces the old one only once TikTok accepts it for this ad account.
    """
    advertiser = await service.reconnect(
        sessions, tiktok, box, tiktok_advertiser_id=tiktok_advertiser_id, access_token=body.access_token
    )
    return AdvertiserRead.model_validate(advertiser)
