from __future__ import annotations

import re
import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response, status
from pydantic.json_schema import SkipJsonSchema

from app.advertisers.errors import AdvertiserNotFound
from app.advertisers.routes import AccessibleAdvertiserId
from app.api_keys.dependencies import CurrentCaller, caller_of
from app.authorizations import batch, intake, own_posts, service, unauthorize
from app.authorizations.errors import (
    REFUSALS,
    AdsStillActive,
    AuthCodeInvalid,
    AuthorizationInProgress,
    AuthorizationNotFound,
    OwnPostNotFound,
    PairStillBound,
)
from app.authorizations.models import AuthorizationStatus, IdentityType
from app.authorizations.schemas import (
    AuthorizationBatchCreate,
    AuthorizationBatchItem,
    AuthorizationBatchRead,
    AuthorizationCreate,
    AuthorizationPage,
    AuthorizationRead,
    BatchOutcome,
    BcAuthTtPostCreate,
    OwnPostCreate,
)
from app.kit import clock
from app.kit.clock import Now
from app.kit.contract import CALLS_TIKTOK
from app.kit.db import DriverConnection, Sessions, driver_connection
from app.kit.deps import AppSettings, Secrets, TikTok
from app.kit.errors import CursorInvalid, problem_responses
from app.kit.hot_reads import HotRequest, NotPlain, hot_read
from app.kit.idempotency import mark_not_to_replay
from app.kit.pagination import PageParams, page_params
from app.kit.tiktok_problems import TIKTOK_PROBLEMS

router = APIRouter(tags=["authorizations"])


def _created_or_found(response: Response, applied: intake.Applied) -> None:
    """201 with where the new authorization is; 200 when it was there already."""
    if applied.created:
        response.headers["Location"] = f"/v1/authorizations/{applied.authorization.id}"
    else:
        response.status_code = status.HTTP_200_OK


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
        **problem_responses(AdvertiserNotFound, AuthorizationInProgress, *REFUSALS, *TIKTOK_PROBLEMS),
    },
)
async def apply_authorization_code(
    tiktok_advertiser_id: AccessibleAdvertiserId,
    body: AuthorizationCreate,
    response: Response,
    sessions: Sessions,
    tiktok: TikTok,
    box: Secrets,
    settings: AppSettings,
    now: Now,
) -> AuthorizationRead:
    """Check the code with TikTok, refuse it with a precise `reason` when it cannot be used, else apply it.

    201 with the new authorization; 200 with the existing one when the post is already authorized for this ad
    account (applying a code twice is the same authorization). For a Duet or Stitch, the original post gets an
    authorization of its own too (`original_post.authorization_id`). Every failure is retryable as sent when
    `retryable` is true: a retry never applies a code twice, and settles an apply whose TikTok answer was lost.
    """
    applied = await intake.apply_code(
        sessions,
        tiktok,
        box,
        intake.Policy.from_settings(settings),
        tiktok_advertiser_id=tiktok_advertiser_id,
        auth_code=body.auth_code,
        original_post_auth_code=body.original_post_auth_code,
        now=now,
    )
    _created_or_found(response, applied)
    return AuthorizationRead.from_model(applied.authorization, now, reordered=applied.reordered)


@router.post(
    "/advertisers/{tiktok_advertiser_id}/authorizations/batch",
    operation_id="applyAuthorizationCodes",
    summary="Apply up to 20 creators' codes to an ad account",
    responses=problem_responses(AdvertiserNotFound, AuthCodeInvalid),
    openapi_extra={CALLS_TIKTOK: True},  # each item's TikTok failures are in its own result
)
async def apply_authorization_codes(
    tiktok_advertiser_id: AccessibleAdvertiserId,
    body: AuthorizationBatchCreate,
    request: Request,
    sessions: Sessions,
    tiktok: TikTok,
    box: Secrets,
    settings: AppSettings,
    now: Now,
) -> AuthorizationBatchRead:
    """D11: each item is answered on its own, in order, with the outcome the single-code call would have had: one
    bad code never spoils the others, and each item commits on its own. An item that is not a code at all refuses
    the whole request (422 `auth_code_invalid`, with `errors` naming the items), and nothing is applied. The two
    codes of a Duet/Stitch given as two items are applied together (D12)."""
    results = await batch.apply_batch(
        sessions,
        tiktok,
        box,
        intake.Policy.from_settings(settings),
        tiktok_advertiser_id=tiktok_advertiser_id,
        items=[(item.auth_code, item.original_post_auth_code) for item in body.items],
        now=now,
    )
    if any(result.outcome is batch.Outcome.failed for result in results):
        mark_not_to_replay(request)  # a retry with the same Idempotency-Key runs the failed items again
    return AuthorizationBatchRead(
        results=[
            AuthorizationBatchItem(
                index=index,
                outcome=BatchOutcome(result.outcome.value),
                authorization=(
                    AuthorizationRead.from_model(result.applied.authorization, now, reordered=result.applied.reordered)
                    if result.applied
                    else None
                ),
                problem=result.problem.to_problem(request.url.path) if result.problem else None,
                paired_with=result.paired_with,
            )
            for index, result in enumerate(results)
        ]
    )


