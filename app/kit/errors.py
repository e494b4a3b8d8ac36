"""Errors as RFC 9457 problem details.

Every error the API answers is a `ProblemError` subclass that carries its HTTP status, a stable machine-readable
`reason` and a title. One set of handlers renders them, request-validation failures, what the framework answers
(unknown paths, methods a path does not serve) and anything unexpected as `application/problem+json`. Routes
declare which problems they can answer with `problem_responses(...)`; app.kit.contract turns that into the OpenAPI
document, with every reason any `ProblemError` subclass names gathered into one `ProblemReason` enum.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator, Mapping
from http import HTTPStatus
from typing import Any, ClassVar

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.kit import request_id as request_ids
from app.kit.db import DATABASE_ERROR_TYPES, is_database_unavailable
from app.kit.operations import methods_served

PROBLEM_MEDIA_TYPE = "application/problem+json"
PROBLEM_TYPE_PREFIX = "urn:spark-authorizations:problem:"
REASONS_KEY = "x-problem-reasons"  # where problem_responses() leaves its reasons for app.kit.contract

log = structlog.get_logger(__name__)


def _extensions_are_optional(schema: dict[str, Any]) -> None:
    """An extension member is sent only when it applies: not required, and never null (no `default: null`)."""
    required = set(schema.get("required", ()))
    for name, member in schema.get("properties", {}).items():
        if name in required:
            continue
        member.pop("default", None)
        options = member.get("anyOf")
        if options is not None:
            kept = [option for option in options if option.get("type") != "null"]
            if len(kept) == 1:
                member.pop("anyOf")
                member.update(kept[0])
            else:
                member["anyOf"] = kept


def _absent(value: object) -> bool:
    return value is None


class TikTokDetails(BaseModel):
    """What TikTok answered, to quote to TikTok support."""

    code: int | None = Field(description="TikTok's `code` (0 is success; see docs/tiktok.md for those it names).")
    message: str | None = Field(description="TikTok's `message`.")
    request_id: str | None = Field(description="TikTok's `request_id`.")


class FieldError(BaseModel):
    """One field of the request that is wrong. The value sent is never echoed (it may be a code or a token)."""

    loc: list[str | int] = Field(description="Where: `body`, `query`, `path` or `header`, then the field's path.")
    msg: str
    type: str = Field(description="pydantic's error type, e.g. `missing`, `string_too_long`, `bool_type`.")


class BlockingAd(BaseModel):
    ad_id: str
    authorization_id: uuid.UUID


class Problem(BaseModel):
    """An RFC 9457 problem details object, with this service's `reason` and the members that apply to it."""

    model_config = ConfigDict(extra="allow", json_schema_extra=_extensions_are_optional)

    type: str = Field(description="A URN naming the problem type: `urn:spark-authorizations:problem:<reason>`.")
    title: str = Field(description="A short summary of the problem type; the same for every occurrence.")
    status: int = Field(description="The HTTP status code.")
    detail: str = Field(description="What happened in this occurrence, for people.")
    instance: str = Field(description="The path of the request that failed.")
    reason: str = Field(
        description="Stable machine-readable reason: switch on this, never on `title` or `detail`. Each "
        "operation's responses say which reasons it can answer with each status."
    )
    retryable: bool = Field(description="True when the same request may succeed later (see `Retry-After`).")
    # The members below are sent only with the reasons they belong to.
    tiktok: TikTokDetails | None = Field(
        default=None, exclude_if=_absent, description="When TikTok refused or failed: its own words."
    )
    errors: list[FieldError] | None = Field(
        default=None,
        exclude_if=_absent,
        description="`request_invalid`: every field at fault; `auth_code_invalid` for a batch: every item that is "
        "not a code.",
    )
    field: str | None = Field(
        default=None, exclude_if=_absent, description="`auth_code_invalid`: which code is not a code."
    )
    item_id: str | None = Field(default=None, exclude_if=_absent, description="The TikTok post the problem is about.")
    original_item_id: str | None = Field(
        default=None,
        exclude_if=_absent,
        description="`original_post_code_*`: the original post a Duet/Stitch needs the code of.",
    )
    duration_seconds: float | None = Field(
        default=None, exclude_if=_absent, description="`video_too_long`: the video's length."
    )
    max_duration_seconds: float | None = Field(
        default=None, exclude_if=_absent, description="`video_too_long`: the limit."
    )
    scope: str | None = Field(
        default=None, exclude_if=_absent, description="`scope_required`: the scope the operation needs."
    )
    authorization_id: uuid.UUID | None = Field(
        default=None, exclude_if=_absent, description="`ad_linked_elsewhere`: the authorization the ad is linked to."
    )
    authorization_ids: list[uuid.UUID] | None = Field(
        default=None,
        exclude_if=_absent,
        description="`pair_still_bound`: the Duet/Stitch authorizations that still bind the post.",
    )
    authorization_status: str | None = Field(
        default=None, exclude_if=_absent, description="`authorization_not_active`: the authorization's status."
    )
    ads: list[BlockingAd] | None = Field(
        default=None, exclude_if=_absent, description="`ads_still_active`: the ads to remove first."
    )
    limit: int | None = Field(default=None, exclude_if=_absent, description="`*_limit_reached`: the limit.")
    used: int | None = Field(default=None, exclude_if=_absent, description="`*_limit_reached`: how many are used.")
    identity_type: str | None = Field(
        default=None, exclude_if=_absent, description="`identity_ads_limit_reached`: the identity."
    )
    identity_id: str | None = Field(
        default=None, exclude_if=_absent, description="`identity_ads_limit_reached`: the identity."
    )


