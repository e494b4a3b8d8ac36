"""Intake of creators' codes, in phases, so that TikTok is never changed without Postgres knowing it may be.

1. **Read** (no transaction open): the ad account and, if this very code is already applied, that answer.
2. **Ask TikTok** (no connection held): `tt_video/info` for the code (and the original post's code of a
   Duet/Stitch), then refuse with a precise reason or put a pair in TikTok's order (D12).
3. **Claim** (one short transaction, under an advisory lock per post): record the intent durably, a `pending`
   authorization for each post TikTok will bind (both posts of a pair), and claim the posts for this request
   (`claimed_until`). A post another request has claimed is waited for, so concurrent applies of one post make
   one `authorize` call.
4. **Apply** (no connection held): rows whose outcome was unknown (an earlier attempt died or lost TikTok's
   answer) are first settled by reading TikTok (`tt_video/list`); then `tt_video/authorize` if still needed.
5. **Activate** (one short transaction): the rows become active with TikTok's window, and the claim ends.

If TikTok refuses (nothing was applied), the pending rows are removed and the claim released. If TikTok's
answer is lost (timeout, outage), or Postgres fails after TikTok applied the code, the rows stay `pending`:
the next apply of that post, or `python -m app.cli settle`, reads TikTok and settles them. Nothing TikTok
binds is ever unknown here.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.advertisers import service as advertisers
from app.advertisers.models import Advertiser
from app.authorizations import repository
from app.authorizations.errors import (
    REFUSAL_BY_TIKTOK,
    AuthCodeExpired,
    AuthCodeInvalid,
    AuthorizationInProgress,
    CarouselDuetNotSupported,
    CodeRefused,
    MentionsMultipleVideos,
    MultiLevelDuetStitch,
    OriginalPostCodeMismatch,
    OriginalPostCodeRequired,
    OriginalPostCodeUnexpected,
    PostBanned,
    PostDeleted,
    VideoTooLong,
)
from app.authorizations.events import authorization_changed, code_rejected
from app.authorizations.models import (
    Authorization,
    AuthorizationState,
    AuthorizationStatus,
    IdentityType,
    OriginKind,
)
from app.events.models import EventType
from app.kit import clock
from app.kit.crypto import SecretBox, secret_hint
from app.kit.db import DATABASE_ERROR_TYPES
from app.kit.errors import ProblemError
from app.kit.settings import Settings
from app.kit.tiktok_problems import tiktok_details, to_problem
from app.posts.events import record_if_deletion_became_safe
from app.tiktok.client import TikTokClient
from app.tiktok.errors import (
    NOTHING_DONE,
    TikTokError,
    TikTokPermanentError,
    TikTokRefusal,
    TikTokRequestRejected,
)
from app.tiktok.models import ItemType, PostInfo, PostStatus

log = structlog.get_logger(__name__)

Sessions = async_sessionmaker[AsyncSession]

# What TikTok's codes are made of (base64 and a few marks such as the leading '#'). Anything else, whitespace
# inside included, is refused before TikTok is asked.
_CODE_PATTERN = re.compile(r"[A-Za-z0-9#+/=_\-.~:]{8,512}")

_BANNED = frozenset({PostStatus.banned, PostStatus.removed})
_UNSETTLED = frozenset({AuthorizationState.pending, AuthorizationState.unauthorizing})

# TikTok said no, or surely never acted: nothing was applied. Any other failure (a timeout, a system error, a
# garbled answer) may have come after TikTok applied the code, so its outcome is unknown.
NOTHING_APPLIED: tuple[type[TikTokError], ...] = (TikTokPermanentError, *NOTHING_DONE)


@dataclass(frozen=True, slots=True)
class Policy:
    max_video_duration_seconds: float
    # How long one request may own the decision about a post: long enough for its TikTok calls (three at most,
    # each within TikTok's deadline). A request that dies mid-way frees the post when this runs out.
    claim_seconds: float
    # How long a request waits for another one that owns the post before answering `authorization_in_progress`.
    wait_seconds: float

    @classmethod
    def from_settings(cls, settings: Settings) -> Policy:
        deadline = settings.tiktok_deadline_seconds
        return cls(
            max_video_duration_seconds=settings.max_video_duration_seconds,
            claim_seconds=3 * deadline + 15,
            wait_seconds=deadline,
        )


@dataclass(frozen=True, slots=True)
class Applied:
    authorization: Authorization
    created: bool
    reordered: bool = False  # the two codes of a pair were given the other way round, and were put right (D12)


@dataclass(frozen=True, slots=True)
class Plan:
    """What to apply, in TikTok's order (D12): the post's code, and for a Duet/Stitch the original's."""

    code: str
    post: PostInfo
    original_code: str | None = None
    original_post: PostInfo | None = None
    reordered: bool = False

    @property
    def item_ids(self) -> list[str]:
        return [self.post.item_id] + ([self.original_post.item_id] if self.original_post else [])


