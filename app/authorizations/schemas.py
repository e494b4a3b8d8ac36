from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from app.authorizations.models import Authorization, AuthorizationStatus, IdentityType, OriginKind
from app.tiktok.models import ItemType


class AuthorizationCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Generous bounds here; whether it is a code at all is the service's call (reason auth_code_invalid).
    auth_code: str = Field(
        min_length=1,
        max_length=2048,
        description="The creator's video authorization code, as copied from TikTok. For a Duet or Stitch, the code "
        "of the post that is the Duet/Stitch (the secondary creator's).",
        examples=["#SBX+video-30d/Aa1="],
    )
    original_post_auth_code: str | None = Field(
        default=None,
        min_length=1,
        max_length=2048,
        description="For a Duet or Stitch: the code of the original post (the primary creator's). Two codes given "
        "the other way round are put in the right order.",
    )


class OwnIdentityType(StrEnum):
    """D1: the brand's own TikTok account, directly or through a Business Center."""

    tt_user = "TT_USER"
    bc_auth_tt = "BC_AUTH_TT"


class OwnPostCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    item_id: str = Field(pattern=r"^[0-9]{1,32}$", description="The TikTok post id.")
    identity_type: OwnIdentityType
    identity_id: str = Field(min_length=1, max_length=128, pattern=r"^[!-~]+$", description="TikTok's identity id.")
    identity_authorized_bc_id: str | None = Field(
        default=None,
        pattern=r"^[0-9]{1,32}$",
        description="The Business Center the identity is authorized through: required for `BC_AUTH_TT`.",
    )

    @model_validator(mode="after")
    def _bc_id_goes_with_bc_auth_tt(self) -> Self:
        if (self.identity_type is OwnIdentityType.bc_auth_tt) != (self.identity_authorized_bc_id is not None):
            raise ValueError("identity_authorized_bc_id is required for BC_AUTH_TT, and only for it")
        return self


class Creator(BaseModel):
    identity_type: IdentityType
    identity_id: str | None
    tiktok_name: str | None


class OriginalPost(BaseModel):
    kind: OriginKind = Field(description="Whether this post is a Duet or a Stitch of the original.")
    item_id: str = Field(description="The original post's TikTok id.")
    authorization_id: uuid.UUID | None = Field(
        description="The original post's own authorization in this ad account: TikTok binds both posts (D12)."
    )


class AuthorizationWarning(BaseModel):
    reason: str = Field(description="Stable machine-readable reason, e.g. `post_will_become_public` (D5).")
    detail: str


class AuthorizationRead(BaseModel):
    id: uuid.UUID
    advertiser_id: str = Field(description="TikTok's advertiser (ad account) id.")
    item_id: str = Field(description="The TikTok post id (`tiktok_item_id` when creating an ad).")
    item_type: ItemType
    creator: Creator
    caption: str | None = Field(description="The caption as authorized; it cannot be edited afterwards (D4).")
    video_duration_seconds: float | None = Field(description="Null for carousels.")
    post_status: str = Field(description="TikTok's post status, prefixes folded (e.g. `HESITATE_RECOMMEND`).")
    original_post: OriginalPost | None = Field(description="Set when the post is a Duet or Stitch.")
    auth_start_at: datetime | None = Field(description="Window start, as TikTok reported it.")
    auth_end_at: datetime | None = Field(description="Window end, as TikTok reported it.")
    tiktok_auth_status: str | None = Field(description="TikTok's `ad_auth_status` when the code was applied.")
    status: AuthorizationStatus = Field(
        description="`expired` as soon as the window has ended (D3). `pending`: the code was being applied when "
        "TikTok's answer was lost (a timeout, an outage); the service settles it by reading TikTok, at the next "
        "apply of the post at the latest."
    )
    code_hint: str | None = Field(description="The code's last characters, to recognise it; never the code.")
    active_ads: int = Field(description="Ads linked to this authorization and not removed (D6).")
    unauthorized_at: datetime | None = Field(description="When it was un-authorized (`tt_video/unbind`, D16).")
    warnings: list[AuthorizationWarning]
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_model(cls, authorization: Authorization, now: datetime) -> AuthorizationRead:
        """What a caller sees of `authorization` at `now` (one `now` per request: see app.kit.clock)."""
        original = (
            OriginalPost(
                kind=OriginKind(authorization.origin_kind),
                item_id=authorization.original_item_id,
                authorization_id=authorization.original_authorization_id,
            )
            if authorization.origin_kind and authorization.original_item_id
            else None
        )
        return cls(
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
            original_post=original,
            auth_start_at=authorization.auth_start_at,
            auth_end_at=authorization.auth_end_at,
            tiktok_auth_status=authorization.tiktok_auth_status,
            status=authorization.status_at(now),
            code_hint=authorization.auth_code_hint,
            active_ads=authorization.active_ads,
            unauthorized_at=authorization.unauthorized_at,
            warnings=[AuthorizationWarning(reason=r, detail=d) for r, d in authorization.warnings()],
            created_at=authorization.created_at,
            updated_at=authorization.updated_at,
        )
