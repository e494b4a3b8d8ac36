"""The sandbox's demo codes: one per situation the service must handle, with stable post ids (`DEMO_CODES`); a
family of 10,000 valid codes for batches (`#SBX+bulk/<n>=`, built on demand by `find_demo_code`); and the brand's
own posts (`OWN_POSTS`), which need no code (D1) and are read with `identity/video/info`.

Codes follow the shape of real ones (a leading `#`, then base64-like text with `+`, `/` and `=`) so that every
demo exercises URL encoding; the part after `#SBX+` says what the code is for. Item ids and identity ids are
hard-coded so that they are the same on every run and in every test.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from functools import cache


class Behaviour(StrEnum):
    """What the sandbox does with a code, beyond describing its post."""

    valid = "valid"  # a post whose code is within its window
    expired_error = "expired_error"  # info answers 40002 auth_code_expired
    expired_status = "expired_status"  # info answers data with ad_auth_status EXPIRED, window in the past
    code_deleted = "code_deleted"  # info answers 40007 auth_code_not_found
    format_error = "format_error"  # info answers 40002 auth_code_format_error
    rate_limited = "rate_limited"  # always 40100
    flaky = "flaky"  # 50000 for the first 2 calls per endpoint and sandbox instance, then valid
    system_error = "system_error"  # always 50000
    slow = "slow"  # sleeps `slow_seconds`, then valid
    malformed = "malformed"  # HTTP 200 with a body that is not JSON
    http_503 = "http_503"  # HTTP 503 with an HTML body
    # authorize of a post already bound to that advertiser answers 40002 already_authorized (valid otherwise)
    refused_twice = "refused_twice"
    times_out = "times_out"  # authorize binds the post, then sleeps `slow_seconds` before answering


@dataclass(frozen=True, slots=True)
class Creator:
    identity_id: str
    tiktok_name: str
    identity_type: str = "AUTH_CODE"


@dataclass(frozen=True, slots=True)
class DemoPost:
    """A post as TikTok would describe it; statuses are TikTok's raw spellings."""

    item_id: str
    text: str
    creator: Creator
    item_type: str = "VIDEO"
    status: str = "HESITATE_RECOMMEND"
    duration: float | None = 21.5  # None for carousels
    duet_original_item_id: str | None = None
    stitch_original_item_id: str | None = None
    is_multi_duet_stitch: bool = False
    mentioned_item_ids: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class DemoCode:
    code: str
    description: str
    post: DemoPost | None = None  # None: the code answers an error before any post is known
    behaviour: Behaviour = Behaviour.valid
    window_days: int = 30  # the creator's chosen window; starts a day before the sandbox's clock
    iso_times: bool = False  # answer times as ISO "...T...Z" (one official example does) instead of "Y-m-d H:M:S"
    renews: str | None = None  # another demo code for the same post, which this later code replaces


# Item ids of posts other posts point at.
DUET_ORIGINAL_ITEM_ID = "7380112233445566701"
STITCH_ORIGINAL_ITEM_ID = "7380112233445566702"
UNRELATED_ORIGINAL_ITEM_ID = "7380112233445566703"
DUET_EXPIRED_ORIGINAL_ITEM_ID = "7380112233445566704"  # the original of a Duet, whose own code has expired
DUET_SHORT_ORIGINAL_ITEM_ID = "7380112233445566705"  # the original of a Duet, whose window ends before the Duet's
DUET_ITEM_ID = "7380112233445566711"
DUET_OF_EXPIRED_ORIGINAL_ITEM_ID = "7380112233445566717"
DUET_OF_SHORT_ORIGINAL_ITEM_ID = "7380112233445566718"
VIDEO_30D_ITEM_ID = "7380112233445566002"
VIDEO_60D_ITEM_ID = "7380112233445566004"
REFUSED_TWICE_ITEM_ID = "7380112233445566801"
TIMES_OUT_ITEM_ID = "7380112233445566802"

_ANA = Creator("7301000000000000001", "sbx.ana.creates")
_BRUNO = Creator("7301000000000000002", "sbx.bruno.films")
_CHIDI = Creator("7301000000000000003", "sbx.chidi.duets")
_DANA = Creator("7301000000000000004", "sbx.dana.stitches")


