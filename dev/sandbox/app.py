"""A stateful stand-in for TikTok's Spark Ads post endpoints, speaking its protocol (docs/tiktok.md).

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

State (which posts are bound to which advertiser, how often a flaky code has failed, when each call arrived) lives
in the app instance, so every test that builds its own app starts clean. `Sandbox.calls` records the arrival time
of every request, on any path, and `Sandbox.max_calls_in_any_second()` says how many TikTok would have seen in its
busiest second. Codes and tokens are never logged.
"""

from __future__ import annotations

import asyncio
import json
import math
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

from dev.sandbox.seed import OWN_POSTS_BY_ITEM_ID, Behaviour, DemoCode, DemoPost, find_demo_code

__all__ = [
    "API_PREFIX",
    "FORBIDDEN_ADVERTISER_ID",
    "IDENTITY_VIDEO_INFO_PATH",
    "POST_NOT_UNDER_IDENTITY",
    "Sandbox",
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


@dataclass(slots=True)
class _Binding:
    code: str
    demo: DemoCode


@dataclass(slots=True)
class Sandbox:
    """One sandbox's state and behaviour; reachable as `app.state.sandbox` for tests that want to look."""

    slow_seconds: float
    clock: Callable[[], datetime]
    created_at: datetime
    bindings: dict[str, dict[str, _Binding]] = field(default_factory=dict)
    flaky_calls: dict[str, int] = field(default_factory=dict)
    # (monotonic time, path) of every request as it arrived, whatever its path or answer.
    calls: list[tuple[float, str]] = field(default_factory=list)
    monotonic: Callable[[], float] = time.monotonic

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
            and (keyword is None or keyword == item_id or keyword.lower() in binding.demo.post.text.lower())
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
                detail = _video_detail(post.item_id, post.item_type, post.text, post.status, post.duration, auth)
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
                detail = _video_detail(own.item_id, own.item_type, own.text, own.status, own.duration, None)
                return {"video_detail": detail}
        raise _ApiError(40007, POST_NOT_UNDER_IDENTITY)

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
        return demo

    def _refuse_unusable(self, demo: DemoCode, post: DemoPost) -> None:
        """What authorize refuses that info still describes."""
        if self._auth_status(demo) == "EXPIRED":
            raise _invalid("auth_code_expired: the authorization code has expired.")
        status = _plain_status(post.status)
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
        start = self.created_at - timedelta(days=1)
        if demo.behaviour is Behaviour.expired_status:
            start = self.created_at - timedelta(days=demo.window_days + 1)
            return start, self.created_at - timedelta(days=1)
        return start, start + timedelta(days=demo.window_days)

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
                "text": post.text,
                "status": post.status,
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


class _CountCalls:
    """Records every HTTP request as it arrives, before routing: a 404 is a call TikTok sees too."""

    def __init__(self, app: ASGIApp, sandbox: Sandbox) -> None:
        self.app = app
        self.sandbox = sandbox

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            self.sandbox.record_call(scope["path"])
        await self.app(scope, receive, send)


def create_sandbox_app(*, slow_seconds: float = 30.0, now: Callable[[], datetime] | None = None) -> Starlette:
    """A fresh sandbox with the seeded codes; windows are relative to `now()` at creation."""
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
    ]
    app = Starlette(routes=routes, middleware=[Middleware(_CountCalls, sandbox=sandbox)])
    # TikTok answers a path without its trailing slash with a plain 404, not a redirect.
    app.router.redirect_slashes = False
    app.state.sandbox = sandbox
    return app
