"""Reading TikTok's successful answers into the adapter's models (docs/tiktok.md, "The fields the service reads").

Only the shape of `data` is checked here; whether the post can be used is for callers to decide. What TikTok
sends in the wrong shape raises `TikTokBadResponse`, which the client retries like any bad body.

Every text value taken from an answer goes through `storable_text`: JSON may carry a NUL (`"\\u0000"`) or a lone
surrogate (`"\\ud800"`), which Python accepts in a `str` but Postgres refuses to store and UTF-8 cannot encode,
so one odd caption would otherwise fail a write or an answer long after TikTok was asked.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from app.tiktok.errors import TikTokBadResponse
from app.tiktok.models import AdPage, ItemType, PostInfo, PostPage, PostStatus, TikTokAd

T = TypeVar("T")

__all__ = [
    "JsonObject",
    "parse_ad",
    "parse_ad_page",
    "parse_identity_post",
    "parse_page",
    "parse_post",
    "storable_text",
]

JsonObject = dict[str, Any]

REPLACEMENT_CHARACTER = "\ufffd"
# NUL, and any surrogate code point: in a Python str a surrogate is always a lone one (json.loads joins an
# escaped pair into the character it encodes), and UTF-8 has no encoding for it.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def storable_text(value: str) -> str:
    """`value` with each NUL and lone surrogate replaced by U+FFFD; well-formed text comes back unchanged."""
    return _UNSTORABLE.sub(REPLACEMENT_CHARACTER, value)


def _text(value: object) -> str | None:
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, (str, int)):
        return storable_text(str(value))
    return None


def _object(value: object) -> JsonObject:
    return value if isinstance(value, dict) else {}


def _parse_time(value: object, field: str) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            return datetime.fromtimestamp(value, tz=UTC)
        except (OverflowError, OSError, ValueError):  # out of range, or not a number (NaN)
            raise TikTokBadResponse(f"{field} is not a time") from None
    if not isinstance(value, str):
        raise TikTokBadResponse(f"{field} is not a time")
    try:
        # Covers TikTok's usual "YYYY-MM-DD HH:MM:SS" (UTC, no zone) and ISO "2025-05-20T11:40:50Z".
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise TikTokBadResponse(f"{field} is not a time TikTok is known to send") from None
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def parse_post(data: JsonObject) -> PostInfo:
    """One post, from `tt_video/info` data or one entry of `tt_video/list`."""
    user = _object(data.get("user_info"))
    return _post(
        _object(data.get("item_info")),
        where="item_info",
        raw_video=data.get("video_info"),
        auth=_object(data.get("auth_info")),
        identity_id=_text(user.get("identity_id")),
        identity_type=_text(user.get("identity_type")),
        tiktok_name=_text(user.get("tiktok_name")),
    )


def parse_identity_post(data: JsonObject, *, item_id: str, identity_id: str, identity_type: str) -> PostInfo:
    """The post asked for, from `identity/video/info` data (`data.video_detail`).

    The detail has the post's fields at its top level and says nothing of whose post it is: the identity is the
    one asked about. `auth_info` comes only for `AUTH_CODE` identities (and may come empty): without it there is
    no window. A detail about another post than the one asked for is a bad response, not that post.
    """
    detail = data.get("video_detail")
    if not isinstance(detail, dict):
        raise TikTokBadResponse("data.video_detail is not an object")
    # TikTok documents no user_info here; should one come, the name is worth having, and nothing else of it is.
    user = _object(detail.get("user_info"))
    post = _post(
        detail,
        where="video_detail",
        raw_video=detail.get("video_info"),
        auth=_object(detail.get("auth_info")),
        identity_id=identity_id,
        identity_type=identity_type,
        tiktok_name=_text(user.get("tiktok_name")),
    )
    if post.item_id != item_id:
        raise TikTokBadResponse("video_detail.item_id is not the item_id asked for")
    return post


def _post(
    item: JsonObject,
    *,
    where: str,
    raw_video: object,
    auth: JsonObject,
    identity_id: str | None,
    identity_type: str | None,
    tiktok_name: str | None,
) -> PostInfo:
    """A PostInfo from the object holding the post's own fields (`item_info`, or `video_detail`)."""
    video = _object(raw_video)

    item_id = _text(item.get("item_id"))
    if not item_id:
        raise TikTokBadResponse(f"{where}.item_id is missing")

    raw_type = item.get("item_type")
    if raw_type is None:
        # The official list example has no item_type; carousels are the posts without video_info.
        item_type = ItemType.video if isinstance(raw_video, dict) else ItemType.carousel
    else:
        try:
            item_type = ItemType(str(raw_type).upper())
        except ValueError:
            raise TikTokBadResponse(f"{where}.item_type {raw_type!r} is not VIDEO or CAROUSEL") from None

    duration = video.get("duration")
    duration_seconds: float | None = None
    if isinstance(duration, (int, float)) and not isinstance(duration, bool) and math.isfinite(duration):
        duration_seconds = float(duration)

    raw_status = _text(item.get("status"))
    mentioned = item.get("mentioned_item_ids")
    mentioned_ids = tuple(text for text in (_text(m) for m in mentioned) if text) if isinstance(mentioned, list) else ()

    # poster_url / preview_url expire within the hour (section 2): deliberately not carried.
    return PostInfo(
        item_id=item_id,
        item_type=item_type,
        caption=_text(item.get("text")),
        status=PostStatus.parse(raw_status),
        raw_status=raw_status,
        identity_id=identity_id,
        identity_type=identity_type,
        tiktok_name=tiktok_name,
        duration_seconds=duration_seconds,
        ad_auth_status=_text(auth.get("ad_auth_status")),
        auth_start_at=_parse_time(auth.get("auth_start_time"), "auth_info.auth_start_time"),
        auth_end_at=_parse_time(auth.get("auth_end_time"), "auth_info.auth_end_time"),
        duet_original_item_id=_text(item.get("duet_original_item_id")) or None,
        stitch_original_item_id=_text(item.get("stitch_original_item_id")) or None,
        is_multi_duet_stitch=item.get("is_multi_duet_stitch") is True,
        mentioned_item_ids=mentioned_ids,
    )


