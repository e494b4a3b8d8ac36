"""A stateful stand-in for TikTok's Spark Ads post endpoints and `ad/get`, speaking its protocol (docs/tiktok.md).

It exists so that the service, its tests and a developer's laptop can go through every situation in
`seed.DEMO_CODES` (valid windows, expired codes, banned posts, Duets, rate limits, outages) without TikTok, and
send batches of valid codes from the bulk family `#SBX+bulk/<n>=` (`seed.find_demo_code` knows both).

`identity/video/info/` describes one post (`item_id`; the plural `item_ids` is not served) of one identity:
the brand's own posts of `seed.OWN_POSTS` (D1: `TT_USER`, and `BC_AUTH_TT` with its Business Center's id), and
for `AUTH_CODE` a creator's post bound to that advertiser, with its window in `auth_info`. Anything else (an
unknown item, another identity's, the right item with the wrong identity or Business Center) answers 40007
"The item does not exist or does not belong to this identity." (TikTok's code for it is unconfirmed; 40007 is
the likely one). Like TikTok's, the answer carries no name for the identity.
Where TikTok's behaviour is unconfirmed the sandbox picks one answer, the one the reference calls most likely:
problems with a code or post come back as 40002/40007 with Ads Manager's error name in the message. Where the
likely answer would spare the service a case TikTok may still present, a seeded code presents it: `authorize` is
idempotent here, except for `#SBX+authorize/refused-twice=`, which refuses a post already bound, and
`#SBX+authorize/times-out=`, which binds and then answers too late.

A Duet/Stitch's `original_post_auth_code` must be the code of its original post and usable itself: an expired
original's code is refused as `auth_code_expired`, in the same words as the Duet's own code would be, so the
answer does not say which of the two expired.

`ad/get/` answers an ad account's ads (made with the control endpoints below: the service never creates ads).
`fields` and `filtering` are JSON-encoded strings (not JSON: 40002). `fields` picks the fields of each entry,
from `AD_FIELDS` (all of them when absent); `filtering` takes `primary_status` (`STATUS_NOT_DELETE` by default,
`STATUS_DELETE`, `STATUS_ALL`), `ad_ids` / `campaign_ids` / `adgroup_ids` (up to 100 each; unknown keys are
ignored) and `modified_after` (`"YYYY-MM-DD HH:MM:SS"`, UTC; any other form is 40002); `page` from 1, `page_size`
from 1 to 1,000 (10 by default). Ids come as strings, times as `"YYYY-MM-DD HH:MM:SS"` UTC from the sandbox clock,
in whole seconds. Choices where TikTok is unconfirmed:
- `modified_after` gets the harsh reading: exclusive, and at whole seconds, so an ad modified in the very second
  `modified_after` names is not returned (a client that wants everything since T must ask for T minus a second).
- A deleted ad has `secondary_status` `AD_STATUS_DELETE` and `operation_status` `DISABLE`, and its modify time is
  the moment it was deleted; deleting it again changes nothing.
- Ads come in the order they were made; an empty list in a filter filters nothing.

The control endpoints change TikTok's state the way Ads Manager or a creator would, for tests (which may call the
same `Sandbox` methods on `app.state.sandbox`) and for a developer with curl. They are not TikTok's: they live
under `/sandbox/`, take a JSON body, answer plain JSON (no envelope), 404 for a post or an ad the sandbox does not
know, 400 for a bad body, and are not counted in `Sandbox.calls`. With the sandbox on port 8001:

    curl -X POST localhost:8001/sandbox/advertisers/<advertiser_id>/ads -d '{"tiktok_item_id": "<item_id>"}'
        an ad made in Ads Manager (optional "ad_id", "identity_type", "identity_id"; "tiktok_item_id": null for
        an ad that is not a Spark Ad); 201 with the ad as ad/get describes it (`Sandbox.create_ad`)
    curl -X POST localhost:8001/sandbox/advertisers/<advertiser_id>/ads/<ad_id>/delete
        the ad is deleted (`Sandbox.delete_ad`)
    curl -X POST localhost:8001/sandbox/posts/<item_id>/revoke
        the creator revoked the authorization: unbound everywhere, every code of it answers 40007
        auth_code_not_found (`Sandbox.revoke`)
    curl -X POST localhost:8001/sandbox/posts/<item_id>/status -d '{"status": "AUDIT_DELETE"}'
        the post was banned (or USER_DELETE, ONLY_AUTHOR_SEE...) (`Sandbox.set_post_status`)
    curl -X POST localhost:8001/sandbox/posts/<item_id>/extend -d '{"days": 30}'
        the creator extended the window (`Sandbox.extend`)
    curl -X POST localhost:8001/sandbox/posts/<item_id>/caption -d '{"text": "new caption"}'
        the caption changed on TikTok (`Sandbox.set_caption`)

A post's changes apply wherever it is described (info, list, identity/video/info, and what authorize refuses);
status and caption apply to own posts too, revoke and extend only to creators' posts. The seed stays untouched.
Windows are judged by the sandbox clock: `tt_video/list` answers `ad_auth_status` `EXPIRED` once a window's end
has passed.

State (which posts are bound to which advertiser, how often a flaky code has failed, when each call arrived, the
ads, what changed) lives in the app instance, so every test that builds its own app starts clean.
`Sandbox.calls` records the arrival time of every request, on any path but the control endpoints', and
`Sandbox.max_calls_in_any_second()` says how many TikTok would have seen in its busiest second. Codes and tokens
are never logged.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from dev.sandbox.seed import OWN_POSTS_BY_ITEM_ID, Behaviour, DemoCode, DemoPost, OwnPost, find_demo_code, find_post

__all__ = [
    "AD_FIELDS",
    "AD_GET_PATH",
    "API_PREFIX",
    "CONTROL_PREFIX",
    "FORBIDDEN_ADVERTISER_ID",
    "IDENTITY_VIDEO_INFO_PATH",
    "POST_NOT_UNDER_IDENTITY",
    "Sandbox",
    "SandboxConflict",
    "SandboxNotFound",
    "create_sandbox_app",
]

log = structlog.get_logger(__name__)

API_PREFIX = "/open_api/v1.3/tt_video"
IDENTITY_VIDEO_INFO_PATH = "/open_api/v1.3/identity/video/info/"
IDENTITY_TYPES = ("TT_USER", "BC_AUTH_TT", "AUTH_CODE")
POST_NOT_UNDER_IDENTITY = "The item does not exist or does not belong to this identity."
FORBIDDEN_ADVERTISER_ID = "4030000000000000000"  # answers 40300, advertiser does not exist
EXPIRED_TOKEN = "expired-token"
INVALID_TOKEN = "invalid-token"
FLAKY_FAILURES = 2
MAX_PAGE_SIZE = 50
_TIME_FORMAT = "%Y-%m-%d %H:%M:%S"

AD_GET_PATH = "/open_api/v1.3/ad/get/"
# Every field ad/get answers here, in this order when `fields` is not given.
AD_FIELDS = (
    "advertiser_id",
    "campaign_id",
    "adgroup_id",
    "ad_id",
    "ad_name",
    "tiktok_item_id",
    "identity_type",
    "identity_id",
    "operation_status",
    "secondary_status",
    "create_time",
    "modify_time",
)
AD_PRIMARY_STATUSES = ("STATUS_NOT_DELETE", "STATUS_DELETE", "STATUS_ALL")
AD_DEFAULT_PAGE_SIZE = 10
AD_MAX_PAGE_SIZE = 1000
AD_MAX_FILTER_IDS = 100
# Ids the sandbox makes up: 19 digits like TikTok's, in ranges of their own.
# Ads made "in Ads Manager" get ids from here on: apart from the ids the README and tests make up for ads they
# link themselves (1800...), as TikTok never gives two ads one id.
_FIRST_AD_ID = 1_850_000_000_000_000_000
_FIRST_CAMPAIGN_ID = 1_810_000_000_000_000_000
_FIRST_ADGROUP_ID = 1_820_000_000_000_000_000

CONTROL_PREFIX = "/sandbox"  # not TikTok's: what a test or a developer does to TikTok's state
MAX_EXTEND_DAYS = 3650
_STATUS_SHAPE = re.compile(r"[A-Z][A-Z0-9_]{0,63}")

JsonObject = dict[str, Any]


class _ApiError(Exception):
    """An answer with a non-zero code, sent as HTTP 200 like TikTok does."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class _RawAnswer(Exception):
    """An answer that is not the envelope at all (the fault codes that break the protocol)."""

    def __init__(self, response: Response) -> None:
        super().__init__("raw answer")
        self.response = response