@dataclass(slots=True)
class _Claim:
    """The posts this request owns until it activates or releases them."""

    main_id: uuid.UUID
    original_id: uuid.UUID | None
    created: bool  # the post had no active authorization here before this request
    main_holds_code: bool  # the post's row already holds the code being applied (a retry of an unfinished apply)
    unknown: list[uuid.UUID] = field(default_factory=list)  # rows left pending by an attempt that did not finish

    @property
    def ids(self) -> list[uuid.UUID]:
        return [self.main_id] + ([self.original_id] if self.original_id else [])


def clean_code(raw: str, *, field: str) -> str:
    """The code as TikTok expects it, or AuthCodeInvalid; pasted whitespace around it is dropped."""
    code = raw.strip()
    if not _CODE_PATTERN.fullmatch(code):
        raise AuthCodeInvalid(f"`{field}` is not in the form of a TikTok video code.", field=field)
    return code


async def apply_code(
    sessions: Sessions,
    tiktok: TikTokClient,
    box: SecretBox,
    policy: Policy,
    *,
    tiktok_advertiser_id: str,
    auth_code: str,
    original_post_auth_code: str | None = None,
    now: datetime,
) -> Applied:
    """Validate a creator's code against TikTok, apply it to the ad account and store the authorization (D2).

    `now` decides what the caller sees (an open window, an expired code); claims read the clock afresh.
    """
    code = clean_code(auth_code, field="auth_code")
    original_code = (
        clean_code(original_post_auth_code, field="original_post_auth_code") if original_post_auth_code else None
    )

    async with sessions() as session:
        advertiser = await advertisers.get(session, tiktok_advertiser_id=tiktok_advertiser_id)
        # A retry of a code already applied here answers from what is stored, without asking TikTok again.
        known = await applied_already(session, box, advertiser, code=code, original_code=original_code, now=now)
        if known is not None:
            return Applied(known, created=False)

    token = box.decrypt(advertiser.access_token_encrypted)
    try:
        post = await read_post(tiktok, advertiser, token, code)
        original = (original_code, await read_post(tiktok, advertiser, token, original_code)) if original_code else None
        plan = make_plan(code, post, original, policy=policy, now=now)
        return await apply_plan(sessions, tiktok, box, policy, advertiser=advertiser, token=token, plan=plan)
    except CodeRefused as refusal:
        await record_rejection(sessions, advertiser, code=code, refusal=refusal, now=now)
        raise


async def record_rejection(
    sessions: Sessions, advertiser: Advertiser, *, code: str, refusal: CodeRefused, now: datetime
) -> None:
    """`authorization.rejected`, in a transaction of its own (no row changed). Best effort: if Postgres fails
    here the caller still hears the refusal, which is what it asked about."""
    try:
        async with sessions.begin() as session:
            await code_rejected(
                session,
                advertiser,
                code=code,
                reason=refusal.reason,
                detail=refusal.detail or refusal.title,
                item_id=refusal.extensions.get("item_id"),
                now=now,
            )
    except DATABASE_ERROR_TYPES as error:
        log.warning("authorization.rejection_not_recorded", error=type(error).__name__)


async def applied_already(
    session: AsyncSession,
    box: SecretBox,
    advertiser: Advertiser,
    *,
    code: str,
    original_code: str | None,
    now: datetime,
) -> Authorization | None:
    """The active authorization this very code (and original's code) made here, if any: no need to ask TikTok."""
    known = await repository.find_by_code(session, advertiser_id=advertiser.id, fingerprints=box.fingerprints(code))
    return known if known is not None and _is_applied_as_given(known, box, original_code, now) else None


