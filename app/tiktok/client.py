"""The adapter that speaks TikTok's Business API v1.3 for Spark Ads posts (tiktok-business-api.md).

Every call goes through `TikTokClient._call`: one envelope parser, one error classifier, one retry policy.
Transient faults are retried with exponential backoff and jitter (stamina) under a hard deadline; permanent
ones are raised at once. Nothing here decides policy (duration limits, windows, banned posts): callers do.

Secrets: auth codes and access tokens never reach a log line or an exception message. Logs carry the API
path (never the URL, whose query string holds the code), TikTok's code and request id, and the attempt.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

import httpx
import stamina
import structlog

from app.tiktok.errors import (
    SparkCodeProblem,
    TikTokAccessTokenInvalid,
    TikTokBadResponse,
    TikTokError,
    TikTokPermissionDenied,
    TikTokRateLimited,
    TikTokRequestRejected,
    TikTokTimeout,
    TikTokTransientError,
    TikTokUnavailable,
)
from app.tiktok.models import ItemType, PostInfo, PostPage, PostStatus

__all__ = ["TikTokClient", "classify_error"]

log = structlog.get_logger(__name__)

T = TypeVar("T")
JsonObject = dict[str, Any]

_PATH_INFO = "tt_video/info/"
_PATH_AUTHORIZE = "tt_video/authorize/"
_PATH_LIST = "tt_video/list/"
_PATH_UNBIND = "tt_video/unbind/"

# Return codes, tiktok-business-api.md section 5.
_RATE_LIMITED_CODES = frozenset({40100, 40133})
_UNAVAILABLE_CODES = frozenset({50000, 50002, 60001, -500})
_TOKEN_INVALID_CODES = frozenset({40102, 40104, 40105, 40106})
_PERMISSION_CODES = frozenset({40001, 40300, 40301})
_OBJECT_NOT_FOUND = 40007

# Ads Manager's numeric codes for problems with a code or its post [HC]. The API may never send these
# (unconfirmed); if it does, the code is more reliable than the wording of the message.
_PROBLEM_BY_CODE: Mapping[int, SparkCodeProblem] = {
    4002: SparkCodeProblem.post_deleted,
    4013: SparkCodeProblem.auth_code_invalid,
    4025: SparkCodeProblem.auth_code_expired,
    4027: SparkCodeProblem.story_video_not_supported,
    4042: SparkCodeProblem.carousel_duet_not_supported,
    900003: SparkCodeProblem.multi_level_duet_stitch,
    900012: SparkCodeProblem.post_banned,
    930002: SparkCodeProblem.mentions_multiple_videos,
}

# Ads Manager's error names, which TikTok's messages most likely carry. Checked before the plain-word
# keywords below because they are unambiguous.
_PROBLEM_BY_TOKEN: Sequence[tuple[str, SparkCodeProblem]] = (
    ("auth_code_format_error", SparkCodeProblem.auth_code_invalid),
    ("auth_code_expired", SparkCodeProblem.auth_code_expired),
    ("auth_code_not_found", SparkCodeProblem.auth_code_not_found),
    ("video_deleted", SparkCodeProblem.post_deleted),
    ("video_unavailable", SparkCodeProblem.post_deleted),
    ("illegal_item_status", SparkCodeProblem.post_banned),
    ("mention_multiple_videos", SparkCodeProblem.mentions_multiple_videos),
    ("multi_duet_stitch", SparkCodeProblem.multi_level_duet_stitch),
    ("carousel_duet", SparkCodeProblem.carousel_duet_not_supported),
    ("story_video", SparkCodeProblem.story_video_not_supported),
)

_PROBLEM_BY_WORD: Sequence[tuple[tuple[str, ...], SparkCodeProblem]] = (
    (("format",), SparkCodeProblem.auth_code_invalid),
    (("expired",), SparkCodeProblem.auth_code_expired),
    (("not found", "not exist"), SparkCodeProblem.auth_code_not_found),
    (("deleted",), SparkCodeProblem.post_deleted),
    (("banned",), SparkCodeProblem.post_banned),
)

# A message that is about another parameter ("advertiser_id: invalid format") must not be read as a verdict
# on the creator's code just because it contains one of the plain words above.
_OTHER_FIELD = re.compile(r"\b(advertiser_id|page_size|item_types|access[_ -]token)\b", re.IGNORECASE)
_MENTIONS_CODE = re.compile(r"auth[_ ]code", re.IGNORECASE)

_REDACTED = "[redacted]"


def _problem_from_message(message: str) -> SparkCodeProblem | None:
    lowered = message.lower()
    if "original_post_auth_code" in lowered:
        if "required" in lowered or "missing" in lowered:
            return SparkCodeProblem.original_post_code_required
        if "match" in lowered or "belong" in lowered:
            return SparkCodeProblem.original_post_code_mismatch
    for token, problem in _PROBLEM_BY_TOKEN:
        if token in lowered:
            return problem
    if _OTHER_FIELD.search(message) and not _MENTIONS_CODE.search(message):
        return None
    for words, problem in _PROBLEM_BY_WORD:
        if any(word in lowered for word in words):
            return problem
    return None


def classify_error(
    code: int,
    message: str,
    *,
    request_id: str | None,
    http_status: int | None,
    about_code: bool = True,
) -> TikTokError:
    """The taxonomy's error for TikTok's non-zero `code` (tiktok-business-api.md section 5).

    `about_code` says whether the request carried a creator's code (info, authorize); only then can a
    rejection name a `SparkCodeProblem`.
    """
    context: dict[str, Any] = {"code": code, "request_id": request_id, "http_status": http_status}
    if code in _RATE_LIMITED_CODES:
        return TikTokRateLimited(message, **context)
    if code in _UNAVAILABLE_CODES:
        return TikTokUnavailable(message, **context)
    if code in _TOKEN_INVALID_CODES:
        return TikTokAccessTokenInvalid(message, **context)
    if code in _PERMISSION_CODES:
        return TikTokPermissionDenied(message, **context)
    problem: SparkCodeProblem | None = None
    if about_code:
        problem = _PROBLEM_BY_CODE.get(code) or _problem_from_message(message)
        if problem is None and code == _OBJECT_NOT_FOUND:
            problem = SparkCodeProblem.auth_code_not_found
    return TikTokRequestRejected(message, problem=problem, **context)


class TikTokClient:
    """TikTok's Spark Ads post endpoints, with retries, a deadline and typed errors.

    One instance per process, sharing the process's `httpx.AsyncClient` (opened and closed by the lifespan).
    """

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        base_url: str,
        deadline_seconds: float = 15.0,
        request_timeout_seconds: float = 5.0,
        max_attempts: int = 4,
        wait_initial_seconds: float = 1.0,
        wait_max_seconds: float = 5.0,
        wait_jitter_seconds: float = 0.5,
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self._http = http
        self._base_url = base_url if base_url.endswith("/") else base_url + "/"
        self._deadline_seconds = deadline_seconds
        self._request_timeout_seconds = request_timeout_seconds
        self._max_attempts = max_attempts
        # 40100 means "retry next second" (section 6): by default the first wait is 1 to 1.5 s.
        self._wait_initial_seconds = wait_initial_seconds
        self._wait_max_seconds = wait_max_seconds
        self._wait_jitter_seconds = wait_jitter_seconds

    async def post_info(self, *, advertiser_id: str, access_token: str, auth_code: str) -> PostInfo:
        """The post a code authorizes, as TikTok describes it (`GET tt_video/info/`)."""
        return await self._call(
            "GET",
            _PATH_INFO,
            access_token=access_token,
            params={"advertiser_id": advertiser_id, "auth_code": auth_code},
            secrets=(auth_code,),
            about_code=True,
            parse=_parse_post,
        )

    async def authorize(
        self,
        *,
        advertiser_id: str,
        access_token: str,
        auth_code: str,
        original_post_auth_code: str | None = None,
    ) -> None:
        """Apply a code to an ad account (`POST tt_video/authorize/`); D12: a Duet/Stitch also needs the
        original post's code."""
        body: JsonObject = {"advertiser_id": advertiser_id, "auth_code": auth_code}
        secrets: tuple[str, ...] = (auth_code,)
        if original_post_auth_code is not None:
            body["original_post_auth_code"] = original_post_auth_code
            secrets += (original_post_auth_code,)
        await self._call(
            "POST",
            _PATH_AUTHORIZE,
            access_token=access_token,
            json_body=body,
            secrets=secrets,
            about_code=True,
            parse=_ignore_data,
        )

    async def list_posts(
        self,
        *,
        advertiser_id: str,
        access_token: str,
        item_types: Sequence[ItemType] | None = None,
        keyword: str | None = None,
        page: int = 1,
        page_size: int = 20,
    ) -> PostPage:
        """One page of the posts authorized to an ad account (`GET tt_video/list/`)."""
        params: dict[str, str] = {
            "advertiser_id": advertiser_id,
            "page": str(page),
            "page_size": str(page_size),
        }
        if item_types is not None:
            params["item_types"] = json.dumps([ItemType(t).value for t in item_types], separators=(",", ":"))
        if keyword is not None:
            params["keyword"] = keyword

        def parse(data: JsonObject) -> PostPage:
            return _parse_page(data, page=page, page_size=page_size)

        return await self._call(
            "GET",
            _PATH_LIST,
            access_token=access_token,
            params=params,
            secrets=(),
            about_code=False,
            parse=parse,
        )

    async def unbind(self, *, advertiser_id: str, access_token: str, item_id: str) -> None:
        """Un-authorize a post from an ad account (`POST tt_video/unbind/`, D16)."""
        await self._call(
            "POST",
            _PATH_UNBIND,
            access_token=access_token,
            json_body={"advertiser_id": advertiser_id, "item_id": item_id},
            secrets=(),
            about_code=False,
            parse=_ignore_data,
        )

    async def _call(
        self,
        method: str,
        path: str,
        *,
        access_token: str,
        params: Mapping[str, str] | None = None,
        json_body: JsonObject | None = None,
        secrets: tuple[str, ...],
        about_code: bool,
        parse: Callable[[JsonObject], T],
    ) -> T:
        secrets = (*secrets, access_token)
        attempt_number = 0

        async def once() -> T:
            data = await self._send(
                method,
                path,
                access_token=access_token,
                params=params,
                json_body=json_body,
                secrets=secrets,
                about_code=about_code,
            )
            # Parsed inside the attempt: data TikTok sent in the wrong shape is as retryable as a bad body.
            return parse(data)

        try:
            async with asyncio.timeout(self._deadline_seconds):
                async for attempt in stamina.retry_context(
                    on=TikTokTransientError,
                    attempts=self._max_attempts,
                    timeout=self._deadline_seconds,
                    wait_initial=self._wait_initial_seconds,
                    wait_max=self._wait_max_seconds,
                    wait_jitter=self._wait_jitter_seconds,
                ):
                    with attempt:
                        attempt_number = attempt.num
                        result = await _logged_attempt(once(), path=path, attempt=attempt_number)
                        log.debug("tiktok.request.succeeded", path=path, attempt=attempt_number)
                        return result
        except TimeoutError as exc:
            # stamina's own timeout only stops retrying after a failure; this one also cuts a hanging
            # request or a backoff sleep short, so the caller hears back within the deadline.
            error = TikTokTimeout(
                f"the deadline of {self._deadline_seconds:g}s ran out after {attempt_number} attempt(s)"
            )
            _log_failure(error, path=path, attempt=attempt_number)
            raise error from exc
        except TikTokError as error:
            _log_failure(error, path=path, attempt=attempt_number)
            raise
        raise AssertionError("unreachable: stamina either returns or raises")

    async def _send(
        self,
        method: str,
        path: str,
        *,
        access_token: str,
        params: Mapping[str, str] | None,
        json_body: JsonObject | None,
        secrets: tuple[str, ...],
        about_code: bool,
    ) -> JsonObject:
        """One HTTP request; returns the envelope's `data` or raises the taxonomy's error."""
        try:
            response = await self._http.request(
                method,
                f"{self._base_url}v1.3/{path}",
                params=params,
                json=json_body,
                headers={"Access-Token": access_token},
                timeout=self._request_timeout_seconds,
            )
        except httpx.TimeoutException as exc:
            # The exception's text and request can hold the URL, and so the code: only its type is kept.
            raise TikTokTimeout(f"no answer within {self._request_timeout_seconds:g}s ({type(exc).__name__})") from None
        except httpx.TransportError as exc:
            raise TikTokUnavailable(f"could not reach TikTok ({type(exc).__name__})") from None
        except httpx.DecodingError as exc:
            raise TikTokBadResponse(f"the body could not be decoded ({type(exc).__name__})") from None
        return _read_envelope(response, secrets=secrets, about_code=about_code)


