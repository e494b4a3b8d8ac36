"""Safe retries for every write: the `Idempotency-Key` header (IETF httpapi-idempotency-key-header, as Stripe does it).

A `POST`, `PATCH`, `PUT` or `DELETE` under `/v1` that carries `Idempotency-Key` is run once per (caller, key): its
answer (status, the headers worth replaying, body) is stored, and a request with the same key gets that answer
again, byte for byte, with `Idempotent-Replayed: true`, for 24 hours; it calls no TikTok and writes nothing. The
same key for another request (another method, path, query or body) is 422 `idempotency_key_reused`; while the
first is still running it is 409 `idempotency_key_in_use` (retryable, `Retry-After: 1`).

The caller is the keyed hash of the bearer API key, as `api_keys` stores it: no lookup, and one caller never sees
another's keys. Authentication itself stays the app's: an answer that refuses the caller (401, 403) is not stored,
nor one that says to try again (any 5xx, any problem with `retryable: true`), so that a retry runs afresh.

A pure ASGI middleware (inside the request-id one): everything but a write under /v1 with the header passes
through untouched, with no database access. For the others:

1. **Claim**, in a short transaction of its own: this caller's expired entries go first (at most PURGE_BATCH,
   skipping any another request holds), then `INSERT ... ON CONFLICT DO NOTHING` of an `in_progress` entry. When
   the key exists, its row (locked) decides: another request's fingerprint: reused; `in_progress`: in use, unless
   it is older than `in_progress_bound` (its request surely ended without a word, e.g. the process died) and is
   this very request, then it is taken over; `done`: replayed; expired: taken over.
2. **Run the app**, with no connection held by this middleware. Its answer is held back until complete.
3. **Store or forget**, before the answer is sent: so once a caller has seen an answer, the same key replays it.
   The claim's `created_at` is its token: an entry that another request took over is left alone.

If Postgres fails at step 3 (the app has answered, so its answer is sent), the entry stays `in_progress` and a
retry is 409 until `in_progress_bound` has passed, then runs again under the service's own rules for a second
attempt (a code already applied answers its authorization; TikTok is not asked to apply it twice).
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from http import HTTPStatus
from typing import Any

import anyio
import structlog
from fastapi.security.utils import get_authorization_scheme_param
from sqlalchemy import CheckConstraint, Index, LargeBinary, SmallInteger, String, delete, select, update
from sqlalchemy.dialects.postgresql import JSONB, insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Mapped, mapped_column
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.kit import clock
from app.kit import operations as documented
from app.kit.asgi import read_body, replaying
from app.kit.crypto import KeyHasher
from app.kit.db import DATABASE_ERROR_TYPES, Base
from app.kit.errors import (
    PROBLEM_MEDIA_TYPE,
    REASONS_KEY,
    ProblemError,
    answer,
    outage_answer,
    problem_responses,
)
from app.kit.settings import Settings

log = structlog.get_logger(__name__)

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
WRITE_METHODS = frozenset({"POST", "PATCH", "PUT", "DELETE"})
RETENTION = timedelta(hours=24)
# Expired entries of the caller deleted at each claim: enough to keep up with any caller (one claim makes at most
# one entry), few enough that a claim stays a matter of milliseconds.
PURGE_BATCH = 100
# 1 to 255 visible ASCII characters (0x21 '!' to 0x7E '~'), as sent: a quoted value keeps its quotes.
KEY_PATTERN = r"[!-~]{1,255}"
_KEY_FORM = re.compile(KEY_PATTERN)
# What a replay needs besides the status and the body; the rest (content-length, the request id) is made afresh.
_STORED_HEADERS = ("content-type", "location")
# A claim that keeps finding the key freed under it: give up and let the caller retry.
_CLAIM_ATTEMPTS = 5


def in_progress_bound(settings: Settings) -> timedelta:
    """How long an `in_progress` entry is believed: longer than any request takes. The longest is an apply: it
    waits up to one TikTok deadline for another request's claim on the post, then makes up to three TikTok
    calls (info, list, authorize), each within the deadline; 60 s more cover its short transactions. Older, the
    request has surely ended without storing its answer (its process died), and the same request may run again."""
    return timedelta(seconds=4 * settings.tiktok_deadline_seconds + 60)


class IdempotencyKeyInvalid(ProblemError):
    status = 422
    reason = "idempotency_key_invalid"
    title = "The Idempotency-Key header must be 1 to 255 visible ASCII characters"


class IdempotencyKeyReused(ProblemError):
    status = 422
    reason = "idempotency_key_reused"
    title = "This Idempotency-Key was used for another request"


class IdempotencyKeyInUse(ProblemError):
    status = 409
    reason = "idempotency_key_in_use"
    title = "A request with this Idempotency-Key is still running; try again shortly"
    retryable = True
    retry_after_seconds = 1


class IdempotencyState:
    in_progress = "in_progress"
    done = "done"


class IdempotencyKey(Base):
    """The first answer to one caller's key, kept for RETENTION; `in_progress` while its request runs."""

    __tablename__ = "idempotency_keys"
    __table_args__ = (
        CheckConstraint("state IN ('in_progress', 'done')", name="state"),
        CheckConstraint(
            "(state = 'done') = (status IS NOT NULL AND headers IS NOT NULL AND body IS NOT NULL)",
            name="answer_when_done",
        ),
        CheckConstraint(f"key ~ '^{KEY_PATTERN}$'", name="key_form"),
        # The purge at each claim: this caller's entries that have expired.
        Index(None, "caller", "expires_at"),
    )

    caller: Mapped[bytes] = mapped_column(LargeBinary(32), primary_key=True)  # sha256 of the API key
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    fingerprint: Mapped[bytes] = mapped_column(LargeBinary(32))  # sha256 of method, path, query and body
    state: Mapped[str] = mapped_column(String(16))
    status: Mapped[int | None] = mapped_column(SmallInteger)
    headers: Mapped[dict[str, str] | None] = mapped_column(JSONB)
    body: Mapped[bytes | None] = mapped_column(LargeBinary)
    # Set by the claim (the service's clock, like every claim here), and the claim's token: see `_finish`.
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]


