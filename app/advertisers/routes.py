from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Response, status

from app.advertisers import service
from app.advertisers.errors import AdvertiserAlreadyExists, AdvertiserNotFound
from app.advertisers.schemas import (
    AccessTokenUpdate,
    AdvertiserCreate,
    AdvertiserPage,
    AdvertiserRead,
    AdvertiserUpdate,
)
from app.api_keys.access import Caller
from app.api_keys.dependencies import CurrentCaller
from app.kit.db import DbSession, Sessions
from app.kit.deps import Secrets, TikTok
from app.kit.errors import CursorInvalid, problem_responses
from app.kit.pagination import PageParams, page_params
from app.kit.tiktok_problems import TIKTOK_PROBLEMS

router = APIRouter(prefix="/advertisers", tags=["advertisers"])

ADVERTISER_ID_PATTERN = r"^[0-9]{1,32}$"
AdvertiserIdPath = Annotated[str, Path(pattern=ADVERTISER_ID_PATTERN, description="TikTok's advertiser id.")]


async def _accessible_advertiser_id(tiktok_advertiser_id: AdvertiserIdPath, caller: CurrentCaller) -> str:
    return accessible(tiktok_advertiser_id, caller)


def accessible(tiktok_advertiser_id: str, caller: Caller) -> str:
    """The ad account in the path, if the calling key may touch it: else it is not found (its existence does not
    leak to a key that may not see it)."""
    if not caller.may_touch(tiktok_advertiser_id):
        raise AdvertiserNotFound(f"Ad account {tiktok_advertiser_id} is not registered with this service.")
    return tiktok_advertiser_id


# Every route under /advertisers/{tiktok_advertiser_id} takes it through this: the key's grants decide first.
AccessibleAdvertiserId = Annotated[str, Depends(_accessible_advertiser_id)]


@router.post(
    "",
    operation_id="registerAdvertiser",
    status_code=status.HTTP_201_CREATED,
    summary="Register an ad account",
    responses=problem_responses(AdvertiserAlreadyExists, *TIKTOK_PROBLEMS),
)
async def register_advertiser(
    body: AdvertiserCreate, response: Response, sessions: Sessions, tiktok: TikTok, box: Secrets, caller: CurrentCaller
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
        caller=caller,
    )
    response.headers["Location"] = f"/v1/advertisers/{advertiser.tiktok_advertiser_id}"
    return AdvertiserRead.model_validate(advertiser)


@router.get(
    "",
    operation_id="listAdvertisers",
    summary="List the ad accounts this key may touch",
    responses=problem_responses(CursorInvalid),
)
async def list_advertisers(
    session: DbSession, caller: CurrentCaller, page: Annotated[PageParams, Depends(page_params)]
) -> AdvertiserPage:
    """Oldest first. An admin key sees every registered ad account; any other key, those it was granted or
    registered."""
    rows, next_cursor = await service.list_page(session, caller=caller, page=page)
    return AdvertiserPage(items=[AdvertiserRead.model_validate(row) for row in rows], next_cursor=next_cursor)


@router.get(
    "/{tiktok_advertiser_id}",
    operation_id="getAdvertiser",
    summary="Read an ad account",
    responses=problem_responses(AdvertiserNotFound),
)
async def get_advertiser(tiktok_advertiser_id: AccessibleAdvertiserId, session: DbSession) -> AdvertiserRead:
    advertiser = await service.get(session, tiktok_advertiser_id=tiktok_advertiser_id)
    return AdvertiserRead.model_validate(advertiser)


@router.patch(
    "/{tiktok_advertiser_id}",
    operation_id="updateAdvertiser",
    summary="Change an ad account's name or Spark Ads limit",
    responses=problem_responses(AdvertiserNotFound),
)
async def update_advertiser(
    tiktok_advertiser_id: AccessibleAdvertiserId, body: AdvertiserUpdate, session: DbSession
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
    tiktok_advertiser_id: AccessibleAdvertiserId,
    body: AccessTokenUpdate,
    sessions: Sessions,
    tiktok: TikTok,
    box: Secrets,
) -> AdvertiserRead:
    """Re-connect an ad account whose token TikTok no longer accepts (`access_token_invalid`).

    The new token replaces the old one only once TikTok accepts it for this ad account.
    """
    advertiser = await service.reconnect(
        sessions, tiktok, box, tiktok_advertiser_id=tiktok_advertiser_id, access_token=body.access_token
    )
    return AdvertiserRead.model_validate(advertiser)
