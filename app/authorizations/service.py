"""Intake of creators' codes: read the post from TikTok, decide whether it can be used, apply it, store it."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from app.advertisers.models import Advertiser
from app.authorizations import repository
from app.authorizations.errors import (
    REFUSAL_BY_PROBLEM,
    AuthCodeExpired,
    AuthCodeInvalid,
    AuthorizationNotFound,
    CarouselDuetNotSupported,
    MentionsMultipleVideos,
    MultiLevelDuetStitch,
    OriginalPostCodeMismatch,
    OriginalPostCodeRequired,
    OriginalPostCodeUnexpected,
    PostBanned,
    PostDeleted,
    VideoTooLong,
)
from app.authorizations.models import Authorization, AuthorizationStatus, IdentityType, OriginKind
from app.kit.crypto import SecretBox, secret_hint
from app.kit.pagination import Cursor, PageParams
from app.tiktok.client import TikTokClient
from app.tiktok.errors import TikTokRequestRejected
from app.tiktok.models import ItemType, PostInfo, PostStatus
from app.tiktok.problems import tiktok_details, tiktok_failures_as_problems

log = structlog.get_logger(__name__)

# What TikTok's codes are made of (base64 and a few marks such as the leading '#'). Anything else, whitespace
# inside included, is refused before TikTok is asked.
_CODE_PATTERN = re.compile(r"[A-Za-z0-9#+/=_\-.~:]{8,512}")

_BANNED = frozenset({PostStatus.banned, PostStatus.removed})
_PRIVATE = frozenset({PostStatus.private, PostStatus.friends_only})


@dataclass(frozen=True, slots=True)
class Policy:
    max_video_duration_seconds: float


@dataclass(frozen=True, slots=True)
class Applied:
    authorization: Authorization
    created: bool


def _now() -> datetime:
    return datetime.now(UTC)


def _clean_code(raw: str, *, field: str) -> str:
    code = raw.strip()
    if not _CODE_PATTERN.fullmatch(code):
        raise AuthCodeInvalid(f"`{field}` is not in the form of a TikTok video code.", field=field)
    return code


def _refuse_unusable(post: PostInfo, policy: Policy, now: datetime, *, role: str) -> None:
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


@asynccontextmanager
async def _tiktok_call() -> AsyncIterator[None]:
    """TikTok's refusals of a code or post become ours; any other TikTok failure its matching problem."""
    async with tiktok_failures_as_problems():
        try:
            yield
        except TikTokRequestRejected as error:
            refusal = REFUSAL_BY_PROBLEM.get(error.problem) if error.problem else None
            if refusal is None:
                raise
            raise refusal(error.message, **tiktok_details(error)) from error


async def _read_post(tiktok: TikTokClient, advertiser: Advertiser, token: str, code: str) -> PostInfo:
    async with _tiktok_call():
        return await tiktok.post_info(advertiser_id=advertiser.tiktok_advertiser_id, access_token=token, auth_code=code)


async def _resolve_pair(
    tiktok: TikTokClient,
    advertiser: Advertiser,
    token: str,
    *,
    code: str,
    post: PostInfo,
    original_code: str | None,
    policy: Policy,
    now: datetime,
) -> tuple[str, PostInfo, str | None]:
    """D12: the (code, post, original post's code) to apply, in TikTok's order: secondary first, then primary."""
    if original_code is None:
        if post.original_item_id is not None:
            raise OriginalPostCodeRequired(
                f"Post {post.item_id} is a Duet or Stitch of post {post.original_item_id}: send that post's code "
                "as `original_post_auth_code`.",
                original_item_id=post.original_item_id,
            )
        return code, post, None
    other = await _read_post(tiktok, advertiser, token, original_code)
    if post.original_item_id is None and other.original_item_id == post.item_id:
        # Given the other way round: the original first, the Duet/Stitch second. Swap them.
        log.info("authorization.apply.pair_reordered", item_id=other.item_id, original_item_id=post.item_id)
        code, post, original_code, other = original_code, other, code, post
        _refuse_unusable(post, policy, now, role="post")
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
    _refuse_unusable(other, policy, now, role="original")
    return code, post, original_code