# -- the claim


@dataclass(frozen=True, slots=True)
class _Claimed:
    created_at: datetime


@dataclass(frozen=True, slots=True)
class _Replay:
    status: int
    headers: dict[str, str]
    body: bytes


class _InUse:
    pass


class _Reused:
    pass


_Outcome = _Claimed | _Replay | _InUse | _Reused


async def purge_expired(
    session: AsyncSession, *, now: datetime, caller: bytes | None = None, limit: int = PURGE_BATCH
) -> int:
    """Delete up to `limit` entries expired at `now` (of `caller` only, when given), skipping any another
    transaction holds; how many went. A command run on a schedule could call it, without `caller`, until 0."""
    expired = select(IdempotencyKey.caller, IdempotencyKey.key).where(IdempotencyKey.expires_at <= now)
    if caller is not None:
        expired = expired.where(IdempotencyKey.caller == caller)
    # A MATERIALIZED CTE, run once: as a bare `IN (subquery)` Postgres may run the subquery again for every row, each
    # run skipping what this statement already deleted, and the LIMIT then bounds nothing (app/reconcile/repository.py).
    picked = (
        expired.order_by(IdempotencyKey.expires_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
        .cte("picked")
        .prefix_with("MATERIALIZED")
    )
    statement = delete(IdempotencyKey).where(
        IdempotencyKey.caller == picked.c.caller, IdempotencyKey.key == picked.c.key
    )
    result = await session.execute(statement, execution_options={"synchronize_session": False})
    deleted: int = getattr(result, "rowcount", 0)
    return deleted


async def _claim(
    sessions: async_sessionmaker[AsyncSession],
    *,
    caller: bytes,
    key: str,
    fingerprint: bytes,
    now: datetime,
    abandoned_before: datetime,
) -> _Outcome:
    async with sessions.begin() as session:
        purged = await purge_expired(session, now=now, caller=caller)
        if purged:
            log.info("idempotency.purged", count=purged)
        for _ in range(_CLAIM_ATTEMPTS):
            inserted = await session.execute(
                insert(IdempotencyKey)
                .values(
                    caller=caller,
                    key=key,
                    fingerprint=fingerprint,
                    state=IdempotencyState.in_progress,
                    created_at=now,
                    expires_at=now + RETENTION,
                )
                .on_conflict_do_nothing(index_elements=[IdempotencyKey.caller, IdempotencyKey.key])
                .returning(IdempotencyKey.key)
            )
            if inserted.first() is not None:
                return _Claimed(now)
            statement = (
                select(IdempotencyKey)
                .where(IdempotencyKey.caller == caller, IdempotencyKey.key == key)
                .with_for_update()
            )
            entry = (await session.execute(statement)).scalar_one_or_none()
            if entry is None:
                continue  # its request failed retryably and forgot it between the two statements: claim again
            abandoned = entry.state == IdempotencyState.in_progress and entry.created_at <= abandoned_before
            if entry.expires_at <= now or (abandoned and entry.fingerprint == fingerprint):
                log.warning("idempotency.taken_over", expired=entry.expires_at <= now, abandoned=abandoned)
                entry.fingerprint = fingerprint
                entry.state = IdempotencyState.in_progress
                entry.status = entry.headers = entry.body = None
                entry.created_at = now
                entry.expires_at = now + RETENTION
                return _Claimed(now)
            if entry.fingerprint != fingerprint:
                return _Reused()
            if entry.state == IdempotencyState.in_progress:
                return _InUse()
            # A done entry has all three (the table's `answer_when_done` check).
            assert entry.status is not None
            assert entry.headers is not None
            assert entry.body is not None
            return _Replay(entry.status, dict(entry.headers), bytes(entry.body))
    return _InUse()


async def _finish(
    sessions: async_sessionmaker[AsyncSession],
    *,
    caller: bytes,
    key: str,
    claimed: _Claimed,
    answer: tuple[int, dict[str, str], bytes] | None,
) -> None:
    """Store the answer (`done`), or forget the claim (`answer` None) so that a retry runs afresh. Only this
    request's claim: one taken over since (this request outlived `in_progress_bound`) is another's."""
    mine = (
        IdempotencyKey.caller == caller,
        IdempotencyKey.key == key,
        IdempotencyKey.state == IdempotencyState.in_progress,
        IdempotencyKey.created_at == claimed.created_at,
    )
    async with sessions.begin() as session:
        if answer is None:
            result = await session.execute(delete(IdempotencyKey).where(*mine))
        else:
            status, headers, body = answer
            result = await session.execute(
                update(IdempotencyKey)
                .where(*mine)
                .values(
                    state=IdempotencyState.done,
                    status=status,
                    headers=headers,
                    body=body,
                    expires_at=clock.utcnow() + RETENTION,
                )
            )
    if not getattr(result, "rowcount", 0):
        log.warning("idempotency.claim_lost", stored=answer is not None)


# -- the middleware


class IdempotencyMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] not in WRITE_METHODS
            or not documented.under_api_prefix(scope["path"])
        ):
            await self.app(scope, receive, send)
            return
        if documented.operation(scope["app"], scope["method"], scope["path"]) is None:
            await self.app(scope, receive, send)  # no such operation: the app answers 404 or 405, nothing to keep
            return
        headers = Headers(scope=scope)
        keys = headers.getlist(HEADER)
        caller = _caller(headers.get("authorization"), scope["app"].state.key_hasher)
        if not keys or caller is None:
            # No key: nothing to remember. No bearer key: the app answers 401, and there is no caller anyway.
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        if len(keys) != 1 or not _KEY_FORM.fullmatch(keys[0]):
            detail = "Send one Idempotency-Key of 1 to 255 visible ASCII characters (a UUID, say)."
            await answer(IdempotencyKeyInvalid(detail), path)(scope, receive, send)
            return
        key = keys[0]
        body = await read_body(receive)
        if body is None:
            return  # the caller went away before it had sent its body: there is no request to run
        state = scope["app"].state
        sessions: async_sessionmaker[AsyncSession] = state.sessionmaker
        now = clock.utcnow()
        try:
            outcome = await _claim(
                sessions,
                caller=caller,
                key=key,
                fingerprint=_fingerprint(scope, body),
                now=now,
                abandoned_before=now - in_progress_bound(state.settings),
            )
        except DATABASE_ERROR_TYPES as exc:
            outage = outage_answer(exc, path)
            if outage is None:
                raise
            await outage(scope, receive, send)
            return
        if isinstance(outcome, _Replay):
            log.info("idempotency.replayed", status=outcome.status)
            replayed = Response(outcome.body, outcome.status, headers={**outcome.headers, REPLAYED_HEADER: "true"})
            await replayed(scope, receive, send)
        elif isinstance(outcome, _Reused):
            detail = "It was first sent with another method, path or body. Use a new key for a new request."
            await answer(IdempotencyKeyReused(detail), path)(scope, receive, send)
        elif isinstance(outcome, _InUse):
            detail = "The first request with this key has not answered yet; send it again shortly for its answer."
            await answer(IdempotencyKeyInUse(detail), path)(scope, receive, send)
        else:
            await self._run(scope, replaying(body, receive), send, sessions, caller=caller, key=key, claimed=outcome)

    async def _run(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        sessions: async_sessionmaker[AsyncSession],
        *,
        caller: bytes,
        key: str,
        claimed: _Claimed,
    ) -> None:
        start: Message | None = None
        chunks: list[bytes] = []
        finished = False

        async def finish(answer: tuple[int, dict[str, str], bytes] | None) -> None:
            nonlocal finished
            finished = True
            try:
                await _finish(sessions, caller=caller, key=key, claimed=claimed, answer=answer)
            except DATABASE_ERROR_TYPES as exc:
                # The entry stays in progress until `in_progress_bound` has passed; see the module's docstring.
                log.warning("idempotency.not_recorded", error_type=type(exc).__name__, stored=answer is not None)

        async def hold_until_recorded(message: Message) -> None:
            nonlocal start
            if finished:
                await send(message)
            elif message["type"] == "http.response.start":
                start = message
            elif message["type"] == "http.response.body" and start is not None:
                chunks.append(message.get("body", b""))
                if message.get("more_body", False):
                    return
                body = b"".join(chunks)
                await finish(None if _not_to_replay(scope) else _storable(start, body))
                await send(start)
                await send({"type": "http.response.body", "body": body, "more_body": False})
            else:
                await send(message)

        try:
            await self.app(scope, receive, hold_until_recorded)
        finally:
            if not finished:
                # No complete answer: the app failed (the outer handler answers 500), or the request was cancelled.
                with anyio.CancelScope(shield=True):
                    await finish(None)


