"""How TikTok's failures reach this service's callers: as problem details with TikTok's own words attached.

Here, in the kit, rather than in the adapter: the adapter (`app.tiktok`) is the bottom layer and says what TikTok
answered; what callers of this service see is this service's decision. Refusals that concern the creator's code
or post are not here either: the authorizations domain names those (`REFUSAL_BY_TIKTOK`), from
`TikTokRequestRejected.refusal`. What is here is what any call to TikTok can answer.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from app.kit.errors import ProblemError
from app.tiktok.errors import (
    TikTokAccessTokenInvalid,
    TikTokBadResponse,
    TikTokBudgetExhausted,
    TikTokError,
    TikTokPermissionDenied,
    TikTokRateLimited,
    TikTokRequestRejected,
    TikTokTimeout,
    TikTokUnavailable,
)


def tiktok_details(error: TikTokError) -> dict[str, Any]:
    """TikTok's code, message and request id, for the caller to quote to TikTok support."""
    return {"tiktok": {"code": error.code, "message": error.message, "request_id": error.request_id}}


class AccessTokenInvalid(ProblemError):
    status = 422
    reason = "access_token_invalid"
    title = "TikTok rejected the ad account's access token; re-connect the ad account"


class AdvertiserPermissionDenied(ProblemError):
    status = 422
    reason = "advertiser_permission_denied"
    title = "TikTok says this access token may not act for this ad account"


class TikTokRejected(ProblemError):
    status = 422
    reason = "tiktok_rejected"
    title = "TikTok refused the request"


class TikTokRateLimitedProblem(ProblemError):
    status = 503
    reason = "tiktok_rate_limited"
    title = "TikTok's rate limit was reached; try again shortly"
    retryable = True
    retry_after_seconds = 1  # TikTok's QPS limits reset every second


class TikTokUnavailableProblem(ProblemError):
    status = 503
    reason = "tiktok_unavailable"
    title = "TikTok is unavailable; try again later"
    retryable = True


class TikTokBadResponseProblem(ProblemError):
    status = 502
    reason = "tiktok_bad_response"
    title = "TikTok answered with something that is not its API's envelope"
    retryable = True


class TikTokTimeoutProblem(ProblemError):
    status = 504
    reason = "tiktok_timeout"
    title = "TikTok did not answer in time"
    retryable = True


TIKTOK_PROBLEMS: tuple[type[ProblemError], ...] = (
    AccessTokenInvalid,
    AdvertiserPermissionDenied,
    TikTokRejected,
    TikTokRateLimitedProblem,
    TikTokUnavailableProblem,
    TikTokBadResponseProblem,
    TikTokTimeoutProblem,
)

_BY_ERROR: tuple[tuple[type[TikTokError], type[ProblemError]], ...] = (
    (TikTokAccessTokenInvalid, AccessTokenInvalid),
    (TikTokPermissionDenied, AdvertiserPermissionDenied),
    (TikTokRateLimited, TikTokRateLimitedProblem),
    (TikTokTimeout, TikTokTimeoutProblem),
    (TikTokBadResponse, TikTokBadResponseProblem),
    (TikTokUnavailable, TikTokUnavailableProblem),
    (TikTokRequestRejected, TikTokRejected),
)


def to_problem(error: TikTokError) -> ProblemError:
    """The problem a caller sees for a TikTok failure nobody handled more precisely."""
    if isinstance(error, TikTokBudgetExhausted):
        # This service's own budget, not TikTok's answer: there is no TikTok code or request id to quote.
        problem = TikTokRateLimitedProblem(
            f"{error.message} (the calls every replica makes to TikTok share TIKTOK_QPS per second)"
        )
        problem.retry_after_seconds = max(math.ceil(error.retry_after_seconds), 1)
        return problem
    for error_type, problem_type in _BY_ERROR:
        if isinstance(error, error_type):
            return problem_type(error.message, **tiktok_details(error))
    return TikTokUnavailableProblem(error.message, **tiktok_details(error))


@asynccontextmanager
async def tiktok_failures_as_problems() -> AsyncIterator[None]:
    """Translate any TikTok failure raised inside into the matching problem."""
    try:
        yield
    except TikTokError as error:
        raise to_problem(error) from error
