"""What a diagnosis answers (D14): the guide's checklist for one authorization, each item checked now."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, Field

from app.authorizations.models import AuthorizationStatus, IdentityType
from app.kit.errors import TikTokDetails


class DiagnosisCheckName(StrEnum):
    """The items of the checklist, in the order they are answered."""

    ad_account_access = "ad_account_access"  # the ad account's token and permissions, asked of TikTok now
    code = "code"  # the creator's code as applied, read back from TikTok now (own posts have none)
    window = "window"  # the authorization's window as stored (D3), and its status
    post = "post"  # the post as TikTok shows it now: banned, deleted, no longer bound, private (D5, D8)
    spark_ads_limit = "spark_ads_limit"  # the ad account's Spark Ads against its limit (D10)
    ad = "ad"  # one per active ad linked to the authorization (D6, D15)


class DiagnosisStatus(StrEnum):
    ok = "ok"
    failing = "failing"
    unknown = "unknown"


class DiagnosisCheck(BaseModel):
    check: DiagnosisCheckName = Field(
        description="Which item of the checklist: `ad_account_access` (TikTok accepts the ad account's token and "
        "its permissions, asked now), `code` (the creator's code as applied, read back from TikTok now), `window` "
        "(the window as stored, D3), `post` (the post as TikTok shows it now: banned or deleted, D8; no longer "
        "authorized; private while an ad would make it public, D5), `spark_ads_limit` (D10), and `ad` once per "
        "active linked ad (`ad_id`)."
    )
    status: DiagnosisStatus = Field(
        description="`ok`; `failing`: this keeps a Spark Ad from running as intended (see `action`); `unknown`: "
        "it could not be checked now (TikTok could not be asked), see `detail`."
    )
    detail: str = Field(description="What was found, for people.")
    action: str | None = Field(description="What to do about it; null when nothing needs doing.")
    ad_id: str | None = Field(description="For `ad`: the TikTok ad id. Null for every other check.")
    tiktok: TikTokDetails | None = Field(
        description="When the outcome comes from TikTok refusing or failing: its own words, to quote to TikTok "
        "support. Null otherwise."
    )


class Diagnosis(BaseModel):
    authorization_id: uuid.UUID
    advertiser_id: str = Field(description="TikTok's advertiser (ad account) id.")
    item_id: str = Field(description="The TikTok post.")
    identity_type: IdentityType = Field(
        description="`AUTH_CODE` for a creator's post (a code and a window); `TT_USER` or `BC_AUTH_TT` for the "
        "brand's own post (no code, no window, D1)."
    )
    authorization_status: AuthorizationStatus = Field(description="The authorization's status as stored (D3).")
    status: DiagnosisStatus = Field(
        description="`failing` if any check fails; else `unknown` if any could not be checked; else `ok`."
    )
    checks: list[DiagnosisCheck] = Field(
        description="In a fixed order: `ad_account_access`, `code`, `window`, `post`, `spark_ads_limit`, then one "
        "`ad` per active linked ad, oldest first."
    )
    checked_at: datetime = Field(description="When the checks were decided (the request's time).")
