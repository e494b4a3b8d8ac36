"""Reading TikTok's failures into the adapter's error taxonomy (docs/tiktok.md, "How TikTok's failures are classified").

TikTok answers most errors with HTTP 200 and a non-zero `code` in its envelope, so a failure is found by reading
the body, not only the status. Which code and message the API uses for a refused creator's code or post is
unconfirmed: a `TikTokRefusal` is read from Ads Manager's numeric codes first (the more reliable, if the API
ever sends them), then from Ads Manager's error names in the message, then from plain words. So is the code of
`identity/video/info` for a post that is not the identity's: 40007 first (the likely one), then the message.

TikTok may echo a code or a token in its message, and the message reaches logs and API answers: it is scrubbed
of the request's secrets here, before any error carries it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from enum import Enum
from typing import Any

import httpx

from app.tiktok.errors import (
    TikTokAccessTokenInvalid,
    TikTokBadResponse,
    TikTokError,
    TikTokPermissionDenied,
    TikTokRateLimited,
    TikTokRefusal,
    TikTokRequestRejected,
    TikTokUnavailable,
)
from app.tiktok.parse import JsonObject, storable_text

__all__ = ["About", "classify_error", "read_envelope"]


class About(Enum):
    """What a request asks TikTok about, and so which `TikTokRefusal` a rejection of it may name."""

    auth_code = "auth_code"  # tt_video/info and authorize: a creator's code and its post
    own_post = "own_post"  # identity/video/info: a post under one of the ad account's identities
    nothing_refusable = "nothing_refusable"  # tt_video/list and unbind: a rejection names no refusal


# Return codes, docs/tiktok.md, "How TikTok's failures are classified".
_RATE_LIMITED_CODES = frozenset({40100, 40133})
_UNAVAILABLE_CODES = frozenset({50000, 50002, 60001, -500})
_TOKEN_INVALID_CODES = frozenset({40102, 40104, 40105, 40106})
_PERMISSION_CODES = frozenset({40001, 40300, 40301})
_OBJECT_NOT_FOUND = 40007

# Ads Manager's numeric codes for problems with a code or its post [HC]. The API may never send these
# (unconfirmed); if it does, the code is more reliable than the wording of the message. 4002 stands for both
# video_unavailable and video_deleted; Ads Manager lists video_unavailable first.
_REFUSAL_BY_CODE: Mapping[int, TikTokRefusal] = {
    4002: TikTokRefusal.video_unavailable,
    4013: TikTokRefusal.auth_code_format_error,
    4025: TikTokRefusal.auth_code_expired,
    4027: TikTokRefusal.story_video_not_supported,
    4042: TikTokRefusal.carousel_duet_not_supported,
    900003: TikTokRefusal.multi_duet_stitch_refused,
    900012: TikTokRefusal.illegal_item_status_error,
    930002: TikTokRefusal.mention_multiple_videos,
}

# Ads Manager's error names (or their stems), which TikTok's messages most likely carry. Checked before the
# plain words below because they are unambiguous.
_REFUSAL_BY_TOKEN: Sequence[tuple[str, TikTokRefusal]] = (
    ("auth_code_format_error", TikTokRefusal.auth_code_format_error),
    ("auth_code_expired", TikTokRefusal.auth_code_expired),
    ("auth_code_not_found", TikTokRefusal.auth_code_not_found),
    ("video_deleted", TikTokRefusal.video_deleted),
    ("video_unavailable", TikTokRefusal.video_unavailable),
    ("illegal_item_status", TikTokRefusal.illegal_item_status_error),
    ("mention_multiple_videos", TikTokRefusal.mention_multiple_videos),
    ("multi_duet_stitch", TikTokRefusal.multi_duet_stitch_refused),
    ("carousel_duet", TikTokRefusal.carousel_duet_not_supported),
    ("story_video", TikTokRefusal.story_video_not_supported),
)

# "already authorized", "already been authorised", "already bound", "already_authorized": TikTok refusing to
# apply a code to a post it has already bound to this ad account (unconfirmed that it does).
_ALREADY_AUTHORIZED = re.compile(r"\balready[ _](?:been[ _])?(?:authori[sz]ed|bound)\b", re.IGNORECASE)

_REFUSAL_BY_WORD: Sequence[tuple[tuple[str, ...], TikTokRefusal]] = (
    (("format",), TikTokRefusal.auth_code_format_error),
    (("expired",), TikTokRefusal.auth_code_expired),
    (("not found", "not exist"), TikTokRefusal.auth_code_not_found),
    (("deleted",), TikTokRefusal.video_deleted),
    (("banned",), TikTokRefusal.illegal_item_status_error),
)

# A message that is about another parameter ("advertiser_id: invalid format") must not be read as a verdict
# on the creator's code just because it contains one of the plain words above.
_OTHER_FIELD = re.compile(r"\b(advertiser_id|page_size|item_types|access[_ -]token)\b", re.IGNORECASE)
_MENTIONS_CODE = re.compile(r"auth[_ ]code", re.IGNORECASE)

# identity/video/info: "The item does not exist or does not belong to this identity.", "Video not found",
# "post_not_found_for_identity"... A message must name the post and say it is missing or not the identity's; one
# about the identity alone ("identity_id: ...") names no refusal. Only read for that endpoint.
_NAMES_THE_POST = re.compile(r"\b(?:posts?|items?|item_ids?|videos?)\b", re.IGNORECASE)
_NOT_THERE = re.compile(
    r"\b(?:not[ _](?:exist|found|belong)|(?:doesn't|does not|don't|do not) (?:exist|belong)|no longer exists?)",
    re.IGNORECASE,
)

_REDACTED = "[redacted]"


def _refusal_from_message(message: str) -> TikTokRefusal | None:
    lowered = message.lower()
    if "original_post_auth_code" in lowered:
        if "required" in lowered or "missing" in lowered:
            return TikTokRefusal.original_post_auth_code_required
        if "match" in lowered or "belong" in lowered:
            return TikTokRefusal.original_post_auth_code_mismatch
    for token, refusal in _REFUSAL_BY_TOKEN:
        if token in lowered:
            return refusal
    # Before the other-field guard: such a message may well name the advertiser it is bound to.
    if _ALREADY_AUTHORIZED.search(message):
        return TikTokRefusal.already_authorized
    if _OTHER_FIELD.search(message) and not _MENTIONS_CODE.search(message):
        return None
    for words, refusal in _REFUSAL_BY_WORD:
        if any(word in lowered for word in words):
            return refusal
    return None


def _own_post_refusal(code: int, message: str) -> TikTokRefusal | None:
    if code == _OBJECT_NOT_FOUND:
        return TikTokRefusal.post_not_found_for_identity
    if TikTokRefusal.post_not_found_for_identity.value in message.lower():
        return TikTokRefusal.post_not_found_for_identity
    if _NAMES_THE_POST.search(message) and _NOT_THERE.search(message):
        return TikTokRefusal.post_not_found_for_identity
    return None


def classify_error(
    code: int,
    message: str,
    *,
    request_id: str | None,
    http_status: int | None,
    about: About = About.auth_code,
) -> TikTokError:
    """The taxonomy's error for TikTok's non-zero `code` (docs/tiktok.md, "How TikTok's failures are classified").

    `about` says what the request asked about, and so which refusals a rejection may name: those of a creator's
    code and its post (info, authorize), `post_not_found_for_identity` (identity/video/info), or none (list,
    unbind). By code first, then by message.
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
    refusal: TikTokRefusal | None = None
    if about is About.auth_code:
        refusal = _REFUSAL_BY_CODE.get(code) or _refusal_from_message(message)
        if refusal is None and code == _OBJECT_NOT_FOUND:
            refusal = TikTokRefusal.auth_code_not_found
    elif about is About.own_post:
        refusal = _own_post_refusal(code, message)
    return TikTokRequestRejected(message, refusal=refusal, **context)