DEMO_CODES: tuple[DemoCode, ...] = (
    # Valid public videos, one per window the creator can choose (D3).
    DemoCode(
        "#SBX+video/7d=",
        "valid public video, 7-day window",
        DemoPost("7380112233445566001", "Morning routine in 30 seconds #fyp", _ANA, duration=30.2),
        window_days=7,
    ),
    DemoCode(
        "#SBX+video/30d=",
        "valid public video, 30-day window",
        DemoPost(VIDEO_30D_ITEM_ID, "Unboxing the new trail shoes", _ANA, duration=45.0),
        window_days=30,
    ),
    DemoCode(
        "#SBX+video/30d-renewed=",
        "a later code for the same post as #SBX+video/30d=, 60-day window (D2: the same authorization)",
        DemoPost(VIDEO_30D_ITEM_ID, "Unboxing the new trail shoes", _ANA, duration=45.0),
        window_days=60,
        renews="#SBX+video/30d=",
    ),
    DemoCode(
        "#SBX+video/30d-b=",
        "a second valid public video, 30-day window, another creator",
        DemoPost("7380112233445566003", "Three pasta sauces, one pan", _BRUNO, duration=58.7),
        window_days=30,
    ),
    DemoCode(
        "#SBX+video/60d=",
        "valid public video, 60-day window",
        DemoPost(VIDEO_60D_ITEM_ID, "Before and after: balcony garden", _BRUNO, duration=27.9),
        window_days=60,
    ),
    DemoCode(
        "#SBX+video/365d=",
        'valid public video, 365-day window; times in ISO form ("2025-05-20T11:40:50Z")',
        DemoPost("7380112233445566005", "A year of sunrises, one per day", _ANA, duration=120.0),
        window_days=365,
        iso_times=True,
    ),
    DemoCode(
        "#SBX+carousel/30d=",
        "valid photo carousel (item_type CAROUSEL, video_info null), 30-day window",
        DemoPost("7380112233445566006", "Five cafés worth the detour", _BRUNO, item_type="CAROUSEL", duration=None),
    ),
    # Visibility (D5).
    DemoCode(
        "#SBX+visibility/private=",
        "valid video that only its author can see (ONLY_AUTHOR_SEE)",
        DemoPost("7380112233445566007", "Draft: product teaser", _ANA, status="ONLY_AUTHOR_SEE", duration=15.0),
    ),
    DemoCode(
        "#SBX+visibility/friends-only=",
        "valid video visible to friends only (prefixed spelling STATUS_ONLY_FRIEND_SEE)",
        DemoPost(
            "7380112233445566008",
            "Family dinner recipe",
            _BRUNO,
            status="STATUS_ONLY_FRIEND_SEE",
            duration=33.3,
        ),
    ),
    # Expired windows (D3), two ways TikTok may report it.
    DemoCode(
        "#SBX+expired/error=",
        "expired code: info and authorize answer 40002 auth_code_expired",
        behaviour=Behaviour.expired_error,
    ),
    DemoCode(
        "#SBX+expired/status=",
        "expired code: info answers the post with ad_auth_status EXPIRED and an end in the past; "
        "authorize answers 40002 auth_code_expired",
        DemoPost("7380112233445566009", "Summer sale lookbook", _ANA, duration=40.0),
        behaviour=Behaviour.expired_status,
    ),
    # Codes TikTok does not accept.
    DemoCode(
        "#SBX+code/deleted=",
        "code deleted by its creator: 40007 auth_code_not_found (any code not listed here answers the same)",
        behaviour=Behaviour.code_deleted,
    ),
    DemoCode(
        "#SBX+code/format-error=",
        "code TikTok finds malformed: 40002 auth_code_format_error",
        behaviour=Behaviour.format_error,
    ),
    # Posts that can no longer run (D8).
    DemoCode(
        "#SBX+post/deleted=",
        "post deleted by its creator (USER_DELETE): info answers it, authorize answers 40002 video_deleted",
        DemoPost("7380112233445566010", "Old promo, since deleted", _BRUNO, status="USER_DELETE", duration=12.0),
    ),
    DemoCode(
        "#SBX+post/banned=",
        "post removed by moderation (AUDIT_DELETE): info answers it, authorize answers 40002 illegal_item_status_error",
        DemoPost("7380112233445566011", "Giveaway (removed)", _ANA, status="AUDIT_DELETE", duration=18.0),
    ),
    DemoCode(
        "#SBX+post/removed=",
        "post removed after publishing (ITEM_STATUS_ONLY_USER_PASS): info answers it, authorize answers "
        "40002 video_unavailable",
        DemoPost(
            "7380112233445566012",
            "Behind the scenes",
            _BRUNO,
            status="ITEM_STATUS_ONLY_USER_PASS",
            duration=25.0,
        ),
    ),
    # Duration policy (D9): TikTok itself accepts both.
    DemoCode(
        "#SBX+duration/900s=",
        "valid video of 900.0 s: over the service's default 600 s limit; TikTok accepts it",
        DemoPost("7380112233445566013", "Full workshop recording", _ANA, duration=900.0),
    ),
    DemoCode(
        "#SBX+duration/600s=",
        "valid video of exactly 600.0 s: at the limit, which is inclusive",
        DemoPost("7380112233445566014", "Ten-minute city walk", _BRUNO, duration=600.0),
    ),
    # Duets and Stitches (D12).
    DemoCode(
        "#SBX+duet/secondary=",
        "Duet (secondary creator's code); authorize needs original_post_auth_code #SBX+duet/original=",
        DemoPost(DUET_ITEM_ID, "Dueting the dance challenge", _CHIDI, duet_original_item_id=DUET_ORIGINAL_ITEM_ID),
    ),
    DemoCode(
        "#SBX+duet/original=",
        "the original video of the Duet (primary creator's code); valid on its own too",
        DemoPost(DUET_ORIGINAL_ITEM_ID, "The dance challenge", _ANA, duration=19.0),
    ),
    DemoCode(
        "#SBX+stitch/secondary=",
        "Stitch (secondary creator's code); authorize needs original_post_auth_code #SBX+stitch/original=",
        DemoPost(
            "7380112233445566712",
            "Stitching the cooking myth",
            _DANA,
            stitch_original_item_id=STITCH_ORIGINAL_ITEM_ID,
        ),
    ),
    DemoCode(
        "#SBX+stitch/original=",
        "the original video of the Stitch (primary creator's code); valid on its own too",
        DemoPost(STITCH_ORIGINAL_ITEM_ID, "Cooking myth #4", _BRUNO, duration=35.0),
    ),
    DemoCode(
        "#SBX+original/unrelated=",
        "a valid video that is the original of nothing: as original_post_auth_code it does not match",
        DemoPost(UNRELATED_ORIGINAL_ITEM_ID, "Unrelated clip", _BRUNO, duration=22.0),
    ),
    DemoCode(
        "#SBX+duet-expired-original/secondary=",
        "Duet (secondary creator's code), 30-day window, whose original's code has expired: authorize with "
        "original_post_auth_code #SBX+duet-expired-original/original= answers 40002 auth_code_expired",
        DemoPost(
            DUET_OF_EXPIRED_ORIGINAL_ITEM_ID,
            "Dueting last summer's hit",
            _CHIDI,
            duration=24.0,
            duet_original_item_id=DUET_EXPIRED_ORIGINAL_ITEM_ID,
        ),
    ),
    DemoCode(
        "#SBX+duet-expired-original/original=",
        "the original video of that Duet (primary creator's code), expired: info answers the post with "
        "ad_auth_status EXPIRED and an end in the past; authorize answers 40002 auth_code_expired, on its own or "
        "as original_post_auth_code",
        DemoPost(DUET_EXPIRED_ORIGINAL_ITEM_ID, "Last summer's hit", _ANA, duration=17.0),
        behaviour=Behaviour.expired_status,
    ),
    DemoCode(
        "#SBX+duet-short-original/secondary=",
        "Duet (secondary creator's code), 60-day window; authorize needs original_post_auth_code "
        "#SBX+duet-short-original/original=, whose window ends first",
        DemoPost(
            DUET_OF_SHORT_ORIGINAL_ITEM_ID,
            "Dueting the latte art",
            _DANA,
            duration=26.0,
            duet_original_item_id=DUET_SHORT_ORIGINAL_ITEM_ID,
        ),
        window_days=60,
    ),
    DemoCode(
        "#SBX+duet-short-original/original=",
        "the original video of that Duet (primary creator's code), 7-day window: authorizing the pair binds both "
        "posts, each with its own window",
        DemoPost(DUET_SHORT_ORIGINAL_ITEM_ID, "Latte art in one pour", _BRUNO, duration=21.0),
        window_days=7,
    ),
    DemoCode(
        "#SBX+duet/multi-level=",
        "Duet of a Duet (is_multi_duet_stitch): authorize answers 40002 multi_duet_stitch_refused",
        DemoPost(
            "7380112233445566713",
            "Duet of the duet",
            _DANA,
            duet_original_item_id=DUET_ITEM_ID,
            is_multi_duet_stitch=True,
        ),
    ),
    DemoCode(
        "#SBX+duet/carousel=",
        "carousel that is a Duet: authorize answers 40002 carousel_duet_not_supported",
        DemoPost(
            "7380112233445566714",
            "Photo duet",
            _CHIDI,
            item_type="CAROUSEL",
            duration=None,
            duet_original_item_id=DUET_ORIGINAL_ITEM_ID,
        ),
    ),
    DemoCode(
        "#SBX+mentions/one=",
        "valid video that mentions one other video (allowed)",
        DemoPost(
            "7380112233445566715",
            # The mentioned post's id in the caption: tt_video/list's keyword matches captions as well as ids.
            f"Reply to @sbx.ana.creates on video {VIDEO_30D_ITEM_ID}",
            _CHIDI,
            mentioned_item_ids=(VIDEO_30D_ITEM_ID,),
        ),
    ),
    DemoCode(
        "#SBX+mentions/two=",
        "video that mentions two other videos: authorize answers 40002 mention_multiple_videos",
        DemoPost(
            "7380112233445566716",
            "Reacting to two videos",
            _DANA,
            mentioned_item_ids=(VIDEO_30D_ITEM_ID, VIDEO_60D_ITEM_ID),
        ),
    ),
    # Where TikTok's authorize is not confirmed idempotent, and may apply a code yet not answer in time.
    DemoCode(
        "#SBX+authorize/refused-twice=",
        "valid public video; authorize of it to an ad account where the post is already bound answers 40002 "
        "already_authorized",
        DemoPost(REFUSED_TWICE_ITEM_ID, "Second take: rooftop yoga", _DANA, duration=31.0),
        behaviour=Behaviour.refused_twice,
    ),
    DemoCode(
        "#SBX+authorize/times-out=",
        "valid public video; info answers at once, authorize binds it and then waits slow_seconds before "
        "answering (the client times out although the code was applied)",
        DemoPost(TIMES_OUT_ITEM_ID, "Night market in one take", _CHIDI, duration=52.0),
        behaviour=Behaviour.times_out,
    ),
    # Faults, on info and authorize alike.
    DemoCode(
        "#SBX+fault/rate-limited=",
        "always answers 40100 (app QPS limit)",
        behaviour=Behaviour.rate_limited,
    ),
    DemoCode(
        "#SBX+fault/flaky=",
        "answers 50000 to the first 2 calls (per endpoint, per sandbox instance), then a valid video",
        DemoPost("7380112233445566901", "Flaky but fine", _ANA, duration=14.0),
        behaviour=Behaviour.flaky,
    ),
    DemoCode(
        "#SBX+fault/system-error=",
        "always answers 50000 (TikTok system error)",
        behaviour=Behaviour.system_error,
    ),
    DemoCode(
        "#SBX+fault/slow=",
        "waits slow_seconds (30 s by default) before answering a valid video",
        DemoPost("7380112233445566902", "Slow but fine", _BRUNO, duration=16.0),
        behaviour=Behaviour.slow,
    ),
    DemoCode(
        "#SBX+fault/malformed=",
        "HTTP 200 with a body that is not JSON",
        behaviour=Behaviour.malformed,
    ),
    DemoCode(
        "#SBX+fault/http-503=",
        "HTTP 503 with an HTML body",
        behaviour=Behaviour.http_503,
    ),
)

