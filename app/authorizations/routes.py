from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response, status

from app.advertisers import service as advertisers
from app.advertisers.errors import AdvertiserNotFound
from app.advertisers.routes import AdvertiserIdPath
from app.authorizations import service
from app.authorizations.errors import REFUSALS, AuthorizationNotFound
from app.authorizations.models import Authorization, AuthorizationStatus, IdentityType, OriginKind
from app.authorizations.schemas import (
    AuthorizationCreate,
    AuthorizationRead,
    AuthorizationWarning,
    Creator,
    OriginalPost,
)
from app.kit.db import DbSession
from app.kit.deps import AppSettings, Secrets, TikTok
from app.kit.errors import CursorInvalid, problem_responses
from app.kit.pagination import Page, PageParams, page_params
from app.tiktok.models import ItemType
from app.tiktok.problems import TIKTOK_PROBLEMS

router = APIRouter(tags=["authorizations"])


def to_read(authorization: Authorization, now: datetime) -> AuthorizationRead:
    return AuthorizationRead(
        id=authorization.id,
        advertiser_id=authorization.advertiser.tiktok_advertiser_id,
        item_id=authorization.item_id,
        item_type=ItemType(authorization.item_type),
        creator=Creator(
            identity_type=IdentityType(authorization.identity_type),
            identity_id=authorization.identity_id,
            tiktok_name=authorization.tiktok_name,
        ),
        caption=authorization.caption,
        video_duration_seconds=authorization.duration_seconds,
        post_status=authorization.post_status,
        original_post=(
            OriginalPost(kind=OriginKind(authorization.origin_kind), item_id=authorization.original_item_id)
            if authorization.origin_kind and authorization.original_item_id
            else None
        ),
        auth_start_at=authorization.auth_start_at,
        auth_end_at=authorization.auth_end_at,
        tiktok_auth_status=authorization.tiktok_auth_status,
        status=authorization.status_at(now),
        code_hint=authorization.auth_code_hint,
        warnings=[AuthorizationWarning(reason=r, detail=d) for r, d in service.warnings_for(authorization)],
        created_at=authorization.created_at,
        updated_at=authorization.updated_at,
    )


@router.post(
    "/advertisers/{tiktok_advertiser_id}/authorizations",
    operation_id="applyAuthorizationCode",
    status_code=status.HTTP_201_CREATED,
    summary="Apply a creator's code to an ad account",
    responses={
        200: {
            "model": AuthorizationRead,
            "description": "This post was already authorized for this ad account (D2).",
        },
        **problem_responses(AdvertiserNotFound, *REFUSALS, *TIKTOK_PROBLEMS),
    },
)
async def apply_authorization_code(
    tiktok_advertiser_id: AdvertiserIdPath,
    body: AuthorizationCreate,
    response: Response,
    session: DbSession,
    tiktok: TikTok,
    box: Secrets,
    settings: AppSettings,
) -> AuthorizationRead:
    """Check the code with TikTok, refuse it with a precise `reason` when it cannot be used, else apply it.

    201 with the new authorization; 200 with the existing one when the post is already authorized for this ad
    account (applying a code twice is the same authorization).
    """
    advertiser = await advertisers.get(session, tiktok_advertiser_id=tiktok_advertiser_id)
    applied = await service.apply_code(
        session,
        tiktok,
        box,
        service.Policy(max_video_duration_seconds=settings.max_video_duration_seconds),
        advertiser=advertiser,
        auth_code=body.auth_code,
        original_post_auth_code=body.original_post_auth_code,
    )
    if not applied.created:
        response.status_code = status.HTTP_200_OK
    return to_read(applied.authorization, datetime.now(UTC))


@router.get(
    "/advertisers/{tiktok_advertiser_id}/authorizations",
    operation_id="listAuthorizations",
    summary="List an ad account's authorizations",
    responses=problem_responses(AdvertiserNotFound, CursorInvalid),
)
async def list_authorizations(
    tiktok_advertiser_id: AdvertiserIdPath,
    session: DbSession,
    page: Annotated[PageParams, Depends(page_params)],
    status_filter: Annotated[
        AuthorizationStatus | None, Query(alias="status", description="Only authorizations with this status.")
    ] = None,
) -> Page[AuthorizationRead]:
    """Newest first, a page at a time."""
    advertiser = await advertisers.get(session, tiktok_advertiser_id=tiktok_advertiser_id)
    rows, next_cursor = await service.list_for_advertiser(
        session, advertiser=advertiser, status=status_filter, page=page
    )
    now = datetime.now(UTC)
    return Page[AuthorizationRead](items=[to_read(row, now) for row in rows], next_cursor=next_cursor)


@router.get(
    "/authorizations/{authorization_id}",
    operation_id="getAuthorization",
    summary="Read an authorization",
    responses=problem_responses(AuthorizationNotFound),
)
async def get_authorization(authorization_id: uuid.UUID, session: DbSession) -> AuthorizationRead:
    authorization = await service.get(session, authorization_id=authorization_id)
    return to_read(authorization, datetime.now(UTC))