async def apply_plan(
    sessions: Sessions,
    tiktok: TikTokClient,
    box: SecretBox,
    policy: Policy,
    *,
    advertiser: Advertiser,
    token: str,
    plan: Plan,
) -> Applied:
    """Phases 3 to 5 for a plan TikTok has described: claim, apply, activate."""
    claim = await _claim_when_free(sessions, box, policy, advertiser, plan)
    if isinstance(claim, Applied):
        return Applied(claim.authorization, created=False, reordered=plan.reordered)
    try:
        bound = await _settle_unknown(sessions, tiktok, box, advertiser, token, claim)
    except TikTokError as error:
        await _release(sessions, claim, forget=False)  # still unknown: nothing may be forgotten
        raise as_problem(error) from error
    main_post = bound.get(plan.post.item_id) if claim.main_holds_code else None
    if main_post is None:
        try:
            main_post = await _authorize(tiktok, advertiser, token, plan)
        except TikTokError as error:
            # Rows still pending now were either new or shown unbound just above: if TikTok applied nothing,
            # nothing is bound, and they go.
            await _release(sessions, claim, forget=isinstance(error, NOTHING_APPLIED))
            raise as_problem(error) from error
    # Any other failure (Postgres gone, the request cancelled) leaves the claim to run out and the rows pending,
    # for the next apply of the post or `settle` to settle by reading TikTok.
    applied = await _activate(sessions, box, advertiser, claim, plan, main_post=main_post)
    return Applied(applied.authorization, created=applied.created, reordered=plan.reordered)


def _is_applied_as_given(row: Authorization, box: SecretBox, original_code: str | None, now: datetime) -> bool:
    """Whether `row` (found by the code) is active and was applied with exactly these codes (D12: both)."""
    if row.status_at(now) is not AuthorizationStatus.active:
        return False
    if original_code is None:
        return row.original_item_id is None  # a Duet/Stitch sent without its original's code: TikTok decides
    original = row.original_authorization
    return (
        original is not None
        and original.auth_code_fingerprint in box.fingerprints(original_code)
        and original.status_at(now) is AuthorizationStatus.active
    )


# -- phase 2: what TikTok says about the codes


def as_problem(error: TikTokError) -> ProblemError:
    """TikTok's refusal of a code or post as ours; any other TikTok failure as its matching problem."""
    if isinstance(error, TikTokRequestRejected) and error.refusal is not None:
        refusal = REFUSAL_BY_TIKTOK.get(error.refusal)
        if refusal is not None:
            return refusal(error.message, **tiktok_details(error))
    return to_problem(error)


async def read_post(tiktok: TikTokClient, advertiser: Advertiser, token: str, code: str) -> PostInfo:
    """The post a code authorizes, as TikTok describes it; TikTok's refusals as ours."""
    try:
        return await tiktok.post_info(advertiser_id=advertiser.tiktok_advertiser_id, access_token=token, auth_code=code)
    except TikTokError as error:
        raise as_problem(error) from error


def refuse_unusable(post: PostInfo, policy: Policy, now: datetime, *, role: str) -> None:
    """Raise the refusal for the first thing that makes this post unusable for a Spark Ad."""
    subject = "The post" if role == "post" else "The original post"
    if post.status is PostStatus.deleted:
        raise PostDeleted(f"{subject} {post.item_id} was deleted by its creator.", item_id=post.item_id)
    if post.status in _BANNED:  # D8
        raise PostBanned(f"{subject} {post.item_id} was removed by TikTok ({post.raw_status}).", item_id=post.item_id)
    if (post.ad_auth_status or "").upper() == "EXPIRED" or (post.auth_end_at is not None and post.auth_end_at <= now):
        raise AuthCodeExpired(f"{subject}'s authorization ended at {post.auth_end_at}.", item_id=post.item_id)
    if post.is_multi_duet_stitch:  # D12
        raise MultiLevelDuetStitch(f"{subject} {post.item_id} is a multi-level Duet or Stitch.", item_id=post.item_id)
    if len(post.mentioned_item_ids) > 1:  # D12
        raise MentionsMultipleVideos(
            f"{subject} {post.item_id} mentions {len(post.mentioned_item_ids)} videos; at most one is allowed.",
            item_id=post.item_id,
        )
    if post.item_type is ItemType.carousel and post.original_item_id is not None:
        raise CarouselDuetNotSupported(f"{subject} {post.item_id} is a carousel Duet or Stitch.", item_id=post.item_id)
    limit = policy.max_video_duration_seconds
    if post.item_type is ItemType.video and post.duration_seconds is not None and post.duration_seconds > limit:  # D9
        raise VideoTooLong(
            f"{subject} {post.item_id} is {post.duration_seconds:g} s long; the limit is {limit:g} s.",
            item_id=post.item_id,
            duration_seconds=post.duration_seconds,
            max_duration_seconds=limit,
        )