CODES_BY_TEXT: dict[str, DemoCode] = {demo.code: demo for demo in DEMO_CODES}  # the seeded codes only


# -- The bulk family: `#SBX+bulk/<n>=` for n from 0 to 9999, valid public videos for batches of codes.
#
# Only n's canonical decimal spelling is a code: `#SBX+bulk/7=` is n = 7, while `#SBX+bulk/007=`, `#SBX+bulk/+7=`
# and `#SBX+bulk/10000=` are codes TikTok never issued, answered like any unknown code (40007). Each DemoCode is
# built when first asked for and kept, not 10,000 at import.

BULK_CODE_FAMILY = "#SBX+bulk/<n>="  # how the README names the family
BULK_CODE_COUNT = 10_000
BULK_ITEM_ID_PREFIX = "73801122334500"  # + n in 5 digits: 7380112233450000000 to 7380112233450009999
BULK_WINDOW_DAYS = 30
BULK_CREATORS: tuple[Creator, ...] = (  # n % 5 picks the creator
    Creator("7301000000000000101", "sbx.batch.ava"),
    Creator("7301000000000000102", "sbx.batch.ben"),
    Creator("7301000000000000103", "sbx.batch.cleo"),
    Creator("7301000000000000104", "sbx.batch.dev"),
    Creator("7301000000000000105", "sbx.batch.eli"),
)
_BULK_CODE = re.compile(r"#SBX\+bulk/(0|[1-9][0-9]{0,3})=")


