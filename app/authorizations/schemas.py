from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

from app.authorizations.models import (
    ORIGINAL_READ_COLUMNS,
    READ_COLUMNS,
    Authorization,
    AuthorizationStatus,
    IdentityType,
    OriginKind,
    status_of,
    warnings_of,
)
from app.kit.bodies import RequestBody
from app.kit.errors import Problem
from app.kit.pagination import Page
from app.tiktok.models import ItemType, PostStatus


class AuthorizationCreate(RequestBody):
    # Generous bounds here; whether it is a code at all is the service's call (reason auth_code_invalid).
    auth_code: str = Field(
        min_length=1,
        max_length=2048,
        description="The creator's video authorization code, as copied from TikTok. For a Duet or Stitch, the code "
        "of the post that is the Duet/Stitch (the secondary creator's).",
        examples=["#SBX+video/30d="],
    )
    original_post_auth_code: str | None = Field(
        default=None,
        min_length=1,
        max_length=2048,
        description="For a Duet or Stitch: the code of the original post (the primary creator's). Two codes given "
        "the other way round are put in the right order.",
    )


class _OwnPost(RequestBody):
    item_id: str = Field(pattern=r"^[0-9]{1,32}$", description="The TikTok post id.")
    identity_id: str = Field(min_length=1, max_length=128, pattern=r"^[!-~]+$", description="TikTok's identity id.")


class TtUserPostCreate(_OwnPost):
    """A post of the brand's own TikTok account, used directly (`TT_USER`)."""

    identity_type: Literal["TT_USER"]


class BcAuthTtPostCreate(_OwnPost):
    """A post of the brand's own TikTok account, authorized through a Business Center (`BC_AUTH_TT`)."""

    identity_type: Literal["BC_AUTH_TT"]
    identity_authorized_bc_id: str = Field(
        pattern=r"^[0-9]{1,32}$", description="The Business Center the identity is authorized through."
    )


# D1: one body or the other, told apart by `identity_type` (the schema says which fields go with which).
OwnPostCreate = Annotated[TtUserPostCreate | BcAuthTtPostCreate, Field(discriminator="identity_type")]


class Creator(BaseModel):
    identity_type: IdentityType
    identity_id: str | None
    tiktok_name: str | None


class Window(BaseModel):
    start_at: datetime | None
    end_at: datetime | None


class OriginalPost(BaseModel):
    kind: OriginKind = Field(description="Whether this post is a Duet or a Stitch of the original.")
    item_id: str = Field(description="The original post's TikTok id.")
    authorization_id: uuid.UUID | None = Field(
        description="The original post's own authorization in this ad account: TikTok binds both posts (D12)."
    )
    code_window: Window | None = Field(description="The original's code's own window, as TikTok reported it.")


class WarningReason(StrEnum):
    post_will_become_public = "post_will_become_public"  # D5: a private post, shown publicly while an ad runs
    ad_outlives_authorization = "ad_outlives_authorization"  # the ad is scheduled past the window's end
    codes_reordered = "codes_reordered"  # D12: the two codes of a Duet/Stitch came the other way round


class AuthorizationWarning(BaseModel):
    reason: WarningReason = Field(
        description="Stable machine-readable reason: `post_will_become_public` (D5: the post is private and "
        "becomes public while an ad runs, unless the ad only shows as an ad); `ad_outlives_authorization` (an ad "
        "is scheduled past the window's end, and stops delivering then); `codes_reordered` (D12: the two codes of a "
        "Duet/Stitch came the other way round, and were put in TikTok's order)."
    )
    detail: str


