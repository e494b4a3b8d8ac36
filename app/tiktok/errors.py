"""The adapter's error taxonomy.

Transient errors (rate limits, TikTok system errors, HTTP 5xx, timeouts, bodies that are not the envelope)
are retried by the client under a deadline; permanent ones never are. Every error keeps TikTok's `code`,
`message` and `request_id` so that the caller can quote them to TikTok support.

`TikTokRefusal` names, in TikTok's own words (Ads Manager's error names), what TikTok says is wrong with a
creator's code or post. What that means for this service's callers is the domain's decision, not the adapter's.
Which numeric code and message TikTok's API uses for these is unconfirmed (docs/tiktok.md, "How TikTok's
failures are classified"), so the client classifies by code first, then by message.
"""

from __future__ import annotations

from enum import StrEnum


class TikTokRefusal(StrEnum):
    """What TikTok refuses a code or post for, by Ads Manager's names (and its numeric codes, where known)."""

    auth_code_format_error = "auth_code_format_error"  # 4013
    auth_code_expired = "auth_code_expired"  # 4025
    auth_code_not_found = "auth_code_not_found"  # the code was deleted by its creator, or never existed
    video_deleted = "video_deleted"  # 4002
    video_unavailable = "video_unavailable"  # 4002
    illegal_item_status_error = "illegal_item_status_error"  # 900012: removed by moderation
    mention_multiple_videos = "mention_multiple_videos"  # 930002
    multi_duet_stitch_refused = "multi_duet_stitch_refused"  # 900003: a Duet of a Duet, a Stitch of a Stitch
    carousel_duet_not_supported = "carousel_duet_not_supported"  # 4042
    story_video_not_supported = "story_video_not_supported"  # 4027
    original_post_auth_code_required = "original_post_auth_code_required"  # a Duet/Stitch without its original's
    original_post_auth_code_mismatch = "original_post_auth_code_mismatch"  # an original's code for another post
    # `authorize` of a post already authorized to this ad account. Unconfirmed whether TikTok ever answers so
    # (whether `authorize` is idempotent is not documented): recognised from the message when it does.
    already_authorized = "already_authorized"
    # `identity/video/info`: the post is not one of that identity's (or the identity, or its Business Center, is
    # not the post's), or does not exist at all. Ads Manager has no name for it, so this is the adapter's; TikTok's
    # code is unconfirmed (40007 likely). Named only for that endpoint, never for a creator's code.
    post_not_found_for_identity = "post_not_found_for_identity"


class TikTokError(Exception):
    """Any failure talking to TikTok."""

    def __init__(
        self,
        message: str,
        *,
        code: int | None = None,
        request_id: str | None = None,
        http_status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.request_id = request_id
        self.http_status = http_status


class TikTokTransientError(TikTokError):
    """Worth trying again: the same request may succeed later."""


class TikTokRateLimited(TikTokTransientError):
    """40100 (app QPS) or 40133 (advertiser per-path QPS)."""


class TikTokUnavailable(TikTokTransientError):
    """50000/50002/60001, -500 call_rpc_fail, HTTP 5xx, or the connection failed."""


class TikTokNotReached(TikTokUnavailable):
    """The connection to TikTok could not be made: the request never left, so TikTok did nothing with it."""


class TikTokTimeout(TikTokTransientError):
    """No answer within the per-request timeout, or the overall deadline ran out."""


class TikTokBadResponse(TikTokTransientError):
    """The body was not TikTok's envelope (not JSON, or missing `code`/`data` where they must be)."""


class TikTokBudgetExhausted(TikTokError):
    """This service's own budget of TikTok calls has no turn free before the call's deadline: the call was not
    sent. Not retried here (waiting longer is what the caller decides); `retry_after_seconds` says when a turn frees.
    """

    def __init__(self, message: str, *, retry_after_seconds: float) -> None:
        super().__init__(message)
        self.retry_after_seconds = retry_after_seconds


class TikTokPermanentError(TikTokError):
    """Trying again will not help."""


class TikTokAccessTokenInvalid(TikTokPermanentError):
    """40102/40104/40105/40106: the ad account must be re-connected with a new token."""


class TikTokPermissionDenied(TikTokPermanentError):
    """40001 (no permission), 40300 (advertiser does not exist), 40301 (role error)."""


class TikTokRequestRejected(TikTokPermanentError):
    """Any other non-zero code (invalid parameters, object not found, ...).

    `refusal` is set when the code or message says what TikTok finds wrong with the creator's code or post.
    """

    def __init__(
        self,
        message: str,
        *,
        refusal: TikTokRefusal | None = None,
        code: int | None = None,
        request_id: str | None = None,
        http_status: int | None = None,
    ) -> None:
        super().__init__(message, code=code, request_id=request_id, http_status=http_status)
        self.refusal = refusal


# Failures after which TikTok surely did nothing with the request: safe to send again even when the request is
# not idempotent. After any other transient failure (a timeout, a system error) the request may have been
# carried out; after a permanent one TikTok said no.
NOTHING_DONE: tuple[type[TikTokError], ...] = (TikTokRateLimited, TikTokNotReached, TikTokBudgetExhausted)