def bulk_code(n: int) -> str:
    """The bulk code for n, in its one spelling the sandbox knows."""
    if not 0 <= n < BULK_CODE_COUNT:
        raise ValueError(f"bulk codes run from 0 to {BULK_CODE_COUNT - 1}, not {n}")
    return f"#SBX+bulk/{n}="


def bulk_item_id(n: int) -> str:
    """The item id of bulk code n's post: stable, 19 digits, apart from every seeded post."""
    if not 0 <= n < BULK_CODE_COUNT:
        raise ValueError(f"bulk codes run from 0 to {BULK_CODE_COUNT - 1}, not {n}")
    return f"{BULK_ITEM_ID_PREFIX}{n:05d}"


@cache
def _bulk_demo_code(n: int) -> DemoCode:
    creator = BULK_CREATORS[n % len(BULK_CREATORS)]
    return DemoCode(
        bulk_code(n),
        f"bulk code {n}: valid public video, {BULK_WINDOW_DAYS}-day window",
        DemoPost(bulk_item_id(n), f"Batch clip number {n}", creator, duration=10.0 + n % 60),
        window_days=BULK_WINDOW_DAYS,
    )


def find_demo_code(code: str) -> DemoCode | None:
    """The code the sandbox knows by that text, seeded or bulk; None for a code it never issued. Every lookup of
    a code in the sandbox goes through here."""
    seeded = CODES_BY_TEXT.get(code)
    if seeded is not None:
        return seeded
    bulk = _BULK_CODE.fullmatch(code)
    return _bulk_demo_code(int(bulk.group(1))) if bulk is not None else None


