from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator, AwareDatetime, BaseModel, Field

from app.ads.models import Ad, AdSource, AdState, CampaignType
from app.authorizations.models import Authorization
from app.authorizations.schemas import AuthorizationWarning, WarningReason
from app.kit.bodies import FromText, RequestBody
from app.kit.pagination import Page

# TikTok's ids are positive numbers written without leading zeros: "0055" and "55" would be one ad.
AdId = Annotated[
    str, Field(pattern=r"^[1-9][0-9]{0,31}$", description="TikTok's ad id.", examples=["1800000000000000001"])
]

# Years an ad's end can sensibly fall in; beyond, a date would not survive the trip to Postgres and back (asyncpg
# turns the extremes of Python's calendar into infinity). The schema says it with a pattern on the year as written;
# the bounds below leave room for any UTC offset of a time written in those years.
_END_YEARS = r"^(2[0-9]{3}|[3-8][0-9]{3})-"
_EARLIEST_END = datetime(1999, 12, 31, tzinfo=UTC)
_LATEST_END = datetime(9000, 1, 2, tzinfo=UTC)


def _a_sane_end(value: datetime) -> datetime:
    try:
        utc = value.astimezone(UTC)
    except OverflowError as exc:
        raise ValueError("ends_at is outside the calendar") from exc
    if not _EARLIEST_END <= utc < _LATEST_END:
        raise ValueError("ends_at must fall in the years 2000 to 8999")
    return utc


AdEnd = Annotated[AwareDatetime, AfterValidator(_a_sane_end), Field(json_schema_extra={"pattern": _END_YEARS})]


class AdCreate(RequestBody):
    ad_id: AdId
    campaign_type: FromText[CampaignType] = Field(
        description="D15: a standard campaign, or Smart+ (its own set-up flow)."
    )
    only_show_as_ad: bool = Field(
        description="TikTok's `dark_post_status` ON: the post shows only as an ad. Off, a private post becomes "
        "public while the ad runs (D5)."
    )
    ends_at: FromText[AdEnd] | None = Field(
        default=None, description="When the ad is scheduled to end, with its time zone; none: no end."
    )


class AdRead(BaseModel):
    ad_id: str
    authorization_id: uuid.UUID
    advertiser_id: str = Field(description="TikTok's advertiser (ad account) id.")
    item_id: str = Field(description="The TikTok post the ad uses.")
    campaign_type: CampaignType
    only_show_as_ad: bool
    ends_at: datetime | None
    state: AdState = Field(description="`removed` once recorded as removed from Ads Manager; kept as history.")
    removed_at: datetime | None
    source: AdSource = Field(
        description="`caller`: linked by a calling system (linkAd). `tiktok`: found on TikTok by reconciliation "
        "(`ad/get`), made outside the service."
    )
    warnings: list[AuthorizationWarning] = Field(
        description="`ad_outlives_authorization`: the ad is scheduled past the window's end and stops delivering "
        "then. `post_will_become_public` (D5)."
    )
    created_by_api_key_id: uuid.UUID | None = Field(description="The API key that linked it.")
    updated_by_api_key_id: uuid.UUID | None = Field(description="The API key that last changed it (removed it).")
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_model(cls, ad: Ad, authorization: Authorization) -> AdRead:
        warnings = []
        window_end = authorization.auth_end_at
        if ad.state == AdState.active:
            if ad.ends_at is not None and window_end is not None and ad.ends_at > window_end:
                warnings.append(
                    AuthorizationWarning(
                        reason=WarningReason.ad_outlives_authorization,
                        detail=f"The ad is scheduled until {ad.ends_at.isoformat()}, but the authorization ends at "
                        f"{window_end.isoformat()}: the ad stops delivering then.",
                    )
                )
            if authorization.is_private() and not ad.only_show_as_ad:
                warnings.append(
                    AuthorizationWarning(
                        reason=WarningReason.post_will_become_public,
                        detail="The post is private and the ad is not set to 'only show as ad': the post becomes "
                        "public while the ad runs.",
                    )
                )
        return cls(
            ad_id=ad.ad_id,
            authorization_id=ad.authorization_id,
            advertiser_id=authorization.advertiser.tiktok_advertiser_id,
            item_id=authorization.item_id,
            campaign_type=CampaignType(ad.campaign_type),
            only_show_as_ad=ad.only_show_as_ad,
            ends_at=ad.ends_at,
            state=AdState(ad.state),
            removed_at=ad.removed_at,
            source=AdSource(ad.source),
            warnings=warnings,
            created_by_api_key_id=ad.created_by_api_key_id,
            updated_by_api_key_id=ad.updated_by_api_key_id,
            created_at=ad.created_at,
            updated_at=ad.updated_at,
        )


class IdentityQuota(BaseModel):
    identity_type: str
    identity_id: str
    limit: int
    used: int
    remaining: int


class SparkAdsQuota(BaseModel):
    advertiser_id: str = Field(description="TikTok's advertiser (ad account) id.")
    limit: int = Field(description="How many Spark Ads the ad account may use (D10).")
    used: int = Field(description="Active ads linked to the ad account's authorizations.")
    remaining: int = Field(description="How many more may be linked now (0 when the limit is at or below `used`).")
    identities: list[IdentityQuota] = Field(
        description="For each identity the ad account's posts come from: its active ads across every ad account "
        "the service knows, against TikTok's cap for one identity."
    )


class AdPage(Page[AdRead]):
    """A page of ads; `next_cursor` fetches the next."""