async def _logged_attempt(call: Awaitable[T], *, path: str, attempt: int) -> T:
    try:
        return await call
    except TikTokTransientError as error:
        # Whether another attempt follows is stamina's decision (attempts and time left); it logs
        # `stamina.retry_scheduled` when one does.
        log.warning(
            "tiktok.request.attempt_failed",
            path=path,
            attempt=attempt,
            error=type(error).__name__,
            tiktok_code=error.code,
            http_status=error.http_status,
            request_id=error.request_id,
        )
        raise


def _log_failure(error: TikTokError, *, path: str, attempt: int) -> None:
    fields: dict[str, Any] = {
        "path": path,
        "attempt": attempt,
        "error": type(error).__name__,
        "tiktok_code": error.code,
        "http_status": error.http_status,
        "request_id": error.request_id,
    }
    if isinstance(error, TikTokRequestRejected):
        fields["problem"] = error.problem.value if error.problem else None
    if isinstance(error, TikTokTransientError):
        log.error("tiktok.request.failed", **fields)
    else:
        # A rejection is TikTok's answer about the request, not an outage: worth recording, not alarming.
        log.info("tiktok.request.rejected", **fields)


def _scrub(message: str, secrets: tuple[str, ...]) -> str:
    """TikTok may echo a code or token in its message; the message ends up in logs and API answers."""
    for secret in secrets:
        if len(secret) >= 4:
            message = message.replace(secret, _REDACTED)
    return message