def _scrub(message: str, secrets: tuple[str, ...]) -> str:
    """TikTok may echo a code or token in its message; the message ends up in logs and API answers."""
    for secret in secrets:
        if len(secret) >= 4:
            message = message.replace(secret, _REDACTED)
    return message


def read_envelope(response: httpx.Response, *, secrets: tuple[str, ...], about: About) -> JsonObject:
    """The envelope's `data` on success; otherwise raises the taxonomy's error for the answer."""
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
        message = _scrub(storable_text(str(envelope.get("message") or "")), secrets)
        raw_request_id = envelope.get("request_id")
        request_id = storable_text(str(raw_request_id)) if raw_request_id not in (None, "") else None
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
            raise classify_error(code, message, request_id=request_id, http_status=status, about=about)
        # The request never reached the API logic (a missing trailing slash gives 404): nothing to classify.
        raise TikTokRequestRejected(f"TikTok answered HTTP {status}", http_status=status, request_id=request_id)

    if envelope is None:
        raise TikTokBadResponse("the body is not TikTok's envelope (JSON object with an int code)", http_status=status)
    if code != 0:
        raise classify_error(code, message, request_id=request_id, http_status=status, about=about)
    data = envelope.get("data")
    if not isinstance(data, dict):
        raise TikTokBadResponse("success without a data object", code=code, request_id=request_id, http_status=status)
    return data