def _fill_from_post(authorization: Authorization, post: PostInfo) -> None:
    authorization.item_type = post.item_type.value
    authorization.identity_type = IdentityType.auth_code.value
    authorization.identity_id = post.identity_id
    authorization.tiktok_name = post.tiktok_name
    authorization.caption = post.caption
    authorization.duration_seconds = post.duration_seconds
    authorization.post_status = post.status.value
    if post.duet_original_item_id:
        authorization.origin_kind, authorization.original_item_id = (
            OriginKind.duet.value,
            post.duet_original_item_id,
        )
    elif post.stitch_original_item_id:
        authorization.origin_kind, authorization.original_item_id = (
            OriginKind.stitch.value,
            post.stitch_original_item_id,
        )
    else:
        authorization.origin_kind, authorization.original_item_id = None, None
    authorization.auth_start_at = post.auth_start_at
    authorization.auth_end_at = post.auth_end_at
    authorization.tiktok_auth_status = post.ad_auth_status


async def apply_code(
    session: AsyncSession,
    tiktok: TikTokClient,
    box: SecretBox,
    policy: Policy,
    *,
    advertiser: Advertiser,
    auth_code: str,
    original_post_auth_code: str | None = None,
) -> Applied:
    """Validate a creator's code against TikTok, apply it to the ad account and store the authorization (D2)."""
    code = _clean_code(auth_code, field="auth_code")
    original_code = (
        _clean_code(original_post_auth_code, field="original_post_auth_code") if original_post_auth_code else None
    )
    now = _now()

    # A retry of a code already applied here answers from what is stored, without asking TikTok again.
    known = await repository.find_by_code(session, advertiser_id=advertiser.id, fingerprints=box.fingerprints(code))
    if known is not None and known.status_at(now) is AuthorizationStatus.active:
        return Applied(known, created=False)

    token = box.decrypt(advertiser.access_token_encrypted)
    post = await _read_post(tiktok, advertiser, token, code)
    _refuse_unusable(post, policy, now, role="post")
    code, post, original_code = await _resolve_pair(
        tiktok, advertiser, token, code=code, post=post, original_code=original_code, policy=policy, now=now
    )

    await repository.lock_post(session, advertiser_id=advertiser.id, item_id=post.item_id)
    existing = await repository.get_for_post(session, advertiser_id=advertiser.id, item_id=post.item_id)
    fingerprint = box.fingerprint(code)
    if (
        existing is not None
        and existing.auth_code_fingerprint in box.fingerprints(code)
        and existing.status_at(now) is AuthorizationStatus.active
    ):
        return Applied(existing, created=False)  # a concurrent request applied this very code first

    async with _tiktok_call():
        await tiktok.authorize(
            advertiser_id=advertiser.tiktok_advertiser_id,
            access_token=token,
            auth_code=code,
            original_post_auth_code=original_code,
        )

    authorization = existing or Authorization(id=uuid.uuid4(), advertiser_id=advertiser.id, item_id=post.item_id)
    authorization.advertiser = advertiser
    _fill_from_post(authorization, post)
    authorization.auth_code_encrypted = box.encrypt(code)
    authorization.auth_code_fingerprint = fingerprint
    authorization.auth_code_hint = secret_hint(code)
    authorization.original_post_auth_code_encrypted = box.encrypt(original_code) if original_code else None
    if existing is None:
        session.add(authorization)
    await session.flush()
    log.info(
        "authorization.applied",
        authorization_id=str(authorization.id),
        tiktok_advertiser_id=advertiser.tiktok_advertiser_id,
        item_id=post.item_id,
        renewed=existing is not None,
    )
    return Applied(authorization, created=existing is None)


async def get(session: AsyncSession, *, authorization_id: uuid.UUID) -> Authorization:
    """The authorization, or AuthorizationNotFound."""
    authorization = await repository.get(session, authorization_id)
    if authorization is None:
        raise AuthorizationNotFound(f"Authorization {authorization_id} does not exist.")
    return authorization


async def list_for_advertiser(
    session: AsyncSession, *, advertiser: Advertiser, status: AuthorizationStatus | None, page: PageParams
) -> tuple[list[Authorization], str | None]:
    """A page of the ad account's authorizations, newest first, and the cursor of the next page."""
    rows = await repository.list_page(
        session, advertiser_id=advertiser.id, now=_now(), status=status, after=page.cursor, limit=page.limit
    )
    if len(rows) <= page.limit:
        return rows, None
    rows = rows[: page.limit]
    last = rows[-1]
    return rows, Cursor(last.created_at, last.id).encode()


def warnings_for(authorization: Authorization) -> list[tuple[str, str]]:
    """What a caller should know before using the post in an ad."""
    warnings = []
    if PostStatus.parse(authorization.post_status) in _PRIVATE:  # D5
        warnings.append(
            (
                "post_will_become_public",
                "The post is private: it becomes public while it runs as an ad unless the ad is set to "
                "'only show as ad' (dark_post_status ON).",
            )
        )
    return warnings