class AuthorizationRead(BaseModel):
    id: uuid.UUID
    advertiser_id: str = Field(description="TikTok's advertiser (ad account) id.")
    item_id: str = Field(description="The TikTok post id (`tiktok_item_id` when creating an ad).")
    item_type: ItemType
    creator: Creator
    caption: str | None = Field(description="The caption as authorized; it cannot be edited afterwards (D4).")
    video_duration_seconds: float | None = Field(description="Null for carousels.")
    post_status: PostStatus = Field(
        description="The post's status as TikTok last reported it, in TikTok's own words (its `ITEM_STATUS_` and "
        "`STATUS_` prefixes folded away): `HESITATE_RECOMMEND` public; `ONLY_FRIEND_SEE` friends only; "
        "`ONLY_AUTHOR_SEE` private (D5: it becomes public while an ad runs, unless the ad only shows as an ad); "
        "`REVIEW_PENDING` in TikTok's review; `USER_DELETE` deleted by its creator; `AUDIT_DELETE` removed by "
        "TikTok's moderation (banned, D8); `ONLY_USER_PASS` removed after publishing; `UNKNOWN` a value this service "
        "does not know yet. A deleted, banned or removed post cannot be used by a new ad."
    )
    original_post: OriginalPost | None = Field(description="Set when the post is a Duet or Stitch.")
    primary_creator: Creator | None = Field(
        description="For a Duet/Stitch: the original video's creator, whose code is the `original_post_auth_code`."
    )
    secondary_creator: Creator | None = Field(
        description="For a Duet/Stitch: the creator who made it (the same as `creator`)."
    )
    auth_start_at: datetime | None = Field(
        description="When the post became usable: the code's window start, as TikTok reported it; for a Duet/Stitch "
        "the later of both codes' starts."
    )
    auth_end_at: datetime | None = Field(
        description="When the post stops being usable (D3): the code's window end, as TikTok reported it; for a "
        "Duet/Stitch the earlier of both codes' ends (D12)."
    )
    code_window: Window = Field(description="This code's own window, as TikTok reported it.")
    tiktok_auth_status: str | None = Field(description="TikTok's `ad_auth_status` when the code was applied.")
    status: AuthorizationStatus = Field(
        description="`expired` as soon as the window has ended (D3). `pending`: the code was being applied when "
        "TikTok's answer was lost (a timeout, an outage); the service settles it by reading TikTok, at the next "
        "apply of the post at the latest."
    )
    code_hint: str | None = Field(description="The code's last characters, to recognise it; never the code.")
    active_ads: int = Field(description="Ads linked to this authorization and not removed (D6).")
    unauthorized_at: datetime | None = Field(description="When it was un-authorized (`tt_video/unbind`, D16).")
    revoked_at: datetime | None = Field(
        description="When this service found that TikTok no longer has the post authorized to the ad account (the "
        "creator revoked the code): `status` is then `revoked`. Applying a new code revives it."
    )
    tiktok_caption: str | None = Field(
        description="D4: the caption as TikTok shows it now, when it differs from `caption` (the caption as "
        "authorized, which stays): an anomaly, recorded by reconciliation."
    )
    caption_changed_at: datetime | None = Field(description="When the caption change was first seen.")
    tiktok_checked_at: datetime | None = Field(
        description="When TikTok was last asked about this authorization (reconciliation, refresh)."
    )
    warnings: list[AuthorizationWarning]
    created_by_api_key_id: uuid.UUID | None = Field(description="The API key that applied it (none: a command).")
    updated_by_api_key_id: uuid.UUID | None = Field(description="The API key that last changed it.")
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_model(cls, authorization: Authorization, now: datetime, *, reordered: bool = False) -> AuthorizationRead:
        """What a caller sees of `authorization` at `now` (one `now` per request: see app.kit.clock). `reordered`:
        the answer to an apply whose two codes were given the other way round says so."""
        return cls.from_row(row_of(authorization), now, reordered=reordered)

    @classmethod
    def from_row(cls, row: Mapping[str, Any], now: datetime, *, reordered: bool = False) -> AuthorizationRead:
        """The same from a row of models.READ_COLUMNS (as repository.read_one fetches it, or `row_of` makes it)."""
        creator = Creator(
            identity_type=IdentityType(row["identity_type"]),
            identity_id=row["identity_id"],
            tiktok_name=row["tiktok_name"],
        )
        original = None
        primary = None
        if row["origin_kind"] and row["original_item_id"]:
            # The original post's own authorization, read with it (its columns prefixed `original_`), if any.
            has_original = row["original_authorization_id"] is not None
            original = OriginalPost(
                kind=OriginKind(row["origin_kind"]),
                item_id=row["original_item_id"],
                authorization_id=row["original_authorization_id"],
                code_window=(
                    Window(start_at=row["original_code_start_at"], end_at=row["original_code_end_at"])
                    if has_original
                    else None
                ),
            )
            if has_original:
                primary = Creator(
                    identity_type=IdentityType(row["original_identity_type"]),
                    identity_id=row["original_identity_id"],
                    tiktok_name=row["original_tiktok_name"],
                )
        status = status_of(row["state"], revoked_at=row["revoked_at"], auth_end_at=row["auth_end_at"], now=now)
        return cls(
            id=row["id"],
            advertiser_id=row["tiktok_advertiser_id"],
            item_id=row["item_id"],
            item_type=ItemType(row["item_type"]),
            creator=creator,
            primary_creator=primary,
            secondary_creator=creator if original is not None else None,
            caption=row["caption"],
            video_duration_seconds=row["duration_seconds"],
            post_status=PostStatus.parse(row["post_status"]),
            original_post=original,
            auth_start_at=row["auth_start_at"],
            auth_end_at=row["auth_end_at"],
            code_window=Window(start_at=row["code_start_at"], end_at=row["code_end_at"]),
            tiktok_auth_status=row["tiktok_auth_status"],
            status=status,
            code_hint=row["auth_code_hint"],
            active_ads=row["active_ads"],
            unauthorized_at=row["unauthorized_at"],
            revoked_at=row["revoked_at"],
            tiktok_caption=row["tiktok_caption"],
            caption_changed_at=row["caption_changed_at"],
            tiktok_checked_at=row["tiktok_checked_at"],
            warnings=[
                AuthorizationWarning(reason=WarningReason(r), detail=d) for r, d in warnings_of(row["post_status"])
            ]
            + (
                [
                    AuthorizationWarning(
                        reason=WarningReason.codes_reordered,
                        detail="The original post's code came in `auth_code`: the two were put in TikTok's order "
                        "(the Duet/Stitch's first, then the original's) and applied (D12).",
                    )
                ]
                if reordered
                else []
            ),
            created_by_api_key_id=row["created_by_api_key_id"],
            updated_by_api_key_id=row["updated_by_api_key_id"],
            created_at=row["created_at"],
            updated_at=row["updated_at"],
        )