def _invalid(message: str) -> _ApiError:
    return _ApiError(40002, message)


_REVOKED_MESSAGE = "auth_code_not_found: the creator revoked the authorization of this post."


@dataclass(slots=True)
class _Binding:
    code: str
    demo: DemoCode


class SandboxNotFound(LookupError):
    """A control call about a post or an ad the sandbox does not know (HTTP 404 on the control endpoints)."""


class SandboxConflict(Exception):
    """A control call that clashes with the sandbox's state, such as an ad id already taken (HTTP 409)."""


@dataclass(slots=True)
class _PostChange:
    """What happened to a post on TikTok since it was seeded. The seed's posts are frozen and shared by every
    sandbox: changes are kept here, per sandbox and per item id, and read wherever the post is described."""

    status: str | None = None  # set_post_status: the raw status, as TikTok would spell it
    caption: str | None = None  # set_caption
    extra_days: int = 0  # extend: added to the end of every window of the post
    revoked: bool = False  # revoke: every code of the post is gone, and so is every binding


@dataclass(slots=True)
class _Ad:
    """An ad in an ad account, made in Ads Manager (the service never creates ads)."""

    ad_id: str
    advertiser_id: str
    campaign_id: str
    adgroup_id: str
    tiktok_item_id: str | None  # None for an ad that is not a Spark Ad
    identity_type: str | None
    identity_id: str | None
    created_at: datetime  # whole seconds, UTC
    modified_at: datetime  # whole seconds, UTC
    deleted: bool = False

    def describe(self) -> JsonObject:
        """Every field ad/get can answer (AD_FIELDS); ids as strings, times as TikTok's UTC text."""
        return {
            "advertiser_id": self.advertiser_id,
            "campaign_id": self.campaign_id,
            "adgroup_id": self.adgroup_id,
            "ad_id": self.ad_id,
            "ad_name": f"Spark Ad {self.tiktok_item_id}" if self.tiktok_item_id else f"Ad {self.ad_id}",
            "tiktok_item_id": self.tiktok_item_id,
            "identity_type": self.identity_type,
            "identity_id": self.identity_id,
            "operation_status": "DISABLE" if self.deleted else "ENABLE",
            "secondary_status": "AD_STATUS_DELETE" if self.deleted else "AD_STATUS_DELIVERY_OK",
            "create_time": _format_time(self.created_at, iso=False),
            "modify_time": _format_time(self.modified_at, iso=False),
        }


@dataclass(frozen=True, slots=True)
class _AdFilter:
    """ad/get's `filtering`, read."""

    primary_status: str = "STATUS_NOT_DELETE"
    ad_ids: frozenset[str] | None = None
    campaign_ids: frozenset[str] | None = None
    adgroup_ids: frozenset[str] | None = None
    modified_after: datetime | None = None

    def matches(self, ad: _Ad) -> bool:
        if self.primary_status == "STATUS_NOT_DELETE" and ad.deleted:
            return False
        if self.primary_status == "STATUS_DELETE" and not ad.deleted:
            return False
        for wanted, value in (
            (self.ad_ids, ad.ad_id),
            (self.campaign_ids, ad.campaign_id),
            (self.adgroup_ids, ad.adgroup_id),
        ):
            if wanted is not None and value not in wanted:
                return False
        # The harsh reading: exclusive, at whole seconds (modify times are whole seconds here).
        return self.modified_after is None or ad.modified_at > self.modified_after