def _read_envelope(response: httpx.Response, *, secrets: tuple[str, ...], about_code: bool) -> JsonObject:
    status = response.status_code
    envelope: JsonObject | None = None
    try:
        body = response.json()
    except (ValueError, UnicodeDecodeError):
        body = None
    if isinstance(body, dict) and isinstance(body.get("code"), int) and not isinstance(body["code"], bool):
        envelope = body

    if envelope is not None:
        code: int = envelope["code"]
        message = _scrub(str(envelope.get("message") or ""), secrets)
        raw_request_id = envelope.get("request_id")
        request_id = str(raw_request_id) if raw_request_id not in (None, "") else None
    else:
        code, message, request_id = 0, "", None

    if status >= 500:
        text = message or f"TikTok answered HTTP {status}"
        raise TikTokUnavailable(text, code=code if envelope else None, request_id=request_id, http_status=status)
    if status == 429:
        raise TikTokRateLimited(
            message or "TikTok answered HTTP 429",
            code=code if envelope else None,
            request_id=request_id,
            http_status=status,
        )
    if not 200 <= status < 300:
        if envelope is not None and code != 0:
            raise classify_error(code, message, request_id=request_id, http_status=status, about_code=about_code)
        # The request never reached the API logic (a missing trailing slash gives 404): nothing to classify.
        raise TikTokRequestRejected(f"TikTok answered HTTP {status}", http_status=status, request_id=request_id)

    if envelope is None:
        raise TikTokBadResponse("the body is not TikTok's envelope (JSON object with an int code)", http_status=status)
    if code != 0:
        raise classify_error(code, message, request_id=request_id, http_status=status, about_code=about_code)
    data = envelope.get("data")
    if not isinstance(data, dict):
        raise TikTokBadResponse("success without a data object", code=code, request_id=request_id, http_status=status)
    return data