def make_plan(
    code: str, post: PostInfo, original: tuple[str, PostInfo] | None, *, policy: Policy, now: datetime
) -> Plan:
    """D12: the codes and posts to apply, in TikTok's order: the Duet/Stitch (secondary) first, then its
    original (primary). Refuses anything that cannot be used."""
    refuse_unusable(post, policy, now, role="post")
    if original is None:
        if post.original_item_id is not None:
            raise OriginalPostCodeRequired(
                f"Post {post.item_id} is a Duet or Stitch of post {post.original_item_id}: send that post's code "
                "as `original_post_auth_code`.",
                original_item_id=post.original_item_id,
            )
        return Plan(code, post)
    original_code, other = original
    reordered = False
    if post.original_item_id is None and other.original_item_id == post.item_id:
        # Given the other way round: the original first, the Duet/Stitch second. Swap them.
        log.info("authorization.apply.pair_reordered", item_id=other.item_id, original_item_id=post.item_id)
        code, post, original_code, other = original_code, other, code, post
        reordered = True
        refuse_unusable(post, policy, now, role="post")
    if post.original_item_id is None:
        raise OriginalPostCodeUnexpected(
            f"Post {post.item_id} is not a Duet or Stitch, and post {other.item_id} is not one of it.",
        )
    if other.item_id != post.original_item_id:
        raise OriginalPostCodeMismatch(
            f"Post {post.item_id} was made from post {post.original_item_id}, but `original_post_auth_code` is for "
            f"post {other.item_id}.",
            original_item_id=post.original_item_id,
        )
    refuse_unusable(other, policy, now, role="original")
    return Plan(code, post, original_code, other, reordered=reordered)


# -- phase 3: claim the posts, recording the intent


async def _claim_when_free(
    sessions: Sessions, box: SecretBox, policy: Policy, advertiser: Advertiser, plan: Plan
) -> _Claim | Applied:
    """Claim the plan's posts, waiting (without holding a connection) while another request owns them."""
    loop = asyncio.get_running_loop()
    give_up_at = loop.time() + policy.wait_seconds
    pause = 0.02
    while True:
        claim = await _claim(sessions, box, policy, advertiser, plan)
        if claim is not None:
            return claim
        if loop.time() >= give_up_at:
            raise AuthorizationInProgress(
                f"Another request is applying a code for post {plan.post.item_id} to this ad account; "
                "try again shortly.",
                item_id=plan.post.item_id,
            )
        await asyncio.sleep(pause)
        pause = min(pause * 2, 0.5)


async def _claim(
    sessions: Sessions, box: SecretBox, policy: Policy, advertiser: Advertiser, plan: Plan
) -> _Claim | Applied | None:
    """One short transaction: the claim, the existing answer (a concurrent request applied it), or None (wait)."""
    now = clock.utcnow()
    async with sessions.begin() as session:
        await repository.lock_posts(session, advertiser_id=advertiser.id, item_ids=plan.item_ids)
        rows = await repository.get_for_posts(session, advertiser_id=advertiser.id, item_ids=plan.item_ids)
        main = rows.get(plan.post.item_id)
        original = rows.get(plan.original_post.item_id) if plan.original_post else None
        if main is not None and _is_applied_as_planned(main, original, plan, box, now):
            return Applied(main, created=False)
        if any(row.claimed_at(now) for row in rows.values()):
            return None
        unknown = [row.id for row in rows.values() if row.state == AuthorizationState.pending]
        created = main is None or main.state == AuthorizationState.pending
        holds_code = main is not None and main.auth_code_fingerprint in box.fingerprints(plan.code)
        claimed_until = now + timedelta(seconds=policy.claim_seconds)
        main = main or _pending(session, advertiser, plan.post, plan.code, box)
        main.claimed_until = claimed_until
        if plan.original_post is not None:
            assert plan.original_code is not None
            original = original or _pending(session, advertiser, plan.original_post, plan.original_code, box)
            original.claimed_until = claimed_until
            # Linked now, not at activation: if this request never gets there, `settle` activates both rows.
            main.original_authorization = original
        await session.flush()
        log.info("authorization.apply.claimed", item_ids=plan.item_ids, outcome_unknown=len(unknown))
        return _Claim(
            main.id, original.id if original else None, created=created, main_holds_code=holds_code, unknown=unknown
        )