@dataclass(slots=True)
class Sandbox:
    """One sandbox's state and behaviour; reachable as `app.state.sandbox` for tests that want to look."""

    slow_seconds: float
    clock: Callable[[], datetime]
    created_at: datetime
    bindings: dict[str, dict[str, _Binding]] = field(default_factory=dict)
    flaky_calls: dict[str, int] = field(default_factory=dict)
    # (monotonic time, path) of every request as it arrived, whatever its path or answer (but the control
    # endpoints', which TikTok would never see).
    calls: list[tuple[float, str]] = field(default_factory=list)
    monotonic: Callable[[], float] = time.monotonic
    # What happened to posts since they were seeded, by item id (the control methods below).
    post_changes: dict[str, _PostChange] = field(default_factory=dict)
    # advertiser_id -> ad_id -> ad, in the order they were made.
    ads: dict[str, dict[str, _Ad]] = field(default_factory=dict)
    # advertiser_id -> (campaign_id, adgroup_id): one campaign with one ad group per ad account holds its ads.
    ad_groups: dict[str, tuple[str, str]] = field(default_factory=dict)
    ids_made: int = 0

    # -- the calls TikTok sees

    def record_call(self, path: str) -> None:
        self.calls.append((self.monotonic(), path))

    def max_calls_in_any_second(self) -> int:
        """The most calls that arrived within any interval [t, t + 1 s): what a per-second limit would see."""
        times = sorted(moment for moment, _ in self.calls)
        most = 0
        first = 0
        for last, moment in enumerate(times):
            while moment - times[first] >= 1.0:
                first += 1
            most = max(most, last - first + 1)
        return most

    # -- changes made outside the service: in Ads Manager, or by the creator on TikTok (the control endpoints)

    def create_ad(
        self,
        advertiser_id: str,
        tiktok_item_id: str | None,
        *,
        ad_id: str | None = None,
        identity_type: str | None = "AUTH_CODE",
        identity_id: str | None = None,
    ) -> str:
        """An ad made in Ads Manager, outside the service; returns its ad id (19 digits, unique in the sandbox).

        `tiktok_item_id` is a post the sandbox knows (a creator's post of a seeded or bulk code, or an own post),
        or None for an ad that is not a Spark Ad. `identity_id` defaults to the post's identity (its creator for
        a creator's post). The ad is in the ad account's one campaign and ad group, made with it, and is
        created and modified now by the sandbox clock. ValueError for an id that is not digits,
        SandboxNotFound for an unknown post, SandboxConflict for an ad id already taken.
        """
        advertiser_id = _control_id(advertiser_id, "advertiser_id")
        if tiktok_item_id is not None:
            tiktok_item_id = _control_id(tiktok_item_id, "tiktok_item_id")
            post = find_post(tiktok_item_id)
            own = OWN_POSTS_BY_ITEM_ID.get(tiktok_item_id)
            if post is None and own is None:
                raise SandboxNotFound(f"the sandbox knows no post {tiktok_item_id}")
            if identity_id is None and post is not None:
                identity_id = post.creator.identity_id
            elif identity_id is None and own is not None:
                identity_id = own.identity.identity_id
        if identity_type is not None and (not isinstance(identity_type, str) or not identity_type):
            raise ValueError("identity_type must be a non-empty string or null")
        if identity_id is not None:
            identity_id = _control_id(identity_id, "identity_id")
        if ad_id is None:
            ad_id = self._make_id(_FIRST_AD_ID)
            while self._find_ad(ad_id) is not None:
                ad_id = self._make_id(_FIRST_AD_ID)
        else:
            ad_id = _control_id(ad_id, "ad_id")
            if self._find_ad(ad_id) is not None:
                raise SandboxConflict(f"ad {ad_id} already exists")
        if advertiser_id not in self.ad_groups:
            self.ad_groups[advertiser_id] = (self._make_id(_FIRST_CAMPAIGN_ID), self._make_id(_FIRST_ADGROUP_ID))
        campaign_id, adgroup_id = self.ad_groups[advertiser_id]
        now = self._now()
        self.ads.setdefault(advertiser_id, {})[ad_id] = _Ad(
            ad_id=ad_id,
            advertiser_id=advertiser_id,
            campaign_id=campaign_id,
            adgroup_id=adgroup_id,
            tiktok_item_id=tiktok_item_id,
            identity_type=identity_type,
            identity_id=identity_id,
            created_at=now,
            modified_at=now,
        )
        return ad_id

    def delete_ad(self, advertiser_id: str, ad_id: str) -> None:
        """The ad is deleted in Ads Manager: ad/get answers it under STATUS_DELETE and STATUS_ALL only, modified
        now. Deleting it again changes nothing. SandboxNotFound for an ad not in that ad account."""
        ad = self.ads.get(advertiser_id, {}).get(ad_id)
        if ad is None:
            raise SandboxNotFound(f"advertiser {advertiser_id} has no ad {ad_id}")
        if not ad.deleted:
            ad.deleted = True
            ad.modified_at = self._now()

    def revoke(self, item_id: str) -> list[str]:
        """The creator revoked the authorization of a post: it is unbound from every ad account (returned, those
        it was bound to), `tt_video/list` and `identity/video/info` no longer find it, and every code of it
        answers 40007 auth_code_not_found, like a deleted code. Ads already made keep running [HC]: ad/get still
        answers them. SandboxNotFound for anything but a creator's post (own posts have no code)."""
        self._creator_post(item_id)
        self._change(item_id).revoked = True
        unbound = [advertiser_id for advertiser_id, bound in self.bindings.items() if bound.pop(item_id, None)]
        return sorted(unbound)

    def set_post_status(self, item_id: str, status: str) -> None:
        """The post's status changed on TikTok (`AUDIT_DELETE` banned, `USER_DELETE` deleted, `ONLY_AUTHOR_SEE`
        private...), answered as given by info, list and identity/video/info, for creators' and own posts alike;
        the post stays listed. ValueError for a status not in TikTok's shape (capitals, digits, `_`)."""
        self._known_post(item_id)
        if not isinstance(status, str) or not _STATUS_SHAPE.fullmatch(status):
            raise ValueError("status must be one of TikTok's status names, such as AUDIT_DELETE")
        self._change(item_id).status = status

    def extend(self, item_id: str, days: int) -> None:
        """The creator extended the authorization window: its end moves `days` later wherever the post is
        described (and a window that had ended may be open again). Extensions add up. ValueError for days not
        an integer from 1 to 3650; SandboxNotFound for anything but a creator's post."""
        self._creator_post(item_id)
        if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= MAX_EXTEND_DAYS:
            raise ValueError(f"days must be an integer from 1 to {MAX_EXTEND_DAYS}")
        self._change(item_id).extra_days += days

    def set_caption(self, item_id: str, text: str) -> None:
        """The post's caption changed on TikTok: info, list (and its keyword) and identity/video/info answer the
        new one, for creators' and own posts alike. ValueError for text that is not a string."""
        self._known_post(item_id)
        if not isinstance(text, str):
            raise ValueError("text must be a string")
        self._change(item_id).caption = text

    def _now(self) -> datetime:
        # Whole seconds, as TikTok's "YYYY-MM-DD HH:MM:SS" cannot say more.
        return self.clock().astimezone(UTC).replace(microsecond=0)

    def _make_id(self, first: int) -> str:
        self.ids_made += 1
        return str(first + self.ids_made)

    def _find_ad(self, ad_id: str) -> _Ad | None:
        for ads in self.ads.values():
            if ad_id in ads:
                return ads[ad_id]
        return None

    def _creator_post(self, item_id: str) -> DemoPost:
        post = find_post(item_id)
        if post is None:
            if item_id in OWN_POSTS_BY_ITEM_ID:
                raise SandboxNotFound(f"{item_id} is an own post: it has no code, no window, nothing to revoke")
            raise SandboxNotFound(f"the sandbox knows no creator's post {item_id}")
        return post

    def _known_post(self, item_id: str) -> DemoPost | OwnPost:
        post = find_post(item_id) or OWN_POSTS_BY_ITEM_ID.get(item_id)
        if post is None:
            raise SandboxNotFound(f"the sandbox knows no post {item_id}")
        return post

    def _change(self, item_id: str) -> _PostChange:
        return self.post_changes.setdefault(item_id, _PostChange())

    def _revoked(self, item_id: str) -> bool:
        change = self.post_changes.get(item_id)
        return change is not None and change.revoked

    def _status(self, post: DemoPost | OwnPost) -> str:
        change = self.post_changes.get(post.item_id)
        return change.status if change is not None and change.status is not None else post.status

    def _caption(self, post: DemoPost | OwnPost) -> str:
        change = self.post_changes.get(post.item_id)
        return change.caption if change is not None and change.caption is not None else post.text

    # -- endpoints

    async def info(self, request: Request) -> JsonObject:
        _check_token(request)
        # Checked, not used: info answers for a code whether or not it was applied (a pre-check).
        _advertiser_id(request.query_params.get("advertiser_id"))
        code = _required_text(request.query_params.get("auth_code"), "auth_code")
        demo = await self._resolve(code, endpoint="info")
        assert demo.post is not None
        return self._describe(demo, demo.post)

    async def authorize(self, request: Request) -> JsonObject:
        _check_token(request)
        body = await _json_body(request)
        advertiser_id = _advertiser_id(body.get("advertiser_id"))
        code = _required_text(body.get("auth_code"), "auth_code")
        original_code = body.get("original_post_auth_code")
        demo = await self._resolve(code, endpoint="authorize")
        post = demo.post
        assert post is not None
        self._refuse_unusable(demo, post)

        original: DemoCode | None = None
        original_item_id = post.duet_original_item_id or post.stitch_original_item_id
        if original_item_id is not None:
            if not isinstance(original_code, str) or not original_code:
                raise _invalid("original_post_auth_code is required for duet/stitch posts")
            original = find_demo_code(original_code)
            if original is None or original.post is None or original.post.item_id != original_item_id:
                raise _invalid("original_post_auth_code does not match the original post")
            # The original's code must be usable too; refused in the same words as the Duet's own code would be.
            self._refuse_unusable(original, original.post)

        bound = self.bindings.setdefault(advertiser_id, {})
        if demo.behaviour is Behaviour.refused_twice and post.item_id in bound:
            raise _invalid("already_authorized: the video has already been authorized to this advertiser.")
        # Applying a code again succeeds and is the same authorization (D2); a later code for the same post
        # replaces the earlier one.
        bound[post.item_id] = _Binding(code, demo)
        if original is not None and original.post is not None:
            bound.setdefault(original.post.item_id, _Binding(original.code, original))
        if demo.behaviour is Behaviour.times_out:
            # Bound before the wait: a client that gives up meanwhile has applied the code all the same.
            await asyncio.sleep(self.slow_seconds)
        return {}

    async def list_posts(self, request: Request) -> JsonObject:
        _check_token(request)
        query = request.query_params
        advertiser_id = _advertiser_id(query.get("advertiser_id"))
        page = _int_param(query.get("page"), "page", default=1)
        if page < 1:
            raise _invalid("page: Must be greater than or equal to 1.")
        page_size = _int_param(query.get("page_size"), "page_size", default=20)
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise _invalid(f"page_size: Must be between 1 and {MAX_PAGE_SIZE}.")
        item_types = _item_types(query.get("item_types"))
        keyword = query.get("keyword") or None

        matches = [
            binding
            for item_id, binding in self.bindings.get(advertiser_id, {}).items()
            if binding.demo.post is not None
            and binding.demo.post.item_type in item_types
            and (keyword is None or keyword == item_id or keyword.lower() in self._caption(binding.demo.post).lower())
        ]
        start = (page - 1) * page_size
        entries = []
        for binding in matches[start : start + page_size]:
            assert binding.demo.post is not None
            entry = self._describe(binding.demo, binding.demo.post)
            entry["item_info"]["auth_code"] = binding.code
            entries.append(entry)
        return {
            "page_info": {
                "page": page,
                "page_size": page_size,
                "total_number": len(matches),
                "total_page": math.ceil(len(matches) / page_size),
            },
            "list": entries,
        }

    async def unbind(self, request: Request) -> JsonObject:
        _check_token(request)
        body = await _json_body(request)
        advertiser_id = _advertiser_id(body.get("advertiser_id"))
        item_id = _required_text(body.get("item_id"), "item_id")
        bound = self.bindings.get(advertiser_id, {})
        if bound.pop(item_id, None) is None:
            raise _ApiError(40007, "The post does not exist or is not authorized to this advertiser.")
        return {}

    async def identity_video_info(self, request: Request) -> JsonObject:
        _check_token(request)
        query = request.query_params
        advertiser_id = _advertiser_id(query.get("advertiser_id"))
        identity_type = _required_text(query.get("identity_type"), "identity_type")
        if identity_type not in IDENTITY_TYPES:
            raise _invalid(f"identity_type: Must be one of {', '.join(IDENTITY_TYPES)}.")
        identity_id = _required_text(query.get("identity_id"), "identity_id")
        bc_id = query.get("identity_authorized_bc_id") or None
        if identity_type == "BC_AUTH_TT" and bc_id is None:
            raise _invalid("identity_authorized_bc_id: Required when identity_type is BC_AUTH_TT.")
        item_id = _required_text(query.get("item_id"), "item_id")

        if identity_type == "AUTH_CODE":
            binding = self.bindings.get(advertiser_id, {}).get(item_id)
            post = binding.demo.post if binding is not None else None
            if binding is not None and post is not None and post.creator.identity_id == identity_id:
                start, end = self._window(binding.demo)
                auth = {
                    "ad_auth_status": self._auth_status(binding.demo),
                    "auth_start_time": _format_time(start, iso=True),
                    "auth_end_time": _format_time(end, iso=True),
                    "invite_start_time": _format_time(start, iso=True),
                }
                detail = _video_detail(
                    post.item_id, post.item_type, self._caption(post), self._status(post), post.duration, auth
                )
                return {"video_detail": detail}
        else:
            own = OWN_POSTS_BY_ITEM_ID.get(item_id)
            if (
                own is not None
                and own.identity.identity_type == identity_type
                and own.identity.identity_id == identity_id
                # Asked of TT_USER, a Business Center id is not needed, and not looked at.
                and (identity_type != "BC_AUTH_TT" or own.identity.identity_authorized_bc_id == bc_id)
            ):
                detail = _video_detail(
                    own.item_id, own.item_type, self._caption(own), self._status(own), own.duration, None
                )
                return {"video_detail": detail}
        raise _ApiError(40007, POST_NOT_UNDER_IDENTITY)

    async def ad_get(self, request: Request) -> JsonObject:
        """`ad/get/`: an ad account's ads, filtered, one page of them, with only the fields asked for."""
        _check_token(request)
        query = request.query_params
        advertiser_id = _advertiser_id(query.get("advertiser_id"))
        fields = _ad_fields(query.get("fields"))
        filtering = _ad_filtering(query.get("filtering"))
        page = _int_param(query.get("page"), "page", default=1)
        if page < 1:
            raise _invalid("page: Must be greater than or equal to 1.")
        page_size = _int_param(query.get("page_size"), "page_size", default=AD_DEFAULT_PAGE_SIZE)
        if not 1 <= page_size <= AD_MAX_PAGE_SIZE:
            raise _invalid(f"page_size: Must be between 1 and {AD_MAX_PAGE_SIZE}.")
        matches = [ad for ad in self.ads.get(advertiser_id, {}).values() if filtering.matches(ad)]
        start = (page - 1) * page_size
        entries = []
        for ad in matches[start : start + page_size]:
            described = ad.describe()
            entries.append({name: described[name] for name in fields})
        return {
            "list": entries,
            "page_info": {
                "page": page,
                "page_size": page_size,
                "total_number": len(matches),
                "total_page": math.ceil(len(matches) / page_size),
            },
        }

    # -- codes and posts

    async def _resolve(self, code: str, *, endpoint: str) -> DemoCode:
        """The seeded code, or the error/fault it stands for."""
        demo = find_demo_code(code)
        if demo is None:
            raise _ApiError(40007, "auth_code_not_found: the authorization code does not exist.")
        match demo.behaviour:
            case Behaviour.expired_error:
                raise _invalid("auth_code_expired: the authorization code has expired.")
            case Behaviour.code_deleted:
                raise _ApiError(40007, "auth_code_not_found: the authorization code was deleted by its creator.")
            case Behaviour.format_error:
                raise _invalid("auth_code_format_error: the authorization code is not in a valid format.")
            case Behaviour.rate_limited:
                raise _ApiError(40100, "App 7300000000000000001 reaches the QPS limit 10.")
            case Behaviour.system_error:
                raise _ApiError(50000, "System error, please try again later.")
            case Behaviour.flaky:
                calls = self.flaky_calls.get(endpoint, 0) + 1
                self.flaky_calls[endpoint] = calls
                if calls <= FLAKY_FAILURES:
                    raise _ApiError(50000, "System error, please try again later.")
            case Behaviour.slow:
                await asyncio.sleep(self.slow_seconds)
            case Behaviour.malformed:
                # Looks like the envelope started and was cut off: a proxy or a truncated write.
                raise _RawAnswer(
                    Response('{"code": 0, "message": "OK", "data": {"item_info": ', media_type="application/json")
                )
            case Behaviour.http_503:
                raise _RawAnswer(
                    HTMLResponse(
                        "<html><head><title>503 Service Temporarily Unavailable</title></head>"
                        "<body><h1>503 Service Temporarily Unavailable</h1></body></html>",
                        status_code=503,
                    )
                )
            case Behaviour.valid | Behaviour.expired_status | Behaviour.refused_twice | Behaviour.times_out:
                pass  # refused_twice and times_out differ in authorize only
        if demo.post is None:
            raise AssertionError(f"seed error: {demo.description} has no post")
        if self._revoked(demo.post.item_id):
            raise _ApiError(40007, _REVOKED_MESSAGE)
        return demo

    def _refuse_unusable(self, demo: DemoCode, post: DemoPost) -> None:
        """What authorize refuses that info still describes (and a revoked original's code)."""
        if self._revoked(post.item_id):
            raise _ApiError(40007, _REVOKED_MESSAGE)
        if self._auth_status(demo) == "EXPIRED":
            raise _invalid("auth_code_expired: the authorization code has expired.")
        status = _plain_status(self._status(post))
        if status == "USER_DELETE":
            raise _invalid("video_deleted: the post was deleted by its creator.")
        if status == "AUDIT_DELETE":
            raise _invalid("illegal_item_status_error: the post was removed for violating community guidelines.")
        if status == "ONLY_USER_PASS":
            raise _invalid("video_unavailable: the post is no longer available.")
        is_duet_or_stitch = post.duet_original_item_id is not None or post.stitch_original_item_id is not None
        if post.item_type == "CAROUSEL" and is_duet_or_stitch:
            raise _invalid("carousel_duet_not_supported: a carousel Duet or Stitch cannot be used in an ad.")
        if post.is_multi_duet_stitch:
            raise _invalid("multi_duet_stitch_refused: a Duet or Stitch of a Duet or Stitch cannot be used.")
        if len(post.mentioned_item_ids) > 1:
            raise _invalid("mention_multiple_videos: the post mentions more than one video.")

    def _window(self, demo: DemoCode) -> tuple[datetime, datetime]:
        change = self.post_changes.get(demo.post.item_id) if demo.post is not None else None
        extra = timedelta(days=change.extra_days if change is not None else 0)
        start = self.created_at - timedelta(days=1)
        if demo.behaviour is Behaviour.expired_status:
            start = self.created_at - timedelta(days=demo.window_days + 1)
            return start, self.created_at - timedelta(days=1) + extra
        return start, start + timedelta(days=demo.window_days) + extra

    def _auth_status(self, demo: DemoCode) -> str:
        _, end = self._window(demo)
        return "EXPIRED" if self.clock() > end else "AUTHORIZED"

    def _describe(self, demo: DemoCode, post: DemoPost) -> JsonObject:
        start, end = self._window(demo)
        video = _video_info(post.item_id, post.duration) if post.item_type == "VIDEO" else None
        return {
            "item_info": {
                "item_id": post.item_id,
                "item_type": post.item_type,
                "text": self._caption(post),
                "status": self._status(post),
                "duet_original_item_id": post.duet_original_item_id,
                "stitch_original_item_id": post.stitch_original_item_id,
                "is_multi_duet_stitch": post.is_multi_duet_stitch,
                "mentioned_item_ids": list(post.mentioned_item_ids),
                "anchor_list": None,
            },
            "user_info": {
                "identity_id": post.creator.identity_id,
                "identity_type": post.creator.identity_type,
                "tiktok_name": post.creator.tiktok_name,
            },
            "video_info": video,
            "auth_info": {
                "ad_auth_status": self._auth_status(demo),
                "auth_start_time": _format_time(start, iso=demo.iso_times),
                "auth_end_time": _format_time(end, iso=demo.iso_times),
                "invite_start_time": _format_time(start, iso=demo.iso_times),
            },
        }

    def request_id(self) -> str:
        # TikTok's look: a UTC timestamp followed by random hex.
        return self.clock().astimezone(UTC).strftime("%Y%m%d%H%M%S") + secrets.token_hex(9).upper()