def _ignore_data(_data: JsonObject) -> None:
    return None


def _parse_time(value: object, field: str) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, tz=UTC)
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


def _object(value: object) -> JsonObject:
    return value if isinstance(value, dict) else {}


def _text(value: object) -> str | None:
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, (str, int)):
        return str(value)
    return None


def _parse_post(data: JsonObject) -> PostInfo:
    item = _object(data.get("item_info"))
    user = _object(data.get("user_info"))
    auth = _object(data.get("auth_info"))
    raw_video = data.get("video_info")
    video = _object(raw_video)

    item_id = _text(item.get("item_id"))
    if not item_id:
        raise TikTokBadResponse("item_info.item_id is missing")

    raw_type = item.get("item_type")
    if raw_type is None:
        # The official list example has no item_type; carousels are the posts without video_info.
        item_type = ItemType.video if isinstance(raw_video, dict) else ItemType.carousel
    else:
        try:
            item_type = ItemType(str(raw_type).upper())
        except ValueError:
            raise TikTokBadResponse(f"item_info.item_type {raw_type!r} is not VIDEO or CAROUSEL") from None

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
        identity_id=_text(user.get("identity_id")),
        identity_type=_text(user.get("identity_type")),
        tiktok_name=_text(user.get("tiktok_name")),
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
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return default


def _parse_page(data: JsonObject, *, page: int, page_size: int) -> PostPage:
    entries = data.get("list")
    if entries is None:
        entries = []
    if not isinstance(entries, list):
        raise TikTokBadResponse("data.list is not a list")
    posts = [_parse_post(_object(entry)) for entry in entries]
    info = _object(data.get("page_info"))
    # page_info should always be there; if it is not, what was asked and what came back are the best guess.
    size = _int_field(info.get("page_size"), page_size)
    total_number = _int_field(info.get("total_number"), len(posts))
    total_page = _int_field(info.get("total_page"), math.ceil(total_number / size) if size > 0 else 0)
    return PostPage(
        posts=posts,
        page=_int_field(info.get("page"), page),
        page_size=size,
        total_number=total_number,
        total_page=total_page,
    )