def _is_applied_as_planned(
    main: Authorization, original: Authorization | None, plan: Plan, box: SecretBox, now: datetime
) -> bool:
    if main.status_at(now) is not AuthorizationStatus.active or main.auth_code_fingerprint not in box.fingerprints(
        plan.code
    ):
        return False
    if plan.original_post is None:
        return True
    # TikTok has just confirmed that the original's code is for this original post: the pair is what is bound.
    return (
        original is not None
        and main.original_authorization_id == original.id
        and original.status_at(now) is AuthorizationStatus.active
    )


def _pending(session: AsyncSession, advertiser: Advertiser, post: PostInfo, code: str, box: SecretBox) -> Authorization:
    row = Authorization(
        id=uuid.uuid4(), advertiser_id=advertiser.id, item_id=post.item_id, state=AuthorizationState.pending.value
    )
    fill_from_post(row, post)
    _set_code(row, code, box)
    session.add(row)
    return row


# -- phase 4: TikTok


async def _settle_unknown(
    sessions: Sessions,
    tiktok: TikTokClient,
    box: SecretBox,
    advertiser: Advertiser,
    token: str,
    claim: _Claim,
) -> dict[str, PostInfo]:
    """Settle the claimed rows whose outcome was unknown: those TikTok shows bound become active. Returns what
    TikTok showed bound, by post id."""
    if not claim.unknown:
        return {}
    async with sessions() as session:
        rows = await _rows(session, claim.unknown)
    bound: dict[str, PostInfo] = {}
    for row in rows:
        post = await tiktok.find_bound_post(
            advertiser_id=advertiser.tiktok_advertiser_id, access_token=token, item_id=row.item_id
        )
        if post is not None:
            bound[row.item_id] = post
    if bound:
        now = clock.utcnow()
        async with sessions.begin() as session:
            activated = []
            for row in await _rows(session, claim.unknown):
                if row.item_id in bound:
                    _activate_row(row, bound[row.item_id], box)
                    activated.append(row)
            await session.flush()
            await repository.refresh_pair_windows(session, claim.unknown)
            for row in activated:
                await session.refresh(row, attribute_names=["auth_start_at", "auth_end_at"])
                await authorization_changed(session, EventType.authorization_applied, row, now=now)
        log.info("authorization.apply.settled_from_tiktok", item_ids=sorted(bound))
    return bound


async def _authorize(tiktok: TikTokClient, advertiser: Advertiser, token: str, plan: Plan) -> PostInfo:
    """Apply the plan on TikTok; the post as it is now bound. TikTok refusing because the post is already
    bound (unconfirmed whether it does) is not a failure: what it has bound is read back."""
    try:
        await tiktok.authorize(
            advertiser_id=advertiser.tiktok_advertiser_id,
            access_token=token,
            auth_code=plan.code,
            original_post_auth_code=plan.original_code,
        )
    except TikTokRequestRejected as error:
        if error.refusal is not TikTokRefusal.already_authorized:
            raise
        bound = await tiktok.find_bound_post(
            advertiser_id=advertiser.tiktok_advertiser_id, access_token=token, item_id=plan.post.item_id
        )
        if bound is None:
            raise
        log.info("authorization.apply.already_bound", item_id=plan.post.item_id, tiktok_request_id=error.request_id)
        return bound
    return plan.post