def _video_info(item_id: str, duration: float | None) -> JsonObject:
    return {
        "duration": duration,
        "width": 720,
        "height": 1280,
        "size": 13861358,
        "bit_rate": 8191081,
        # Signed CDN links that expire within the hour at TikTok; the service must not keep them.
        "poster_url": f"https://p16-sign.sandbox.invalid/obj/{item_id}.jpeg?x-expires=3600",
        "preview_url": f"https://v16-sign.sandbox.invalid/video/{item_id}.mp4?x-expires=3600",
        "signature": secrets.token_hex(8),
    }


def _video_detail(
    item_id: str, item_type: str, text: str, status: str, duration: float | None, auth: JsonObject | None
) -> JsonObject:
    """One post as `identity/video/info` describes it: the post's fields at the top level, no user_info, and
    auth_info only for AUTH_CODE identities."""
    carousel: JsonObject | None = None
    if item_type == "CAROUSEL":
        # Signed links too; the client reads none of it.
        carousel = {
            "image_info": [
                {
                    "image_url": f"https://p16-sign.sandbox.invalid/obj/{item_id}-{n}.jpeg?x-expires=3600",
                    "image_width": 1080,
                    "image_height": 1440,
                }
                for n in (1, 2, 3)
            ]
        }
    detail: JsonObject = {
        "item_id": item_id,
        "item_type": item_type,
        "status": status,
        "text": text,
        "video_info": _video_info(item_id, duration) if item_type == "VIDEO" else None,
        "carousel_info": carousel,
    }
    if auth is not None:
        detail["auth_info"] = auth
    return detail