def _caller(authorization: str | None, hasher: KeyHasher) -> bytes | None:
    """The caller as `api_keys` knows it (its keyed hash), read exactly as the app's HTTPBearer reads the key."""
    scheme, credentials = get_authorization_scheme_param(authorization)
    if not credentials or scheme.lower() != "bearer":
        return None
    return hasher.hash(credentials)


def _fingerprint(scope: Scope, body: bytes) -> bytes:
    """The request, as far as a key binds it: method, path as sent, query and body, each length-prefixed."""
    digest = hashlib.sha256()
    path: bytes = scope.get("raw_path") or scope["path"].encode()
    for part in (scope["method"].encode(), path, scope.get("query_string", b""), body):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.digest()


_NOT_TO_REPLAY = "idempotency_not_to_replay"


def mark_not_to_replay(request: Request) -> None:
    """For a route whose answer is a success that still says to try part of it again (a batch with items that
    failed for now): it is not kept, so the same request with the same key runs afresh."""
    setattr(request.state, _NOT_TO_REPLAY, True)


def _not_to_replay(scope: Scope) -> bool:
    return bool(scope.get("state", {}).get(_NOT_TO_REPLAY))


def _storable(start: Message, body: bytes) -> tuple[int, dict[str, str], bytes] | None:
    """The answer to keep, or None when a retry should run afresh: a refused caller, a failure of the service or
    of what it depends on (5xx), or any problem that says to try again (`retryable: true`)."""
    status: int = start["status"]
    if status in (HTTPStatus.UNAUTHORIZED, HTTPStatus.FORBIDDEN) or status >= 500:
        return None
    headers = Headers(raw=start.get("headers", []))
    if headers.get("content-type", "").split(";")[0].strip() == PROBLEM_MEDIA_TYPE:
        try:
            problem = json.loads(body)
        except ValueError:
            problem = None
        if isinstance(problem, dict) and problem.get("retryable") is True:
            return None
    return status, {name: headers[name] for name in _STORED_HEADERS if name in headers}, body