async def _release(sessions: Sessions, claim: _Claim, *, forget: bool) -> None:
    """End the claim after a failure. `forget`: TikTok applied nothing, so pending rows go. Otherwise they stay
    pending, unclaimed, for the next apply or `settle` to settle by reading TikTok."""
    async with sessions.begin() as session:
        rows = await _rows(session, claim.ids)
        for row in rows:
            row.claimed_until = None
        if forget:
            await repository.delete_pending(session, [row.id for row in rows])
    log.info("authorization.apply.released", authorization_ids=[str(i) for i in claim.ids], forgotten=forget)


# -- phase 5: activate


async def _activate(
    sessions: Sessions,
    box: SecretBox,
    advertiser: Advertiser,
    claim: _Claim,
    plan: Plan,
    *,
    main_post: PostInfo,
) -> Applied:
    now = clock.utcnow()
    async with sessions.begin() as session:
        rows = {row.id: row for row in await _rows(session, claim.ids)}
        was = {row.id: row.state for row in rows.values()}
        main = rows[claim.main_id]
        _activate_row(main, main_post, box, code=plan.code)
        if claim.original_id is not None:
            assert plan.original_post is not None
            assert plan.original_code is not None
            _activate_row(rows[claim.original_id], plan.original_post, box, code=plan.original_code)
        for row in rows.values():
            row.claimed_until = None
        await session.flush()
        paired = await repository.refresh_pair_windows(session, claim.ids)
        for row in rows.values():
            if row.id in paired:  # set in SQL just now; any other row's window is as _activate_row set it
                await session.refresh(row, attribute_names=["auth_start_at", "auth_end_at"])
            applied = was[row.id] == AuthorizationState.pending or (row.id == claim.main_id and claim.created)
            await authorization_changed(
                session,
                EventType.authorization_applied if applied else EventType.authorization_renewed,
                row,
                now=now,
            )
    log.info(
        "authorization.applied",
        authorization_id=str(claim.main_id),
        original_authorization_id=str(claim.original_id) if claim.original_id else None,
        tiktok_advertiser_id=advertiser.tiktok_advertiser_id,
        item_id=plan.post.item_id,
        renewed=not claim.created,
    )
    return Applied(main, created=claim.created)


async def _rows(session: AsyncSession, ids: Iterable[uuid.UUID]) -> list[Authorization]:
    rows = []
    for authorization_id in ids:
        row = await repository.get(session, authorization_id)
        if row is None:
            raise RuntimeError(f"authorization {authorization_id} vanished while this request owned it")
        rows.append(row)
    return rows


def _activate_row(row: Authorization, post: PostInfo, box: SecretBox, *, code: str | None = None) -> None:
    """The row as TikTok shows the post bound, with the code that bound it (or the one it already holds)."""
    fill_from_post(row, post)
    if code is not None:
        _set_code(row, code, box)
    elif row.auth_code_fingerprint is None and row.auth_code_encrypted is not None:
        _set_code(row, box.decrypt(row.auth_code_encrypted), box)  # carried over from before pairs had two rows
    row.state = AuthorizationState.active.value
    # TikTok shows it bound as described: a revocation or a caption anomaly recorded before is over.
    row.revoked_at = None
    row.tiktok_caption = None
    row.caption_changed_at = None


def _set_code(row: Authorization, code: str, box: SecretBox) -> None:
    row.auth_code_encrypted = box.encrypt(code)
    row.auth_code_fingerprint = box.fingerprint(code)
    row.auth_code_hint = secret_hint(code)


def fill_from_post(row: Authorization, post: PostInfo) -> None:
    """The row as TikTok describes the post (the caption as authorized, D4; the window as reported, D3)."""
    row.item_type = post.item_type.value
    row.identity_type = post.identity_type or IdentityType.auth_code.value
    row.identity_id = post.identity_id
    row.tiktok_name = post.tiktok_name
    row.caption = post.caption
    row.duration_seconds = post.duration_seconds
    row.post_status = post.status.value
    row.origin_kind, row.original_item_id = (
        (OriginKind.duet.value, post.duet_original_item_id)
        if post.duet_original_item_id
        else (OriginKind.stitch.value, post.stitch_original_item_id)
        if post.stitch_original_item_id
        else (None, None)
    )
    row.code_start_at = post.auth_start_at
    row.code_end_at = post.auth_end_at
    # Usable in the code's window; a pair's is narrowed to what both codes cover once both rows are written.
    row.auth_start_at = post.auth_start_at
    row.auth_end_at = post.auth_end_at
    row.tiktok_auth_status = post.ad_auth_status