@router.post(
    "/advertisers/{tiktok_advertiser_id}/own-posts",
    operation_id="registerOwnPost",
    status_code=status.HTTP_201_CREATED,
    summary="Register a post from the brand's own TikTok account",
    responses={
        200: {"model": AuthorizationRead, "description": "This post is already tracked for this ad account."},
        **problem_responses(AdvertiserNotFound, OwnPostNotFound, *REFUSALS, *TIKTOK_PROBLEMS),
    },
)
async def register_own_post(
    tiktok_advertiser_id: AccessibleAdvertiserId,
    body: OwnPostCreate,
    response: Response,
    sessions: Sessions,
    tiktok: TikTok,
    box: Secrets,
    settings: AppSettings,
    now: Now,
) -> AuthorizationRead:
    """D1: a post of the brand's own account (`TT_USER`, or `BC_AUTH_TT` with its Business Center) needs no code.
    TikTok must show it under that identity (`identity/video/info`); it is then tracked like a creator's post,
    with no window."""
    applied = await own_posts.register(
        sessions,
        tiktok,
        box,
        intake.Policy.from_settings(settings),
        tiktok_advertiser_id=tiktok_advertiser_id,
        item_id=body.item_id,
        identity_type=IdentityType(body.identity_type),
        identity_id=body.identity_id,
        identity_authorized_bc_id=body.identity_authorized_bc_id if isinstance(body, BcAuthTtPostCreate) else None,
        now=now,
    )
    _created_or_found(response, applied)
    return AuthorizationRead.from_model(applied.authorization, now)


@router.post(
    "/authorizations/{authorization_id}/unauthorize",
    operation_id="unauthorize",
    summary="Un-authorize the post from its ad account",
    responses=problem_responses(
        AuthorizationNotFound, AdsStillActive, PairStillBound, AuthorizationInProgress, *TIKTOK_PROBLEMS
    ),
)
async def unauthorize_authorization(
    authorization_id: uuid.UUID,
    sessions: Sessions,
    tiktok: TikTok,
    box: Secrets,
    settings: AppSettings,
    now: Now,
    caller: CurrentCaller,
) -> AuthorizationRead:
    """D16: `tt_video/unbind`, refused (409 `ads_still_active`, listing them, TikTok not called) while the ad
    account has active ads on the post. A Duet/Stitch ends both posts' bindings. Twice is the same result. If
    TikTok fails, `retryable` says whether to send it again; an outcome that is unknown leaves the authorization
    `unauthorizing` until a retry or `settle` reads TikTok. Afterwards the post may be authorized again, as a new
    authorization; this one stays as history."""
    authorization = await unauthorize.unauthorize(
        sessions,
        tiktok,
        box,
        intake.Policy.from_settings(settings),
        authorization_id=authorization_id,
        now=now,
        caller=caller,
    )
    return AuthorizationRead.from_model(authorization, now)


@router.get(
    "/advertisers/{tiktok_advertiser_id}/authorizations",
    operation_id="listAuthorizations",
    summary="List an ad account's authorizations",
    responses=problem_responses(AdvertiserNotFound, CursorInvalid),
)
async def list_authorizations(
    tiktok_advertiser_id: AccessibleAdvertiserId,
    connection: DriverConnection,
    now: Now,
    page: Annotated[PageParams, Depends(page_params)],
    status_filter: Annotated[
        AuthorizationStatus | SkipJsonSchema[None],
        Query(alias="status", description="Only authorizations with this status."),
    ] = None,
) -> AuthorizationPage:
    """Newest first, a page at a time."""
    rows, next_cursor = await service.read_page(
        connection, tiktok_advertiser_id=tiktok_advertiser_id, status=status_filter, page=page, now=now
    )
    return AuthorizationPage(items=[AuthorizationRead.from_row(row, now) for row in rows], next_cursor=next_cursor)


@router.get(
    "/authorizations/{authorization_id}",
    operation_id="getAuthorization",
    summary="Read an authorization",
    responses=problem_responses(AuthorizationNotFound),
)
async def get_authorization(
    authorization_id: uuid.UUID, connection: DriverConnection, now: Now, caller: CurrentCaller
) -> AuthorizationRead:
    row = await service.read(connection, authorization_id=authorization_id, caller=caller)
    return AuthorizationRead.from_row(row, now)


# The UUID as callers send it (hyphenated, either case); any other spelling the route takes or refuses itself.
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


@hot_read("getAuthorization")
async def get_authorization_plainly(request: HotRequest) -> AuthorizationRead:
    """`get_authorization`'s plain case, without FastAPI's per-request work (app.kit.hot_reads)."""
    if not _UUID.fullmatch(request.params["authorization_id"]):
        raise NotPlain()
    authorization_id = uuid.UUID(request.params["authorization_id"])
    caller = caller_of(request.scope)
    async with driver_connection(request.app.state.engine) as connection:
        row = await service.read(connection, authorization_id=authorization_id, caller=caller)
    return AuthorizationRead.from_row(row, clock.utcnow())
