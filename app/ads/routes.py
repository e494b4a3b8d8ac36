from __future__ import annotations

import re
import uuid
from enum import StrEnum
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Response, status

from app.ads import service
from app.ads.errors import LINK_REFUSALS, AdNotFound
from app.ads.schemas import AdCreate, AdPage, AdRead, SparkAdsQuota
from app.advertisers.errors import AdvertiserNotFound
from app.advertisers.routes import ADVERTISER_ID_PATTERN, AccessibleAdvertiserId, accessible
from app.api_keys.dependencies import CurrentCaller, caller_of
from app.authorizations.errors import AuthorizationNotFound
from app.kit.clock import Now
from app.kit.db import DbSession, DriverConnection, driver_connection
from app.kit.deps import AppSettings
from app.kit.errors import CursorInvalid, problem_responses
from app.kit.hot_reads import HotRequest, NotPlain, hot_read
from app.kit.pagination import PageParams, page_params

router = APIRouter(tags=["ads"])

AdIdPath = Annotated[str, Path(pattern=r"^[1-9][0-9]{0,31}$", description="TikTok's ad id.")]


class AdStateFilter(StrEnum):
    active = "active"
    all = "all"


@router.post(
    "/authorizations/{authorization_id}/ads",
    operation_id="linkAd",
    status_code=status.HTTP_201_CREATED,
    summary="Record that a TikTok ad uses the authorized post",
    responses={
        200: {"model": AdRead, "description": "This ad was already linked to this authorization."},
        **problem_responses(AuthorizationNotFound, *LINK_REFUSALS),
    },
)
async def link_ad(
    authorization_id: uuid.UUID,
    body: AdCreate,
    response: Response,
    session: DbSession,
    now: Now,
    settings: AppSettings,
    caller: CurrentCaller,
) -> AdRead:
    """201 with the link; 200 when this ad is already linked here. Refused (409) when the authorization cannot be
    used by a new ad, or when the ad account or the post's identity is at its limit; warnings never refuse."""
    linked = await service.link(
        session,
        authorization_id=authorization_id,
        ad_id=body.ad_id,
        campaign_type=body.campaign_type,
        only_show_as_ad=body.only_show_as_ad,
        ends_at=body.ends_at,
        now=now,
        identity_ads_limit=settings.identity_ads_limit,
        caller=caller,
    )
    if linked.created:
        response.headers["Location"] = f"/v1/authorizations/{authorization_id}/ads/{body.ad_id}"
    else:
        response.status_code = status.HTTP_200_OK
    return AdRead.from_model(linked.ad, linked.authorization)


@router.get(
    "/authorizations/{authorization_id}/ads/{ad_id}",
    operation_id="getAd",
    summary="Read one ad of an authorization",
    responses=problem_responses(AuthorizationNotFound, AdNotFound),
)
async def get_ad(authorization_id: uuid.UUID, ad_id: AdIdPath, session: DbSession, caller: CurrentCaller) -> AdRead:
    """The link, removed or not."""
    authorization, ad = await service.get(session, authorization_id=authorization_id, ad_id=ad_id, caller=caller)
    return AdRead.from_model(ad, authorization)


@router.get(
    "/authorizations/{authorization_id}/ads",
    operation_id="listAds",
    summary="List the ads that use an authorized post",
    responses=problem_responses(AuthorizationNotFound, CursorInvalid),
)
async def list_ads(
    authorization_id: uuid.UUID,
    session: DbSession,
    caller: CurrentCaller,
    page: Annotated[PageParams, Depends(page_params)],
    state: Annotated[
        AdStateFilter, Query(description="`active` (the default): ads not removed; `all`: removed ones too.")
    ] = AdStateFilter.active,
) -> AdPage:
    """Newest first, a page at a time."""
    authorization, rows, next_cursor = await service.list_page(
        session,
        authorization_id=authorization_id,
        include_removed=state is AdStateFilter.all,
        page=page,
        caller=caller,
    )
    return AdPage(items=[AdRead.from_model(ad, authorization) for ad in rows], next_cursor=next_cursor)


@router.delete(
    "/authorizations/{authorization_id}/ads/{ad_id}",
    operation_id="removeAd",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Record that the ad was removed from Ads Manager",
    responses=problem_responses(AuthorizationNotFound, AdNotFound),
)
async def remove_ad(
    authorization_id: uuid.UUID, ad_id: AdIdPath, session: DbSession, now: Now, caller: CurrentCaller
) -> Response:
    """The link stays, as history, with when it was removed; it no longer counts toward any limit nor blocks the
    post's deletion. Removing it again answers the same."""
    await service.remove(session, authorization_id=authorization_id, ad_id=ad_id, now=now, caller=caller)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get(
    "/advertisers/{tiktok_advertiser_id}/spark-ads-quota",
    operation_id="getSparkAdsQuota",
    summary="How many Spark Ads the ad account may still use",
    responses=problem_responses(AdvertiserNotFound),
)
async def get_spark_ads_quota(
    tiktok_advertiser_id: AccessibleAdvertiserId, connection: DriverConnection, settings: AppSettings
) -> SparkAdsQuota:
    """Read from counters kept with the links: the same cost however many ads exist."""
    return await service.quota(
        connection, tiktok_advertiser_id=tiktok_advertiser_id, identity_ads_limit=settings.identity_ads_limit
    )


_ADVERTISER_ID = re.compile(ADVERTISER_ID_PATTERN)


@hot_read("getSparkAdsQuota")
async def get_spark_ads_quota_plainly(request: HotRequest) -> SparkAdsQuota:
    """`get_spark_ads_quota`'s plain case, without FastAPI's per-request work (app.kit.hot_reads)."""
    if not _ADVERTISER_ID.fullmatch(request.params["tiktok_advertiser_id"]):
        raise NotPlain()
    tiktok_advertiser_id = accessible(request.params["tiktok_advertiser_id"], caller_of(request.scope))
    async with driver_connection(request.app.state.engine) as connection:
        return await service.quota(
            connection,
            tiktok_advertiser_id=tiktok_advertiser_id,
            identity_ads_limit=request.app.state.settings.identity_ads_limit,
        )
