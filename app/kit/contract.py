"""The OpenAPI document as the contract clients are generated from.

FastAPI describes the operations; this finishes the document so that a generated client can rely on it:

- one `ProblemReason` enum of every reason the service can answer (each `ProblemError` subclass names one), the
  typed `Problem` schema, and on every operation each status it can answer with the reasons it narrows to;
- the statuses every operation of a kind can answer, wherever they can occur: 401 and 403 under /v1, 422 where
  there is input, 413 and 415 on writes, 500 everywhere, 503 wherever the database is used;
- the headers: `X-Request-ID` (request and response), `WWW-Authenticate`, `Retry-After`, `Location` on every 201,
  and `Idempotent-Replayed` with the `Idempotency-Key` parameter;
- `servers`, and how long a call that waits on TikTok may take, so that a client can set its timeout;
- the security scheme, on every operation that needs a key. It is documented here rather than by a FastAPI security
  dependency, because the key is checked before routing (app.api_keys.middleware): a dependency that only documents
  would still be solved on every request.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic.json_schema import models_json_schema

from app.kit import idempotency
from app.kit.errors import (
    PROBLEM_MEDIA_TYPE,
    REASONS_KEY,
    DatabaseUnavailable,
    InternalError,
    NotAuthenticated,
    Problem,
    ProblemError,
    RequestInvalid,
    RequestTooLarge,
    UnsupportedMediaType,
    every_problem,
)
from app.kit.request_id import HEADER as REQUEST_ID_HEADER
from app.kit.request_id import PATTERN as REQUEST_ID_PATTERN

# Answered by the middlewares that run before idempotency's: never stored, never replayed.
_BEFORE_IDEMPOTENCY = frozenset({401, 403, 413, 415})
_INPUT = frozenset({"path", "query"})  # header parameters are this service's own (idempotency, request ids)
WRITE_METHODS = frozenset({"post", "put", "patch", "delete"})
# `openapi_extra={CALLS_TIKTOK: True}`: the operation calls TikTok though no TikTok problem is its answer.
CALLS_TIKTOK = "x-calls-tiktok"
# Operations that never touch the database.
NO_DATABASE = frozenset({"getHealth"})
_REF = "#/components/schemas/{model}"


@dataclass(frozen=True)
class Security:
    """A security scheme (`components.securitySchemes[name]`) and the paths whose operations require it."""

    name: str
    scheme: dict[str, Any]
    required_under: Callable[[str], bool]


def install_contract(
    app: FastAPI, *, kind_level: Callable[[str], list[type[ProblemError]]], security: Security
) -> None:
    """Serve the finished document at /openapi.json (and to `make openapi`). `kind_level(path)` names the
    problems every operation under `path` can answer besides its own (authentication, scopes); `security`, the
    scheme the operations it names require."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
                webhooks=app.webhooks.routes,
                servers=app.servers,
                tags=app.openapi_tags,
            )
            finish(schema, kind_level=kind_level, security=security)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def finish(
    schema: dict[str, Any],
    *,
    kind_level: Callable[[str], list[type[ProblemError]]],
    security: Security,
) -> None:
    _document_security(schema, security)
    idempotency.document_openapi(schema)
    problems = {problem.reason: problem for problem in every_problem()}
    components = schema.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    _add_problem_schemas(schemas, problems)
    components["headers"] = copy.deepcopy(_HEADERS)
    components["parameters"] = {"XRequestId": _request_id_parameter()}
    for path, operations in schema.get("paths", {}).items():
        for method, operation in operations.items():
            extra = list(kind_level(path))
            _document_operation(operation, method=method, extra=extra, problems=problems)
    # What the service sends to receivers: a receiver answers 2xx or not, never one of the service's problems.
    for operations in schema.get("webhooks", {}).values():
        for operation in operations.values():
            operation.get("responses", {}).pop("422", None)
    # FastAPI's own validation error schemas, unused: every 422 here is a Problem.
    for unused in ("HTTPValidationError", "ValidationError"):
        if f'"#/components/schemas/{unused}"' not in json.dumps(schema):
            schemas.pop(unused, None)


def _document_security(schema: dict[str, Any], security: Security) -> None:
    schema.setdefault("components", {}).setdefault("securitySchemes", {})[security.name] = copy.deepcopy(
        security.scheme
    )
    for path, operations in schema.get("paths", {}).items():
        if not security.required_under(path):
            continue
        for method, operation in operations.items():
            # Where FastAPI puts it: after what names the operation, before its parameters.
            names = [key for key in ("tags", "summary", "description", "operationId", "deprecated") if key in operation]
            named = {key: operation.pop(key) for key in names}
            operations[method] = {**named, "security": [{security.name: []}], **operation}


def _add_problem_schemas(schemas: dict[str, Any], problems: dict[str, type[ProblemError]]) -> None:
    _, definitions = models_json_schema([(Problem, "validation")], ref_template=_REF)
    schemas.update(definitions.get("$defs", {}))
    # `reason` is a plain string to pydantic (the reasons are known only once every module is imported).
    reason = schemas["Problem"]["properties"]["reason"]
    schemas["Problem"]["properties"]["reason"] = {"$ref": "#/components/schemas/ProblemReason", **reason}
    del reason["type"]
    reasons = sorted(problems)
    schemas["ProblemReason"] = {
        "title": "ProblemReason",
        "type": "string",
        "enum": reasons,
        "description": "Every reason a problem can carry; each operation's responses say which it can answer.\n\n"
        + "\n".join(f"- `{reason}`: {problems[reason].title}" for reason in reasons),
    }


