"""Asking TikTok about one authorization now, rather than at the ad account's next reconciliation."""

from __future__ import annotations

import uuid

from fastapi import APIRouter

from app.api_keys.dependencies import CurrentCaller
from app.authorizations.errors import AuthorizationNotFound
from app.authorizations.schemas import AuthorizationRead
from app.kit.clock import Now
from app.kit.contract import CALLS_TIKTOK
from app.kit.db import Sessions
from app.kit.deps import Secrets, TikTok
from app.kit.errors import problem_responses
from app.kit.tiktok_problems import TIKTOK_PROBLEMS
from app.reconcile import service

router = APIRouter(tags=["authorizations"])


@router.post(
    "/authorizations/{authorization_id}/refresh",
    operation_id="refreshAuthorization",
    summary="Check an authorization with TikTok now",
    responses=problem_responses(AuthorizationNotFound, *TIKTOK_PROBLEMS),
    openapi_extra={CALLS_TIKTOK: True},
)
async def refresh_authorization(
    authorization_id: uuid.UUID,
    sessions: Sessions,
    tiktok: TikTok,
    box: Secrets,
    now: Now,
    caller: CurrentCaller,
) -> AuthorizationRead:
    """Reads the post from TikTok now (`tt_video/list` for a creator's post, `identity/video/info` for an own
    post) and records what changed there, as reconciliation does, each change with its event: a code the creator
    revoked (`revoked`, D3), a window extended, a post banned or deleted (D8), a caption changed (D4:
    `tiktok_caption`; `caption` stays as authorized). Only an active authorization is compared; any other is
    answered as it is. `tiktok_checked_at` says when TikTok was last asked."""
    authorization = await service.refresh_authorization(
        sessions, tiktok, box, authorization_id=authorization_id, caller=caller, now=now
    )
    return AuthorizationRead.from_model(authorization, now)