# -- request parsing


def _check_token(request: Request) -> None:
    token = request.headers.get("Access-Token")
    if not token:
        raise _ApiError(40104, "Access token is empty. Please set the Access-Token header.")
    if token == EXPIRED_TOKEN:
        raise _ApiError(40102, "Access token has expired.")
    if token == INVALID_TOKEN:
        raise _ApiError(40105, "Access token is invalid.")


def _advertiser_id(value: object) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value:
        raise _invalid("advertiser_id: Missing data for required field.")
    if not value.isascii() or not value.isdigit():
        raise _invalid("advertiser_id: Not a valid advertiser id, it must contain digits only.")
    if value == FORBIDDEN_ADVERTISER_ID:
        raise _ApiError(40300, "Advertiser does not exist.")
    return value


def _required_text(value: object, name: str) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value:
        raise _invalid(f"{name}: Missing data for required field.")
    return value


def _int_param(value: str | None, name: str, *, default: int) -> int:
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise _invalid(f"{name}: Not a valid integer.") from None


def _item_types(value: str | None) -> frozenset[str]:
    if value is None or value == "":
        return frozenset({"VIDEO", "CAROUSEL"})
    try:
        parsed = json.loads(value)
    except ValueError:
        raise _invalid('item_types: Not a valid list, send a JSON-encoded list such as ["VIDEO"].') from None
    if not isinstance(parsed, list) or not all(item in ("VIDEO", "CAROUSEL") for item in parsed):
        raise _invalid("item_types: Must be a list of VIDEO or CAROUSEL.")
    return frozenset(parsed)