# -- the contract


def document_openapi(schema: dict[str, Any]) -> None:
    """Every write under /v1: the optional header, and the problems it may answer besides the route's own
    (app.kit.contract writes their descriptions)."""
    parameter = {
        "name": HEADER,
        "in": "header",
        "required": False,
        "description": (
            "Makes the request safe to retry: the first answer for this key (per API key) is stored and answered "
            "again, byte for byte with `Idempotent-Replayed: true`, for 24 hours. The same key for another request "
            "is 422 `idempotency_key_reused`; while the first still runs, 409 `idempotency_key_in_use`. A UUID "
            "per operation is a good key."
        ),
        "schema": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": f"^{KEY_PATTERN}$"},
    }
    additions = problem_responses(IdempotencyKeyInvalid, IdempotencyKeyReused, IdempotencyKeyInUse)
    for path, operations in schema.get("paths", {}).items():
        if not documented.under_api_prefix(path):
            continue
        for method, operation in operations.items():
            if method.upper() not in WRITE_METHODS:
                continue
            # Copies: YAML would write an object shared by operations as an anchor and aliases.
            operation.setdefault("parameters", []).append(copy.deepcopy(parameter))
            responses = operation.setdefault("responses", {})
            for status, addition in additions.items():
                existing = responses.setdefault(str(status), {"description": addition["description"]})
                existing.setdefault(REASONS_KEY, []).extend(addition[REASONS_KEY])
