from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from app.advertisers.models import DEFAULT_SPARK_ADS_LIMIT
from app.kit.bodies import RequestBody, WholeNumber
from app.kit.pagination import Page

# Visible ASCII only: the token travels in an HTTP header. repr=False keeps it out of any repr or log.
AccessToken = Annotated[
    str,
    Field(
        min_length=1,
        max_length=1024,
        pattern=r"^[!-~]+$",
        repr=False,
        description="The advertiser's TikTok access token. Stored encrypted, never returned.",
    ),
]


# No control characters: a name is one line of text (and Postgres refuses NUL in text).
AdvertiserName = Annotated[
    str, Field(max_length=200, pattern=r"^[^\x00-\x1f\x7f]*$", description="A name people recognise.")
]

SparkAdsLimit = Annotated[
    WholeNumber[Annotated[int, Field(ge=0, le=1_000_000)]],
    Field(
        description="How many Spark Ads the ad account may use (D10). TikTok's is 10,000; it may be set lower, even "
        "below what is used (then nothing new links until ads are removed)."
    ),
]


class AdvertiserCreate(RequestBody):
    tiktok_advertiser_id: str = Field(
        pattern=r"^[0-9]{1,32}$",
        description="TikTok's advertiser (ad account) id.",
        examples=["7000000000000000001"],
    )
    access_token: AccessToken
    name: AdvertiserName | None = None
    spark_ads_limit: SparkAdsLimit = DEFAULT_SPARK_ADS_LIMIT


class AdvertiserUpdate(RequestBody):
    """What may change about an ad account; fields left out stay as they are."""

    name: AdvertiserName | None = None
    spark_ads_limit: SparkAdsLimit | None = Field(default=None, description="Left out or null: unchanged.")


class AccessTokenUpdate(RequestBody):
    access_token: AccessToken


class AdvertiserRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    tiktok_advertiser_id: str
    name: str | None
    spark_ads_limit: int = Field(description="How many Spark Ads this ad account may use (D10).")
    created_by_api_key_id: uuid.UUID | None = Field(description="The API key that registered it.")
    updated_by_api_key_id: uuid.UUID | None = Field(description="The API key that last changed it.")
    created_at: datetime
    updated_at: datetime


class AdvertiserPage(Page[AdvertiserRead]):
    """A page of ad accounts; `next_cursor` fetches the next."""
