from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

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


class AdvertiserCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tiktok_advertiser_id: str = Field(
        pattern=r"^[0-9]{1,32}$",
        description="TikTok's advertiser (ad account) id.",
        examples=["7000000000000000001"],
    )
    access_token: AccessToken
    # No control characters: a name is one line of text (and Postgres refuses NUL in text).
    name: str | None = Field(
        default=None, max_length=200, pattern=r"^[^\x00-\x1f\x7f]*$", description="A name people recognise."
    )


class AccessTokenUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    access_token: AccessToken


class AdvertiserRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    tiktok_advertiser_id: str
    name: str | None
    created_at: datetime
    updated_at: datetime