def _int_field(value: object, default: int) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.isascii() and value.isdigit():  # "²".isdigit() is true too
        return int(value)
    return default


def parse_page(data: JsonObject, *, page: int, page_size: int) -> PostPage:
    """One page of `tt_video/list`; `page` and `page_size` are what was asked, the fallback for page_info."""
    posts, info = _paged(data, parse_post, page=page, page_size=page_size)
    return PostPage(
        posts=posts,
        page=info.page,
        page_size=info.page_size,
        total_number=info.total_number,
        total_page=info.total_page,
    )


@dataclass(frozen=True, slots=True)
class _PageInfo:
    page: int
    page_size: int
    total_number: int
    total_page: int


def _paged(
    data: JsonObject, parse_entry: Callable[[JsonObject], T], *, page: int, page_size: int
) -> tuple[list[T], _PageInfo]:
    """`data.list`, each entry parsed (an entry that is not an object is a bad response), and `data.page_info`.
    page_info should always be there; if it is not, what was asked and what came back are the best guess."""
    entries = data.get("list")
    if entries is None:
        entries = []
    if not isinstance(entries, list):
        raise TikTokBadResponse("data.list is not a list")
    items = [parse_entry(_object(entry)) for entry in entries]
    info = _object(data.get("page_info"))
    size = _int_field(info.get("page_size"), page_size)
    total_number = _int_field(info.get("total_number"), len(items))
    total_page = _int_field(info.get("total_page"), math.ceil(total_number / size) if size > 0 else 0)
    return items, _PageInfo(_int_field(info.get("page"), page), size, total_number, total_page)


def _id(value: object, field: str) -> str | None:
    """An id TikTok sent as a string or a JSON integer, as a string; None when absent, null or empty.

    Anything else (a float, which cannot hold 19 digits exactly; a boolean, an object) is a bad response: an id
    quietly dropped would make an ad's post or identity look absent.
    """
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, str):
        text = storable_text(value.strip())
        return text or None
    raise TikTokBadResponse(f"{field} is not an id")


def parse_ad(data: JsonObject) -> TikTokAd:
    """One entry of `ad/get`'s `data.list`; `ad_id` is required, every other field may be absent (not asked for,
    or not there for that kind of ad)."""
    ad_id = _id(data.get("ad_id"), "ad_id")
    if ad_id is None:
        raise TikTokBadResponse("ad_id is missing")
    return TikTokAd(
        ad_id=ad_id,
        tiktok_item_id=_id(data.get("tiktok_item_id"), "tiktok_item_id"),
        identity_type=_text(data.get("identity_type")) or None,
        identity_id=_id(data.get("identity_id"), "identity_id"),
        operation_status=_text(data.get("operation_status")) or None,
        secondary_status=_text(data.get("secondary_status")) or None,
        campaign_id=_id(data.get("campaign_id"), "campaign_id"),
        adgroup_id=_id(data.get("adgroup_id"), "adgroup_id"),
        created_at=_parse_time(data.get("create_time"), "create_time"),
        modified_at=_parse_time(data.get("modify_time"), "modify_time"),
    )


def parse_ad_page(data: JsonObject, *, page: int, page_size: int) -> AdPage:
    """One page of `ad/get`; `page` and `page_size` are what was asked, the fallback for page_info."""
    ads, info = _paged(data, parse_ad, page=page, page_size=page_size)
    return AdPage(ads=ads, page=info.page, total_page=info.total_page, total_number=info.total_number)