def demo_code(code: str) -> DemoCode:
    """The known code with that text, seeded or bulk; KeyError for anything else (tests name codes that must
    exist)."""
    demo = find_demo_code(code)
    if demo is None:
        raise KeyError(code)
    return demo


# Reversed, so that a post described by two codes (a renewal) is its first code's: the same post either way.
_POSTS_BY_ITEM_ID: dict[str, DemoPost] = {
    demo.post.item_id: demo.post for demo in reversed(DEMO_CODES) if demo.post is not None
}
_BULK_ITEM_ID = re.compile(re.escape(BULK_ITEM_ID_PREFIX) + r"([0-9]{5})")


def find_post(item_id: str) -> DemoPost | None:
    """The creator's post with that item id, of a seeded or a bulk code; None for any other id (own posts
    included: they are `OWN_POSTS_BY_ITEM_ID`'s)."""
    seeded = _POSTS_BY_ITEM_ID.get(item_id)
    if seeded is not None:
        return seeded
    bulk = _BULK_ITEM_ID.fullmatch(item_id)
    if bulk is None or int(bulk.group(1)) >= BULK_CODE_COUNT:
        return None
    return _bulk_demo_code(int(bulk.group(1))).post


# -- The brand's own posts (D1): no code, read by identity and item id with `identity/video/info`.


