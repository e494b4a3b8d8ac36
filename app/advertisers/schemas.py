from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, SecretStr

TikTokAdvertiserId = str


class AdvertiserCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tiktok_advertiser_id: str = Field(
        pattern=r"^[0-9]{1,32}$", description="TikTok's advertiser (ad account) id.", examples=["7000000000000000001"]
    )
    access_token: SecretStr = Field(
        min_length=1, max_length=1024, description="The advertiser's TikTok access token. Stored encrypted, never returned."
    )
    name: str | None = Field(default=None, max_length=200, description="A name people recognise.")


class AdvertiserRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    tiktok_advertiser_id: str
    name: str | None
    created_at: datetime
    updated_at: datetime