class ProblemError(Exception):
    """Base of every error the API answers on purpose. Each subclass names one `reason`."""

    status: ClassVar[int] = 400
    reason: ClassVar[str] = ""  # every subclass names its own; the base is never raised
    title: ClassVar[str] = "Bad request"
    retryable: ClassVar[bool] = False
    retry_after_seconds: int | None = None  # sent as Retry-After when set; an instance may say its own

    def __init__(self, detail: str | None = None, **extensions: Any) -> None:
        super().__init__(detail or self.title)
        self.detail = detail
        self.extensions = extensions

    def to_problem(self, instance: str) -> dict[str, Any]:
        return _problem(
            status=self.status,
            reason=self.reason,
            title=self.title,
            detail=self.detail,
            instance=instance,
            retryable=self.retryable,
            **self.extensions,
        )

    def headers(self) -> dict[str, str]:
        """The headers that go with the problem: a 401's challenge, a retryable one's Retry-After."""
        headers = {}
        if self.status == 401:
            headers["WWW-Authenticate"] = "Bearer"
        if self.retry_after_seconds is not None:
            headers["Retry-After"] = str(self.retry_after_seconds)
        return headers


def every_problem() -> Iterator[type[ProblemError]]:
    """Every problem the service can answer: each subclass of ProblemError that names a reason (the modules that
    define them are imported by the time the app is built)."""
    pending = list(ProblemError.__subclasses__())
    while pending:
        problem = pending.pop()
        pending.extend(problem.__subclasses__())
        if problem.reason:
            yield problem


class NotAuthenticated(ProblemError):
    status = 401
    reason = "not_authenticated"
    title = "A valid API key is required"


class RequestInvalid(ProblemError):
    status = 422
    reason = "request_invalid"
    title = "The request does not match the schema"


class CursorInvalid(ProblemError):
    status = 422
    reason = "cursor_invalid"
    title = "The pagination cursor is not one this service issued"


class DatabaseUnavailable(ProblemError):
    """Postgres cannot be reached, or no connection came free in time. Nothing was half-done: every write the
    service makes is one transaction, and intake records its intent before it changes TikTok."""

    status = 503
    reason = "database_unavailable"
    title = "The database cannot be reached; try again shortly"
    retryable = True
    retry_after_seconds = 2


class NotFound(ProblemError):
    status = 404
    reason = "not_found"
    title = "There is no such path"


class MethodNotAllowed(ProblemError):
    status = 405
    reason = "method_not_allowed"
    title = "The path does not serve this method; `Allow` lists those it serves"


class RequestTooLarge(ProblemError):
    status = 413
    reason = "request_too_large"
    title = "The request body is larger than the service accepts"


class UnsupportedMediaType(ProblemError):
    status = 415
    reason = "unsupported_media_type"
    title = "Request bodies must be JSON (Content-Type: application/json)"


class InternalError(ProblemError):
    status = 500
    reason = "internal_error"
    title = "Internal server error"


class HttpError(ProblemError):
    """Any other status the HTTP framework answers on its own (none is known to happen): still a problem."""

    reason = "http_error"
    title = "The request cannot be served"


def _problem(
    *,
    status: int,
    reason: str,
    title: str,
    detail: str | None,
    instance: str,
    retryable: bool = False,
    **extensions: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": PROBLEM_TYPE_PREFIX + reason,
        "title": title,
        "status": status,
        "detail": detail or title,
        "instance": instance,
        "reason": reason,
        "retryable": retryable,
    }
    body.update(extensions)
    return body