def _ad_fields(value: str | None) -> tuple[str, ...]:
    if value is None or value == "":
        return AD_FIELDS
    try:
        parsed = json.loads(value)
    except ValueError:
        raise _invalid('fields: Not a valid list, send a JSON-encoded list such as ["ad_id"].') from None
    if not isinstance(parsed, list) or not all(isinstance(name, str) for name in parsed):
        raise _invalid("fields: Must be a list of field names.")
    unknown = [name for name in parsed if name not in AD_FIELDS]
    if unknown:
        raise _invalid(f"fields: Unknown field(s) {', '.join(unknown)}.")
    return tuple(dict.fromkeys(parsed)) or AD_FIELDS


def _ad_filtering(value: str | None) -> _AdFilter:
    if value is None or value == "":
        return _AdFilter()
    try:
        parsed = json.loads(value)
    except ValueError:
        raise _invalid('filtering: Not a valid JSON object, such as {"primary_status": "STATUS_ALL"}.') from None
    if not isinstance(parsed, dict):
        raise _invalid("filtering: Must be a JSON object.")
    primary_status = parsed.get("primary_status", "STATUS_NOT_DELETE")
    if primary_status not in AD_PRIMARY_STATUSES:
        raise _invalid(f"filtering.primary_status: Must be one of {', '.join(AD_PRIMARY_STATUSES)}.")
    modified_after: datetime | None = None
    raw_after = parsed.get("modified_after")
    if raw_after is not None:
        try:
            if not isinstance(raw_after, str):
                raise ValueError(raw_after)
            modified_after = datetime.strptime(raw_after, _TIME_FORMAT).replace(tzinfo=UTC)
        except ValueError:
            raise _invalid("filtering.modified_after: Not a valid time, send YYYY-MM-DD HH:MM:SS (UTC).") from None
    return _AdFilter(
        primary_status=primary_status,
        ad_ids=_filter_ids(parsed.get("ad_ids"), "ad_ids"),
        campaign_ids=_filter_ids(parsed.get("campaign_ids"), "campaign_ids"),
        adgroup_ids=_filter_ids(parsed.get("adgroup_ids"), "adgroup_ids"),
        modified_after=modified_after,
    )


