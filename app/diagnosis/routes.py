from __future__ import annotations

import uuid

from fastapi import APIRouter

from app.api_keys.dependencies import CurrentCaller
from app.authorizations.errors import AuthorizationNotFound
from app.diagnosis import service
from app.diagnosis.schemas import Diagnosis
from app.kit.clock import Now
from app.kit.contract import CALLS_TIKTOK
from app.kit.db import Sessions
from app.kit.deps import Secrets, TikTok
from app.kit.errors import problem_responses

router = APIRouter(tags=["authorizations"])


@router.get(
    "/authorizations/{authorization_id}/diagnosis",
    operation_id="diagnoseAuthorization",
    summary="Check why a Spark Ad using this authorization may not be running",
    responses=problem_responses(AuthorizationNotFound),
    # TikTok failing is never this operation's answer: the checks that need TikTok come back `unknown`.
    openapi_extra={CALLS_TIKTOK: True},
)
async def diagnose_authorization(
    authorization_id: uuid.UUID,
    sessions: Sessions,
    tiktok: TikTok,
    box: Secrets,
    now: Now,
    caller: CurrentCaller,
) -> Diagnosis:
    """D14: the Spark Ads guide's checklist for an ad that is not running, for this authorization, each item `ok`,
    `failing` (with the `action` that clears it) or `unknown` (TikTok could not be asked now):

    - `ad_account_access`: TikTok accepts the ad account's access token and its permissions (asked now);
    - `code`: the creator's code as applied, read back from TikTok now (own posts have none);
    - `window`: the window as stored (D3): expired, revoked or un-authorized fails; ending within 3 days is `ok`
      with an action to have it extended;
    - `post`: the post as TikTok shows it now: banned or deleted (D8), no longer authorized, or private while an ad
      that does not only show as an ad would make it public (D5);
    - `spark_ads_limit`: the ad account at or over its Spark Ads limit (D10);
    - `ad`, once per active linked ad: scheduled past the window's end, or already ended; Smart+ noted (D15).

    `status` is `failing` if any item fails, else `unknown` if any is unknown, else `ok`. Nothing is changed, here
    or on TikTok. TikTok failing or unreachable makes only the items that need it `unknown`, never an error.
    """
    return await service.diagnose(sessions, tiktok, box, authorization_id=authorization_id, caller=caller, now=now)