def problem_response(body: Mapping[str, Any], headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse(dict(body), status_code=int(body["status"]), media_type=PROBLEM_MEDIA_TYPE, headers=headers)


def answer(error: ProblemError, path: str) -> JSONResponse:
    """The response for a problem, with its headers: for middleware, which answers outside the handlers."""
    return problem_response(error.to_problem(path), error.headers())


def outage_answer(exc: Exception, path: str) -> JSONResponse | None:
    """For middleware, which runs outside the handlers: 503 `database_unavailable` when `exc` is Postgres being
    out of reach; None for any other database error (the caller re-raises it: a bug, answered 500)."""
    if not is_database_unavailable(exc):
        return None
    log.warning("request.database_unavailable", path=path, error_type=type(exc).__name__)
    return answer(DatabaseUnavailable(), path)


def problem_responses(*errors: type[ProblemError]) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` for the problems a route can answer, by status. app.kit.contract adds those every
    operation of its kind can answer (401, 403, 413, 415, 422, 500, 503) and writes the descriptions."""
    responses: dict[int | str, dict[str, Any]] = {}
    for error in errors:
        entry = responses.setdefault(error.status, {"description": HTTPStatus(error.status).phrase, REASONS_KEY: []})
        entry[REASONS_KEY].append(error.reason)
    return responses


def _validation_errors(errors: Iterable[Any]) -> list[dict[str, Any]]:
    # Never echo `input` or `ctx`: a malformed body may hold a creator's code or an access token.
    return [
        {"loc": list(error.get("loc", ())), "msg": error.get("msg", ""), "type": error.get("type", "")}
        for error in errors
    ]


async def _handle_problem(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ProblemError)
    return answer(exc, request.url.path)


async def _handle_validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    error = RequestInvalid("See `errors` for each field that is wrong.", errors=_validation_errors(exc.errors()))
    return answer(error, request.url.path)


async def _handle_http(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    path = request.url.path
    if exc.status_code == 400:
        # The framework's "error parsing the body" (bytes that are not UTF-8 JSON): to a caller that is the same
        # mistake as JSON that does not match the schema, so it gets the same answer.
        return answer(RequestInvalid("The body could not be parsed as JSON.", errors=[]), path)
    if exc.status_code == 404:
        without_slash = path.rstrip("/")
        if path.endswith("/") and without_slash and methods_served(request.app, without_slash):
            detail = f"Paths have no trailing slash: {without_slash}"
        else:
            detail = f"Nothing is served at {path}."
        return answer(NotFound(detail), path)
    if exc.status_code == 405:
        allowed = methods_served(request.app, path)
        detail = f"{path} serves {', '.join(allowed)}."
        return problem_response(MethodNotAllowed(detail).to_problem(path), {"Allow": ", ".join(allowed)})
    log.warning("request.http_error", path=path, status=exc.status_code)
    body = HttpError(exc.detail if isinstance(exc.detail, str) else None).to_problem(path)
    body["status"] = exc.status_code
    return problem_response(body, exc.headers)


async def _handle_database_error(request: Request, exc: Exception) -> JSONResponse:
    if is_database_unavailable(exc):
        log.warning("request.database_unavailable", path=request.url.path, error_type=type(exc).__name__)
        return await _handle_problem(request, DatabaseUnavailable())
    return await _handle_unexpected(request, exc)


async def _handle_unexpected(request: Request, exc: Exception) -> JSONResponse:
    # Anything reaching here is a bug: log it with the traceback, answer a problem without internals.
    request_id = request_ids.current()  # this handler runs outside the request-id middleware: say it here
    log.exception("request.failed", path=request.url.path, error_type=type(exc).__name__)
    error = InternalError("The service failed unexpectedly; the request was not applied.")
    return problem_response(error.to_problem(request.url.path), {"X-Request-ID": request_id} if request_id else None)


def install_problem_handlers(app: FastAPI) -> None:
    """Render every error as a problem."""
    app.add_exception_handler(ProblemError, _handle_problem)
    app.add_exception_handler(RequestValidationError, _handle_validation)
    app.add_exception_handler(StarletteHTTPException, _handle_http)
    # Registered by type, not folded into the catch-all below: Starlette re-raises what reaches the catch-all
    # after answering, which would log an outage as a crash.
    for error_type in DATABASE_ERROR_TYPES:
        app.add_exception_handler(error_type, _handle_database_error)
    app.add_exception_handler(Exception, _handle_unexpected)