def _filter_ids(value: object, name: str) -> frozenset[str] | None:
    """A filter's list of ids (strings or numbers of digits, at most 100); None, like an empty list, filters
    nothing."""
    if value is None:
        return None
    if not isinstance(value, list):
        raise _invalid(f"filtering.{name}: Must be a list of ids.")
    if len(value) > AD_MAX_FILTER_IDS:
        raise _invalid(f"filtering.{name}: At most {AD_MAX_FILTER_IDS} ids.")
    ids = set()
    for item in value:
        text = str(item) if isinstance(item, int) and not isinstance(item, bool) else item
        if not isinstance(text, str) or not text.isascii() or not text.isdigit():
            raise _invalid(f"filtering.{name}: Must be a list of ids.")
        ids.add(text)
    return frozenset(ids) or None


async def _json_body(request: Request) -> JsonObject:
    try:
        body = await request.json()
    except ValueError:
        raise _invalid("The request body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise _invalid("The request body must be a JSON object.")
    return body


def _plain_status(raw: str) -> str:
    for prefix in ("ITEM_STATUS_", "STATUS_"):
        if raw.startswith(prefix):
            return raw[len(prefix) :]
    return raw


def _format_time(moment: datetime, *, iso: bool) -> str:
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ") if iso else moment.strftime(_TIME_FORMAT)


# -- the app

_Handler = Callable[[Request], Awaitable[JsonObject]]


def _endpoint(sandbox: Sandbox, handler: _Handler) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        request_id = sandbox.request_id()
        try:
            data = await handler(request)
        except _RawAnswer as raw:
            log.info("sandbox.request", path=request.url.path, http_status=raw.response.status_code)
            return raw.response
        except _ApiError as error:
            log.info("sandbox.request", path=request.url.path, tiktok_code=error.code, request_id=request_id)
            return JSONResponse({"code": error.code, "message": error.message, "request_id": request_id, "data": {}})
        log.info("sandbox.request", path=request.url.path, tiktok_code=0, request_id=request_id)
        return JSONResponse({"code": 0, "message": "OK", "request_id": request_id, "data": data})

    return endpoint


# -- the control endpoints: not TikTok's, plain JSON in and out

_ControlHandler = Callable[[Request], Awaitable[tuple[int, JsonObject]]]


def _control_id(value: object, name: str) -> str:
    """An id given to a control method or endpoint: digits, as a string or a JSON integer."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        value = str(value)
    if not isinstance(value, str) or not value.isascii() or not value.isdigit():
        raise ValueError(f"{name} must be an id made of digits")
    return value


async def _control_body(request: Request, *, allowed: frozenset[str], required: frozenset[str]) -> JsonObject:
    raw = await request.body()
    body: object = {}
    if raw.strip():
        try:
            body = json.loads(raw)
        except ValueError:
            raise ValueError("the body is not valid JSON") from None
    if not isinstance(body, dict):
        raise ValueError("the body must be a JSON object")
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise ValueError(f"unknown field(s): {', '.join(unknown)}; expected {', '.join(sorted(allowed))}")
    missing = sorted(required - set(body))
    if missing:
        raise ValueError(f"missing field(s): {', '.join(missing)}")
    return body


def _control(handler: _ControlHandler) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        try:
            status, body = await handler(request)
        except SandboxNotFound as error:
            status, body = 404, {"error": "not_found", "message": str(error)}
        except SandboxConflict as error:
            status, body = 409, {"error": "conflict", "message": str(error)}
        except ValueError as error:
            status, body = 400, {"error": "bad_request", "message": str(error)}
        log.info("sandbox.control", path=request.url.path, http_status=status)
        return JSONResponse(body, status_code=status)

    return endpoint


def _control_routes(sandbox: Sandbox) -> list[Route]:
    async def create_ad(request: Request) -> tuple[int, JsonObject]:
        advertiser_id = request.path_params["advertiser_id"]
        body = await _control_body(
            request,
            allowed=frozenset({"tiktok_item_id", "ad_id", "identity_type", "identity_id"}),
            required=frozenset({"tiktok_item_id"}),
        )
        ad_id = sandbox.create_ad(
            advertiser_id,
            body["tiktok_item_id"],
            ad_id=body.get("ad_id"),
            identity_type=body.get("identity_type", "AUTH_CODE"),
            identity_id=body.get("identity_id"),
        )
        return 201, sandbox.ads[advertiser_id][ad_id].describe()

    async def delete_ad(request: Request) -> tuple[int, JsonObject]:
        advertiser_id, ad_id = request.path_params["advertiser_id"], request.path_params["ad_id"]
        await _control_body(request, allowed=frozenset(), required=frozenset())
        sandbox.delete_ad(advertiser_id, ad_id)
        return 200, sandbox.ads[advertiser_id][ad_id].describe()

    async def revoke(request: Request) -> tuple[int, JsonObject]:
        item_id = request.path_params["item_id"]
        await _control_body(request, allowed=frozenset(), required=frozenset())
        unbound = sandbox.revoke(item_id)
        return 200, {"item_id": item_id, "revoked": True, "unbound_from_advertiser_ids": unbound}

    async def set_status(request: Request) -> tuple[int, JsonObject]:
        item_id = request.path_params["item_id"]
        body = await _control_body(request, allowed=frozenset({"status"}), required=frozenset({"status"}))
        sandbox.set_post_status(item_id, body["status"])
        return 200, {"item_id": item_id, "status": body["status"]}

    async def extend(request: Request) -> tuple[int, JsonObject]:
        item_id = request.path_params["item_id"]
        body = await _control_body(request, allowed=frozenset({"days"}), required=frozenset({"days"}))
        sandbox.extend(item_id, body["days"])
        return 200, {"item_id": item_id, "extended_by_days": sandbox.post_changes[item_id].extra_days}

    async def set_caption(request: Request) -> tuple[int, JsonObject]:
        item_id = request.path_params["item_id"]
        body = await _control_body(request, allowed=frozenset({"text"}), required=frozenset({"text"}))
        sandbox.set_caption(item_id, body["text"])
        return 200, {"item_id": item_id, "text": body["text"]}

    ads = f"{CONTROL_PREFIX}/advertisers/{{advertiser_id}}/ads"
    posts = f"{CONTROL_PREFIX}/posts/{{item_id}}"
    return [
        Route(ads, _control(create_ad), methods=["POST"]),
        Route(f"{ads}/{{ad_id}}/delete", _control(delete_ad), methods=["POST"]),
        Route(f"{posts}/revoke", _control(revoke), methods=["POST"]),
        Route(f"{posts}/status", _control(set_status), methods=["POST"]),
        Route(f"{posts}/extend", _control(extend), methods=["POST"]),
        Route(f"{posts}/caption", _control(set_caption), methods=["POST"]),
    ]


class _CountCalls:
    """Records every HTTP request as it arrives, before routing: a 404 is a call TikTok sees too. The control
    endpoints' are not: TikTok would never see them."""

    def __init__(self, app: ASGIApp, sandbox: Sandbox) -> None:
        self.app = app
        self.sandbox = sandbox

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not scope["path"].startswith(f"{CONTROL_PREFIX}/"):
            self.sandbox.record_call(scope["path"])
        await self.app(scope, receive, send)


class _Latency:
    """Answers every call TikTok would see after `seconds` more, as a TikTok that far away would (benchmarks)."""

    def __init__(self, app: ASGIApp, seconds: float) -> None:
        self.app = app
        self.seconds = seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not scope["path"].startswith(f"{CONTROL_PREFIX}/"):
            await asyncio.sleep(self.seconds)
        await self.app(scope, receive, send)


def create_sandbox_app(
    *, slow_seconds: float = 30.0, now: Callable[[], datetime] | None = None, latency_seconds: float = 0.0
) -> Starlette:
    """A fresh sandbox with the seeded codes; windows are relative to `now()` at creation. `latency_seconds` is
    added to every TikTok call (not to the control endpoints)."""
    clock = now or (lambda: datetime.now(UTC))
    # Whole seconds, as TikTok's "YYYY-MM-DD HH:MM:SS" cannot say more.
    created_at = clock().astimezone(UTC).replace(microsecond=0)
    sandbox = Sandbox(slow_seconds=slow_seconds, clock=clock, created_at=created_at)
    routes = [
        Route(f"{API_PREFIX}/info/", _endpoint(sandbox, sandbox.info), methods=["GET"]),
        Route(f"{API_PREFIX}/authorize/", _endpoint(sandbox, sandbox.authorize), methods=["POST"]),
        Route(f"{API_PREFIX}/list/", _endpoint(sandbox, sandbox.list_posts), methods=["GET"]),
        Route(f"{API_PREFIX}/unbind/", _endpoint(sandbox, sandbox.unbind), methods=["POST"]),
        Route(IDENTITY_VIDEO_INFO_PATH, _endpoint(sandbox, sandbox.identity_video_info), methods=["GET"]),
        Route(AD_GET_PATH, _endpoint(sandbox, sandbox.ad_get), methods=["GET"]),
        *_control_routes(sandbox),
    ]
    middleware = [Middleware(_CountCalls, sandbox=sandbox)]
    if latency_seconds > 0:
        middleware.append(Middleware(_Latency, seconds=latency_seconds))
    app = Starlette(routes=routes, middleware=middleware)
    # TikTok answers a path without its trailing slash with a plain 404, not a redirect.
    app.router.redirect_slashes = False
    app.state.sandbox = sandbox
    return app
