"""The adapter's error taxonomy.

Transient errors (rate limits, TikTok system errors, HTTP 5xx, timeouts, bodies that are not the envelope)
are retried by the client under a deadline; permanent ones never are. Every error keeps TikTok's `code`,
`message` and `request_id` so that the caller can quote them to TikTok support.

`SparkCodeProblem` names what is wrong with a creator's code or post when TikTok says so in an error; which
numeric code and message TikTok's API uses for these is unconfirmed (tiktok-business-api.md section 5), so the
client classifies by code first, then by message.
"""

from __future__ import annotations

from enum import StrEnum


class SparkCodeProblem(StrEnum):
    auth_code_invalid = "auth_code_invalid"  # Ads Manager 4013 auth_code_format_error
    auth_code_not_found = "auth_code_not_found"  # code deleted or never existed
    auth_code_expired = "auth_code_expired"  # 4025
    post_deleted = "post_deleted"  # 4002 video_deleted / video_unavailable
    post_banned = "post_banned"  # 900012 illegal_item_status_error
    carousel_duet_not_supported = "carousel_duet_not_supported"  # 4042
    multi_level_duet_stitch = "multi_level_duet_stitch"  # 900003
    mentions_multiple_videos = "mentions_multiple_videos"  # 930002
    story_video_not_supported = "story_video_not_supported"  # 4027
    original_post_code_required = "original_post_code_required"
    original_post_code_mismatch = "original_post_code_mismatch"


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


class TikTokTimeout(TikTokTransientError):
    """No answer within the per-request timeout, or the overall deadline ran out."""


class TikTokBadResponse(TikTokTransientError):
    """The body was not TikTok's envelope (not JSON, or missing `code`/`data` where they must be)."""


class TikTokPermanentError(TikTokError):
    """Trying again will not help."""


class TikTokAccessTokenInvalid(TikTokPermanentError):
    """40102/40104/40105/40106: the ad account must be re-connected with a new token."""


class TikTokPermissionDenied(TikTokPermanentError):
    """40001 (no permission), 40300 (advertiser does not exist), 40301 (role error)."""


class TikTokRequestRejected(TikTokPermanentError):
    """Any other non-zero code (invalid parameters, object not found, ...).

    `problem` is set when the code or message says what is wrong with the creator's code or post.
    """

    def __init__(
        self,
        message: str,
        *,
        problem: SparkCodeProblem | None = None,
        code: int | None = None,
        request_id: str | None = None,
        http_status: int | None = None,
    ) -> None:
        super().__init__(message, code=code, request_id=request_id, http_status=http_status)
        self.problem = problem
