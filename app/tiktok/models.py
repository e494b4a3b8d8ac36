"""What the TikTok adapter returns: TikTok's post data, parsed and typed, nothing decided yet."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum


class ItemType(StrEnum):
    video = "VIDEO"
    carousel = "CAROUSEL"


class IdentityType(StrEnum):
    """Whose post a Spark Ad runs (D1): the ad account's own TikTok account, or a creator's content by code."""

    tt_user = "TT_USER"  # the brand's own TikTok account, linked to the ad account
    bc_auth_tt = "BC_AUTH_TT"  # the brand's own TikTok account, through a Business Center (needs its id)
    auth_code = "AUTH_CODE"  # a creator's post, authorized by the creator's code


class PostStatus(StrEnum):
    """A post's status, TikTok's prefixed spellings folded into one (docs/tiktok.md, "TikTok's post statuses")."""

    public = "HESITATE_RECOMMEND"
    friends_only = "ONLY_FRIEND_SEE"
    private = "ONLY_AUTHOR_SEE"
    review_pending = "REVIEW_PENDING"
    deleted = "USER_DELETE"  # deleted by the creator
    banned = "AUDIT_DELETE"  # removed by moderation
    removed = "ONLY_USER_PASS"  # removed after publishing
    unknown = "UNKNOWN"  # a value TikTok sends that this service does not know yet

    @classmethod
    def parse(cls, raw: str | None) -> PostStatus:
        if not raw:
            return cls.unknown
        value = raw.upper()
        for prefix in ("ITEM_STATUS_", "STATUS_"):
            if value.startswith(prefix):
                value = value[len(prefix) :]
        try:
            return cls(value)
        except ValueError:
            return cls.unknown


@dataclass(frozen=True, slots=True)
class PostInfo:
    """One post as TikTok describes it for a code (`tt_video/info`), an ad account (`tt_video/list`) or one of
    the ad account's identities (`identity/video/info`, which says nothing of the window but for `AUTH_CODE`)."""

    item_id: str
    item_type: ItemType
    caption: str | None
    status: PostStatus
    raw_status: str | None
    identity_id: str | None
    identity_type: str | None
    tiktok_name: str | None
    duration_seconds: float | None  # None for carousels
    ad_auth_status: str | None  # AUTHORIZED seen officially; the full set is unconfirmed
    auth_start_at: datetime | None  # UTC, timezone-aware
    auth_end_at: datetime | None  # UTC, timezone-aware
    duet_original_item_id: str | None = None
    stitch_original_item_id: str | None = None
    is_multi_duet_stitch: bool = False
    mentioned_item_ids: tuple[str, ...] = field(default_factory=tuple)

    @property
    def original_item_id(self) -> str | None:
        """The post this one is a Duet or Stitch of, if it is one."""
        return self.duet_original_item_id or self.stitch_original_item_id


@dataclass(frozen=True, slots=True)
class PostPage:
    """One page of `tt_video/list`."""

    posts: list[PostInfo]
    page: int
    page_size: int
    total_number: int
    total_page: int


@dataclass(frozen=True, slots=True)
class TikTokAd:
    """One ad of an ad account as `ad/get` describes it; nothing decided yet.

    A Spark Ad carries the post it runs (`tiktok_item_id`) and the identity it runs under (`AUTH_CODE` for a
    creator's code, `TT_USER` / `BC_AUTH_TT` for the brand's own account); other ads carry no `tiktok_item_id`.
    Ids are strings whatever JSON type TikTok sent them as. Statuses are kept as TikTok spelled them.
    """

    ad_id: str
    tiktok_item_id: str | None
    identity_type: str | None
    identity_id: str | None
    operation_status: str | None  # ENABLE / DISABLE / FROZEN...
    secondary_status: str | None  # AD_STATUS_DELIVERY_OK, AD_STATUS_DELETE...
    campaign_id: str | None
    adgroup_id: str | None
    created_at: datetime | None  # UTC, timezone-aware
    modified_at: datetime | None  # UTC, timezone-aware


@dataclass(frozen=True, slots=True)
class AdPage:
    """One page of `ad/get`."""

    ads: list[TikTokAd]
    page: int
    total_page: int
    total_number: int