def _has_input(operation: dict[str, Any]) -> bool:
    parameters = [parameter for parameter in operation.get("parameters", []) if parameter.get("in") in _INPUT]
    return bool(parameters or "requestBody" in operation)


def _document_operation(
    operation: dict[str, Any], *, method: str, extra: list[type[ProblemError]], problems: dict[str, type[ProblemError]]
) -> None:
    responses: dict[str, Any] = operation.setdefault("responses", {})
    reasons: dict[int, set[str]] = {}
    for code, response in responses.items():
        for reason in response.pop(REASONS_KEY, []):
            reasons.setdefault(int(code), set()).add(reason)
    every_kind: list[type[ProblemError]] = [*extra, InternalError]
    if operation.get("operationId") not in NO_DATABASE:
        every_kind.append(DatabaseUnavailable)
    if _has_input(operation):
        every_kind.append(RequestInvalid)
    if method in WRITE_METHODS:  # app.kit.request_limits reads every write's body
        every_kind += [RequestTooLarge, UnsupportedMediaType]
    for problem in every_kind:
        reasons.setdefault(problem.status, set()).add(problem.reason)
    if not _has_input(operation) and 422 in reasons:
        reasons[422].discard(RequestInvalid.reason)
        if not reasons[422]:
            del reasons[422]
            responses.pop("422", None)

    calls_tiktok = operation.pop(CALLS_TIKTOK, False)  # said by a route whose TikTok failures are not its own
    if calls_tiktok or any("tiktok_timeout" in named for named in reasons.values()):
        operation["description"] = (
            operation.get("description", "") + "\n\n**Calls TikTok**: each call ends within "
            "`TIKTOK_DEADLINE_SECONDS`, retries included; allow this operation two minutes with the defaults "
            "(see Timeouts above)."
        ).strip()

    request_id = {"$ref": "#/components/parameters/XRequestId"}
    operation.setdefault("parameters", []).append(request_id)
    replayable = any(parameter.get("name") == idempotency.HEADER for parameter in operation["parameters"])
    for code, response in responses.items():
        if int(code) < 400:
            headers = response.setdefault("headers", {})
            headers[REQUEST_ID_HEADER] = {"$ref": "#/components/headers/XRequestId"}
            if code == "201":
                headers["Location"] = {"$ref": "#/components/headers/Location"}
            if replayable:
                headers[idempotency.REPLAYED_HEADER] = {"$ref": "#/components/headers/IdempotentReplayed"}
    for status, named in sorted(reasons.items()):
        kinds = [problems[reason] for reason in sorted(named)]
        listed = ", ".join(f"`{reason}`" for reason in sorted(named))
        headers = {REQUEST_ID_HEADER: {"$ref": "#/components/headers/XRequestId"}}
        if status == NotAuthenticated.status:
            headers["WWW-Authenticate"] = {"$ref": "#/components/headers/WWWAuthenticate"}
        if any(kind.retry_after_seconds is not None or kind.retryable for kind in kinds):
            headers["Retry-After"] = {"$ref": "#/components/headers/RetryAfter"}
        if replayable and status < 500 and status not in _BEFORE_IDEMPOTENCY:
            headers[idempotency.REPLAYED_HEADER] = {"$ref": "#/components/headers/IdempotentReplayed"}
        responses[str(status)] = {
            "description": f"{HTTPStatus(status).phrase}. `reason` is one of: {listed}.",
            "headers": headers,
            "content": {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}},
        }
    operation["responses"] = dict(sorted(responses.items()))


_HEADERS: dict[str, Any] = {
    "XRequestId": {
        "description": "The request's id, in every log event of the request: the caller's own `X-Request-ID` "
        "when it sent a sane one, else a new one. Quote it when reporting a problem.",
        "required": True,
        "schema": {"type": "string", "pattern": f"^{REQUEST_ID_PATTERN}$"},
    },
    "Location": {
        "description": "The path of what was created.",
        "required": True,
        "schema": {"type": "string"},
    },
    "WWWAuthenticate": {
        "description": "`Bearer`: send `Authorization: Bearer <api key>`.",
        "required": True,
        "schema": {"type": "string"},
    },
    "RetryAfter": {
        "description": "Seconds to wait before trying again, when the service knows.",
        "required": False,
        "schema": {"type": "integer", "minimum": 0},
    },
    "IdempotentReplayed": {
        "description": "`true` when this is the stored answer to an earlier request with the same Idempotency-Key.",
        "required": False,
        "schema": {"type": "string", "enum": ["true"]},
    },
}


def _request_id_parameter() -> dict[str, Any]:
    return {
        "name": REQUEST_ID_HEADER,
        "in": "header",
        "required": False,
        "description": "An id of the caller's own for this request (kept when it is 1 to 128 letters, digits or "
        "`._:-`, else replaced); the answer's `X-Request-ID` carries it, and so does every log event.",
        "schema": {"type": "string"},
    }