# -- settling rows later: `python -m app.cli settle`


@dataclass(slots=True)
class SettleReport:
    activated: int = 0  # an apply's outcome: TikTok shows the post bound, so the authorization is active
    forgotten: int = 0  # an apply's outcome: TikTok shows nothing bound, so the pending intent is dropped
    released: int = 0  # an active authorization whose renewal's outcome was unknown: TikTok's window kept
    unbound: int = 0  # an un-authorize's outcome: TikTok shows the post no longer bound
    still_bound: int = 0  # an un-authorize's outcome: TikTok still shows the post bound, so it stays active
    failed: int = 0  # TikTok could not be asked; left for the next run


async def settle(
    sessions: Sessions, tiktok: TikTokClient, box: SecretBox, policy: Policy, *, batch: int = 100
) -> SettleReport:
    """Settle every authorization whose outcome on TikTok is unknown, by reading what TikTok has bound.

    Safe at any time and on any number of replicas: each row is claimed like an apply claims it.
    """
    report = SettleReport()
    seen: set[uuid.UUID] = set()
    while True:
        async with sessions() as session:
            rows = [
                row
                for row in await repository.list_unsettled(session, now=clock.utcnow(), limit=batch + len(seen))
                if row.id not in seen
            ]
        if not rows:
            return report
        for row in rows:
            seen.add(row.id)
            await _settle_one(sessions, tiktok, box, policy, row, report)


async def _settle_one(
    sessions: Sessions, tiktok: TikTokClient, box: SecretBox, policy: Policy, row: Authorization, report: SettleReport
) -> None:
    now = clock.utcnow()
    async with sessions.begin() as session:
        await repository.lock_posts(session, advertiser_id=row.advertiser_id, item_ids=[row.item_id])
        current = await repository.get(session, row.id)
        if current is None or current.claimed_at(now):
            return  # settled or claimed by someone else meanwhile
        if current.state not in _UNSETTLED and current.claimed_until is None:
            return
        current.claimed_until = now + timedelta(seconds=policy.claim_seconds)
        advertiser = current.advertiser
    try:
        post = await tiktok.find_bound_post(
            advertiser_id=advertiser.tiktok_advertiser_id,
            access_token=box.decrypt(advertiser.access_token_encrypted),
            item_id=row.item_id,
        )
    except TikTokError as error:
        report.failed += 1
        log.warning("authorization.settle.failed", authorization_id=str(row.id), error=type(error).__name__)
        async with sessions.begin() as session:
            (current,) = await _rows(session, [row.id])
            current.claimed_until = None
        return
    async with sessions.begin() as session:
        (current,) = await _rows(session, [row.id])
        was = current.state
        current.claimed_until = None
        if was == AuthorizationState.unauthorizing:
            if post is None:
                current.state = AuthorizationState.unauthorized.value
                current.unauthorized_at = clock.utcnow()
                report.unbound += 1
            else:
                _activate_row(current, post, box)
                report.still_bound += 1
        elif post is not None:
            _activate_row(current, post, box)
            report.activated += was == AuthorizationState.pending
            report.released += was != AuthorizationState.pending
        elif was == AuthorizationState.pending:
            await repository.delete_pending(session, [current.id])
            report.forgotten += 1
        else:
            report.released += 1
        if post is not None:  # its window as TikTok shows it now: a pair's usable window follows
            await session.flush()
            await repository.refresh_pair_windows(session, [current.id])
            await session.refresh(current, attribute_names=["auth_start_at", "auth_end_at"])
        event = (
            EventType.authorization_unauthorized
            if current.state == AuthorizationState.unauthorized and was == AuthorizationState.unauthorizing
            else EventType.authorization_applied
            if post is not None and was == AuthorizationState.pending
            else None
        )
        if event is not None:
            await authorization_changed(session, event, current, now=clock.utcnow())
        if event is EventType.authorization_unauthorized:
            await record_if_deletion_became_safe(
                session, [item for item in (current.item_id, current.original_item_id) if item], now=clock.utcnow()
            )
    log.info(
        "authorization.settled",
        authorization_id=str(row.id),
        item_id=row.item_id,
        bound=post is not None,
        state_before=was,
    )