def row_of(authorization: Authorization) -> dict[str, Any]:
    """An ORM authorization (its ad account and original loaded: repository.LOADED) as a row of READ_COLUMNS."""
    row = {name: getattr(authorization, name) for name in READ_COLUMNS}
    row["tiktok_advertiser_id"] = authorization.advertiser.tiktok_advertiser_id
    original = authorization.original_authorization if authorization.original_authorization_id else None
    for name in ORIGINAL_READ_COLUMNS:
        row["original_" + name] = getattr(original, name) if original is not None else None
    return row


class AuthorizationBatchCreate(RequestBody):
    items: list[AuthorizationCreate] = Field(
        min_length=1,
        max_length=20,
        description="1 to 20 codes (D11). The two codes of a Duet/Stitch may come as one item (the Duet/Stitch's "
        "in `auth_code`, the original's in `original_post_auth_code`) or as two items: they are paired (D12).",
    )


class BatchOutcome(StrEnum):
    created = "created"
    existing = "existing"
    rejected = "rejected"
    failed = "failed"


class AuthorizationBatchItem(BaseModel):
    index: int = Field(description="The item's position in the request, from 0.")
    outcome: BatchOutcome = Field(
        description="`created`: applied now; `existing`: already authorized (or the same code earlier in the "
        "batch); `rejected`: refused, see `problem` (sending it again will not help); `failed`: could not be done "
        "now, see `problem` (`retryable`)."
    )
    authorization: AuthorizationRead | None = Field(description="For `created` and `existing`.")
    problem: Problem | None = Field(
        description="For `rejected` and `failed`: the same problem the single-code call answers with."
    )
    paired_with: int | None = Field(
        description="The index of the other item of a Duet/Stitch given as two items: both report one authorization."
    )


class AuthorizationBatchRead(BaseModel):
    results: list[AuthorizationBatchItem] = Field(description="One per item, in the request's order.")


class AuthorizationPage(Page[AuthorizationRead]):
    """A page of authorizations; `next_cursor` fetches the next."""
