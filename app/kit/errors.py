"""Errors as RFC 9457 problem details.

Every domain error is a `ProblemError` subclass that carries its HTTP status, a stable machine-readable `reason`
and a title. One set of handlers renders them, request-validation failures, unknown routes and anything unexpected
as `application/problem+json`. Routes declare which problems they can answer with `problem_responses(...)`, so
the OpenAPI document lists them and clients can switch on `reason`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from http import HTTPStatus
from typing import Any, ClassVar

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.kit.db import DATABASE_ERROR_TYPES, is_database_unavailable

PROBLEM_MEDIA_TYPE = "application/problem+json"
PROBLEM_TYPE_PREFIX = "urn:spark-authorizations:problem:"

log = structlog.get_logger(__name__)


class Problem(BaseModel):
    """An RFC 9457 problem details object, with this service's `reason` extension."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(description="A URN naming the problem type: `urn:spark-authorizations:problem:<reason>`.")
    title: str = Field(description="A short summary of the problem type.")
    status: int = Field(description="The HTTP status code.")
    detail: str | None = Field(default=None, description="What happened in this occurrence.")
    instance: str | None = Field(default=None, description="The request path.")
    reason: str = Field(description="Stable machine-readable reason; switch on this, not on `title`.")
    retryable: bool = Field(default=False, description="True when the same request may succeed later.")


class ProblemError(Exception):
    """Base of every error the API answers on purpose."""

    status: ClassVar[int] = 400
    reason: ClassVar[str] = "bad_request"
    title: ClassVar[str] = "Bad request"
    retryable: ClassVar[bool] = False
    retry_after_seconds: int | None = None  # sent as Retry-After when set; an instance may say its own

    def __init__(self, detail: str | None = None, **extensions: Any) -> None:
        super().__init__(detail or self.title)
        self.detail = detail
        self.extensions = extensions

    def to_problem(self, instance: str | None = None) -> dict[str, Any]:
        return _problem(
            status=self.status,
            reason=self.reason,
            title=self.title,
            detail=self.detail,
            instance=instance,
            retryable=self.retryable,
            **self.extensions,
        )


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


def _problem(
    *,
    status: int,
    reason: str,
    title: str,
    detail: str | None,
    instance: str | None,
    retryable: bool = False,
    **extensions: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": PROBLEM_TYPE_PREFIX + reason,
        "title": title,
        "status": status,
        "reason": reason,
        "retryable": retryable,
    }
    if detail is not None:
        body["detail"] = detail
    if instance is not None:
        body["instance"] = instance
    body.update(extensions)
    return body


def problem_response(body: Mapping[str, Any], headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse(dict(body), status_code=int(body["status"]), media_type=PROBLEM_MEDIA_TYPE, headers=headers)


def problem_responses(*errors: type[ProblemError]) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` for the problems a route can answer, grouped by status, reasons listed."""
    by_status: dict[int, list[type[ProblemError]]] = {}
    error: type[ProblemError]
    # Every operation validates its input, and every operation but /healthz needs the database.
    for error in (*errors, RequestInvalid, DatabaseUnavailable):
        by_status.setdefault(error.status, []).append(error)
    responses: dict[int | str, dict[str, Any]] = {}
    for status, group in sorted(by_status.items()):
        reasons = sorted({error.reason for error in group})
        responses[status] = {
            "description": f"{HTTPStatus(status).phrase}. `reason` is one of: " + ", ".join(f"`{r}`" for r in reasons),
            "content": {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}},
        }
    return responses


def _validation_errors(errors: Iterable[Any]) -> list[dict[str, Any]]:
    # Never echo `input` or `ctx`: a malformed body may hold a creator's code or an access token.
    return [
        {"loc": list(error.get("loc", ())), "msg": error.get("msg", ""), "type": error.get("type", "")}
        for error in errors
    ]


async def _handle_problem(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ProblemError)
    headers = {}
    if exc.status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    if exc.retry_after_seconds is not None:
        headers["Retry-After"] = str(exc.retry_after_seconds)
    return problem_response(exc.to_problem(request.url.path), headers)


async def _handle_validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    error = RequestInvalid("See `errors` for each field that is wrong.", errors=_validation_errors(exc.errors()))
    return problem_response(error.to_problem(request.url.path))


async def _handle_http(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 400:
        # The framework's "error parsing the body" (bytes that are not UTF-8 JSON): to a caller that is the same
        # mistake as JSON that does not match the schema, so it gets the same answer.
        error = RequestInvalid("The body could not be parsed as JSON.", errors=[])
        return problem_response(error.to_problem(request.url.path))
    status = exc.status_code
    phrase = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Error"
    reason = {404: "not_found", 405: "method_not_allowed"}.get(status, phrase.lower().replace(" ", "_"))
    detail = exc.detail if isinstance(exc.detail, str) and exc.detail != phrase else None
    body = _problem(status=status, reason=reason, title=phrase, detail=detail, instance=request.url.path)
    return problem_response(body, exc.headers)


async def _handle_database_error(request: Request, exc: Exception) -> JSONResponse:
    if is_database_unavailable(exc):
        log.warning("request.database_unavailable", path=request.url.path, error_type=type(exc).__name__)
        return await _handle_problem(request, DatabaseUnavailable())
    return await _handle_unexpected(request, exc)


async def _handle_unexpected(request: Request, exc: Exception) -> JSONResponse:
    # Anything reaching here is a bug: log it with the traceback, answer a problem without internals.
    request_id = getattr(request.state, "request_id", None)
    log.exception("request.failed", path=request.url.path, error_type=type(exc).__name__, request_id=request_id)
    body = _problem(
        status=500,
        reason="internal_error",
        title="Internal server error",
        detail="The service failed unexpectedly; the request was not applied.",
        instance=request.url.path,
    )
    return problem_response(body, {"X-Request-ID": request_id} if request_id else None)


def _openapi_with_problem_schema(app: FastAPI) -> Any:
    original = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = original()
            schema.setdefault("components", {}).setdefault("schemas", {})["Problem"] = Problem.model_json_schema(
                ref_template="#/components/schemas/{model}"
            )
            # A middleware that changes what operations accept or answer (idempotency keys) documents it here.
            for middleware in app.user_middleware:
                document = getattr(middleware.cls, "document_openapi", None)
                if document is not None:
                    document(schema)
            app.openapi_schema = schema
        return app.openapi_schema

    return openapi


def install_problem_handlers(app: FastAPI) -> None:
    """Render every error as a problem, and describe the Problem schema in the OpenAPI document."""
    app.openapi = _openapi_with_problem_schema(app)  # type: ignore[method-assign]
    app.add_exception_handler(ProblemError, _handle_problem)
    app.add_exception_handler(RequestValidationError, _handle_validation)
    app.add_exception_handler(StarletteHTTPException, _handle_http)
    # Registered by type, not folded into the catch-all below: Starlette re-raises what reaches the catch-all
    # after answering, which would log an outage as a crash.
    for error_type in DATABASE_ERROR_TYPES:
        app.add_exception_handler(error_type, _handle_database_error)
    app.add_exception_handler(Exception, _handle_unexpected)