@dataclass(frozen=True, slots=True)
class OwnIdentity:
    """One of the ad account's own identities. TikTok documents no name for it in `identity/video/info`."""

    identity_type: str  # TT_USER or BC_AUTH_TT
    identity_id: str
    identity_authorized_bc_id: str | None = None  # the Business Center's id, for BC_AUTH_TT


@dataclass(frozen=True, slots=True)
class OwnPost:
    """A post of an own identity as `identity/video/info` describes it; statuses are TikTok's raw spellings."""

    item_id: str
    description: str
    identity: OwnIdentity
    text: str
    item_type: str = "VIDEO"
    status: str = "ITEM_STATUS_HESITATE_RECOMMEND"
    duration: float | None = 21.5  # None for carousels


OWN_TT_USER_IDENTITY_ID = "7302000000000000001"
OWN_BC_IDENTITY_ID = "7302000000000000002"
OWN_BC_ID = "7303000000000000001"  # the Business Center through which OWN_BC_IDENTITY_ID is authorized

OWN_TT_USER = OwnIdentity("TT_USER", OWN_TT_USER_IDENTITY_ID)
OWN_BC_AUTH_TT = OwnIdentity("BC_AUTH_TT", OWN_BC_IDENTITY_ID, identity_authorized_bc_id=OWN_BC_ID)

OWN_VIDEO_ITEM_ID = "7380112233445567001"
OWN_VIDEO_B_ITEM_ID = "7380112233445567002"
OWN_PRIVATE_ITEM_ID = "7380112233445567003"
OWN_CAROUSEL_ITEM_ID = "7380112233445567004"
OWN_DELETED_ITEM_ID = "7380112233445567005"
OWN_BANNED_ITEM_ID = "7380112233445567006"
OWN_BC_VIDEO_ITEM_ID = "7380112233445567101"

OWN_POSTS: tuple[OwnPost, ...] = (
    OwnPost(
        OWN_VIDEO_ITEM_ID,
        "public video (ITEM_STATUS_HESITATE_RECOMMEND), 24.0 s",
        OWN_TT_USER,
        "Our spring collection, in one take",
        duration=24.0,
    ),
    OwnPost(
        OWN_VIDEO_B_ITEM_ID,
        "a second public video, 58.5 s",
        OWN_TT_USER,
        "How our trail shoes are made",
        duration=58.5,
    ),
    OwnPost(
        OWN_PRIVATE_ITEM_ID,
        "video that only the account can see (ITEM_STATUS_ONLY_AUTHOR_SEE)",
        OWN_TT_USER,
        "Draft: summer teaser",
        status="ITEM_STATUS_ONLY_AUTHOR_SEE",
        duration=15.0,
    ),
    OwnPost(
        OWN_CAROUSEL_ITEM_ID,
        "public photo carousel (item_type CAROUSEL, video_info null)",
        OWN_TT_USER,
        "Five looks for the weekend",
        item_type="CAROUSEL",
        duration=None,
    ),
    OwnPost(
        OWN_DELETED_ITEM_ID,
        "video the account deleted (ITEM_STATUS_USER_DELETE)",
        OWN_TT_USER,
        "Old promo, since deleted",
        status="ITEM_STATUS_USER_DELETE",
        duration=12.0,
    ),
    OwnPost(
        OWN_BANNED_ITEM_ID,
        "video removed by moderation (ITEM_STATUS_AUDIT_DELETE)",
        OWN_TT_USER,
        "Giveaway (removed)",
        status="ITEM_STATUS_AUDIT_DELETE",
        duration=18.0,
    ),
    OwnPost(
        OWN_BC_VIDEO_ITEM_ID,
        "public video of the account authorized through a Business Center, 33.0 s",
        OWN_BC_AUTH_TT,
        "Store opening, live from the floor",
        duration=33.0,
    ),
)

OWN_POSTS_BY_ITEM_ID: dict[str, OwnPost] = {post.item_id: post for post in OWN_POSTS}


def own_post(item_id: str) -> OwnPost:
    """The seeded own post with that item id; KeyError for anything else (tests name posts that must exist)."""
    return OWN_POSTS_BY_ITEM_ID[item_id]
