"""Reconciliation with TikTok: what changed there without the service (D3, D4, D6, D8, D10).

The service learns most changes from its own callers, but some happen on TikTok only: a creator revokes or extends
a code, moderation bans a post, a creator deletes it or edits its caption, someone makes or deletes a Spark Ad in
Ads Manager. Reconciliation reads TikTok and records each such change, with its event:

- `reconcile_posts`: every page of `tt_video/list` for the ad account, compared with its live creators'
  authorizations (own posts are not in that list; `refresh_authorization` checks one with `identity/video/info`).
- `reconcile_ads`: the ad account's Spark Ads (`ad/get`), incrementally from the newest `modify_time` seen, or in
  full when none is recorded. Ads TikTok has and nobody linked are linked (`source: tiktok`, counted even past the
  limits); linked ads TikTok shows deleted are removed.
- `reconcile_advertiser`: both, recording a short error and when the ad account is next due.

TikTok is always read with no transaction open; the changes are then made in short transactions, one per
authorization (or ad), under its row lock, re-checked there: a row that changed after TikTok was read (an apply,
an un-authorize, a link) is left for the next pass rather than judged on stale news.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.ads import repository as ads_repository
from app.ads import service as ads_service
from app.ads.models import AdState
from app.advertisers.models import Advertiser
from app.api_keys.access import Caller
from app.authorizations import repository
from app.authorizations.events import authorization_changed
from app.authorizations.models import Authorization, AuthorizationState, IdentityType
from app.authorizations.service import visible
from app.events.models import EventType
from app.kit.crypto import SecretBox
from app.kit.tiktok_problems import to_problem
from app.reconcile import repository as reconcile_repository
from app.tiktok.client import TikTokClient
from app.tiktok.errors import TikTokError, TikTokRefusal, TikTokRequestRejected
from app.tiktok.models import PostInfo, PostStatus

log = structlog.get_logger(__name__)

Sessions = async_sessionmaker[AsyncSession]

PAGE_SIZE = 50  # tt_video/list's largest page
# ad/get's `modified_after` may be exclusive at whole seconds: ask from a second earlier (re-reading is harmless).
_MODIFIED_OVERLAP = timedelta(seconds=1)
# How far a picked ad account's due time is pushed while its job runs (the job sets the real next time).
PICK_HOLD = timedelta(minutes=10)
PICK_BATCH = 100
_ERROR_MAX = 300

_AUTHORIZED = "AUTHORIZED"
_EXPIRED = "EXPIRED"
_BANNED = frozenset({PostStatus.banned, PostStatus.removed})


@dataclass(slots=True)
class PostsReport:
    looked_at: int = 0
    revoked: int = 0
    renewed: int = 0
    banned: int = 0
    deleted: int = 0
    extended: int = 0
    caption_changed: int = 0
    skipped: int = 0  # changed by someone else while TikTok was read: left for the next pass


@dataclass(slots=True)
class AdsReport:
    full: bool = False
    read: int = 0
    linked: int = 0
    removed: int = 0


@dataclass(slots=True)
class Report:
    posts: PostsReport | None = None
    ads: AdsReport | None = None
    errors: list[str] = field(default_factory=list)

    @property
    def error(self) -> str | None:
        return "; ".join(self.errors)[:_ERROR_MAX] if self.errors else None


def describe_failure(step: str, error: TikTokError) -> str:
    """A short account of a TikTok failure, fit to store: the kind and TikTok's code, never a message (which
    could quote a request) nor a token."""
    code = f" (TikTok code {error.code})" if error.code is not None else ""
    return f"{step}: {type(error).__name__}{code}"


# -- comparing one authorization with what TikTok shows


@dataclass(slots=True)
class _Change:
    event: EventType
    details: dict[str, Any]


async def _ads_at_risk(session: AsyncSession, row: Authorization) -> list[str]:
    return [ad.ad_id for ad in await ads_repository.list_active(session, [row.id])]


def _window_ended(row: Authorization, post: PostInfo | None, now: datetime) -> bool:
    end = (post.auth_end_at if post is not None else None) or row.code_end_at or row.auth_end_at
    return end is not None and end <= now


async def observe(
    session: AsyncSession,
    row: Authorization,
    post: PostInfo | None,
    *,
    now: datetime,
    report: PostsReport | None = None,
) -> list[EventType]:
    """Bring a locked, active authorization in line with what TikTok shows of its post (`post`: as listed for the ad
    account, None when it is not listed), writing an event for each change; the events written.

    For an own post (no code, no window), `post` comes from `identity/video/info` and only its status and caption
    are compared. The caption as authorized stays in `caption` (D4); TikTok's current one goes in `tiktok_caption`.
    """
    report = report if report is not None else PostsReport()
    report.looked_at += 1
    row.tiktok_checked_at = now
    changes: list[_Change] = []
    has_code = row.identity_type == IdentityType.auth_code.value

    if has_code:
        auth_status = (post.ad_auth_status or "").upper() if post is not None else None
        gone = post is None or (auth_status not in (_AUTHORIZED, _EXPIRED, ""))
        if gone and not _window_ended(row, post, now):
            if row.revoked_at is None:
                row.revoked_at = now
                changes.append(_Change(EventType.authorization_revoked, {"ads_at_risk": None}))
                report.revoked += 1
        elif post is not None and auth_status == _AUTHORIZED and row.revoked_at is not None:
            # Authorized again outside the service (the creator renewed it on TikTok).
            row.revoked_at = None
            changes.append(_Change(EventType.authorization_renewed, {"renewed_outside": True}))
            report.renewed += 1

    if post is not None:
        if has_code:
            changes += await _window(session, row, post, report)
        changes += _status(row, post, report)
        changes += _caption(row, post, now, report)

    await session.flush()
    written = []
    for change in changes:
        details = dict(change.details)
        if "ads_at_risk" in details:
            details["ads_at_risk"] = await _ads_at_risk(session, row)
        await authorization_changed(session, change.event, row, now=now, **details)
        written.append(change.event)
    if written:
        log.info(
            "reconcile.authorization_changed",
            authorization_id=str(row.id),
            item_id=row.item_id,
            events=[event.value for event in written],
        )
    return written


async def _window(session: AsyncSession, row: Authorization, post: PostInfo, report: PostsReport) -> list[_Change]:
    """D3: the creator extended the window on TikTok: the code's window, and a pair's usable window, follow."""
    new_end = post.auth_end_at
    previous = row.code_end_at
    if new_end is None or (previous is not None and new_end <= previous):
        return []
    row.code_end_at = new_end
    if post.auth_start_at is not None:
        row.code_start_at = post.auth_start_at
    if row.original_authorization_id is None:
        row.auth_start_at, row.auth_end_at = row.code_start_at, row.code_end_at
    await session.flush()
    # A Duet/Stitch's usable window is the part both codes cover (D12), whichever of the two moved.
    await repository.refresh_pair_windows(session, [row.id])
    await session.refresh(row, attribute_names=["auth_start_at", "auth_end_at", "expired_at", "next_reminder_at"])
    report.extended += 1
    return [
        _Change(
            EventType.authorization_extended,
            {"previous_end_at": previous.isoformat() if previous else None, "end_at": new_end.isoformat()},
        )
    ]


def _status(row: Authorization, post: PostInfo, report: PostsReport) -> list[_Change]:
    """D8: a post banned or deleted since it was authorized; its ads are at risk."""
    new = post.status
    old = PostStatus.parse(row.post_status)
    if new is PostStatus.unknown or new is old:
        return []
    row.post_status = new.value
    details = {"previous_post_status": old.value, "post_status": new.value, "ads_at_risk": None}
    if new in _BANNED and old not in _BANNED:
        report.banned += 1
        return [_Change(EventType.authorization_post_banned, details)]
    if new is PostStatus.deleted and old is not PostStatus.deleted:
        report.deleted += 1
        return [_Change(EventType.authorization_post_deleted, details)]
    return []  # another change of status (made private, public again...): recorded, not news


def _caption(row: Authorization, post: PostInfo, now: datetime, report: PostsReport) -> list[_Change]:
    """D4: a caption cannot be edited after authorization, so one that differs is an anomaly worth telling."""
    new = post.caption
    if new is None:
        return []
    if new == row.caption:
        if row.tiktok_caption is None:
            return []
        shown = row.tiktok_caption
        row.tiktok_caption = None
        row.caption_changed_at = None
        report.caption_changed += 1
        return [_Change(EventType.authorization_caption_changed, {"previous_caption": shown, "caption": new})]
    if new == row.tiktok_caption:
        return []
    previous = row.tiktok_caption if row.tiktok_caption is not None else row.caption
    row.tiktok_caption = new
    row.caption_changed_at = now
    report.caption_changed += 1
    return [_Change(EventType.authorization_caption_changed, {"previous_caption": previous, "caption": new})]


# -- posts


async def read_all_posts(tiktok: TikTokClient, advertiser: Advertiser, token: str) -> dict[str, PostInfo]:
    """Every post `tt_video/list` shows authorized to the ad account, by post id."""
    posts: dict[str, PostInfo] = {}
    page_number = 1
    while True:
        page = await tiktok.list_posts(
            advertiser_id=advertiser.tiktok_advertiser_id, access_token=token, page=page_number, page_size=PAGE_SIZE
        )
        new = [post for post in page.posts if post.item_id not in posts]
        for post in page.posts:
            posts[post.item_id] = post
        # Counted here: a TikTok that ignored `page` cannot make this loop.
        if not new or page_number >= page.total_page:
            return posts
        page_number += 1


async def reconcile_posts(
    sessionmaker: Sessions, tiktok: TikTokClient, box: SecretBox, advertiser_id: uuid.UUID, now: datetime
) -> PostsReport:
    """Compare the ad account's live creators' authorizations with `tt_video/list`. TikTokError propagates."""
    report = PostsReport()
    async with sessionmaker() as session:
        advertiser = await session.get(Advertiser, advertiser_id)
        if advertiser is None:
            return report
        ids = await reconcile_repository.live_creator_authorization_ids(session, advertiser_id)
        read_from = await reconcile_repository.db_clock(session)
    token = box.decrypt(advertiser.access_token_encrypted)
    listed = await read_all_posts(tiktok, advertiser, token)
    for authorization_id in ids:
        async with sessionmaker.begin() as session:
            rows = await repository.lock_all(session, [authorization_id])
            if not rows:
                continue
            (row,) = rows
            if not _still_as_read(row, read_from, now):
                report.skipped += 1
                continue
            await observe(session, row, listed.get(row.item_id), now=now, report=report)
    async with sessionmaker.begin() as session:
        await reconcile_repository.record_posts_read(session, advertiser_id, now=now)
    log.info("reconcile.posts", advertiser_id=str(advertiser_id), listed=len(listed), **_fields(report))
    return report


def _still_as_read(row: Authorization, read_from: datetime, now: datetime) -> bool:
    """Whether TikTok's answer, read after `read_from`, may judge the row: still active, nobody deciding about it,
    and not changed since (a renewal or an un-authorize since then makes the answer stale)."""
    return (
        row.state == AuthorizationState.active.value
        and not row.claimed_at(now)
        and (row.updated_at is None or row.updated_at <= read_from)
    )


def _fields(report: Any) -> dict[str, Any]:
    return {name: getattr(report, name) for name in report.__slots__}


# -- ads


async def reconcile_ads(
    sessionmaker: Sessions, tiktok: TikTokClient, box: SecretBox, advertiser_id: uuid.UUID, now: datetime
) -> AdsReport:
    """Bring the ad account's ads in line with TikTok's Spark Ads (`ad/get`). TikTokError propagates."""
    report = AdsReport()
    async with sessionmaker() as session:
        advertiser = await session.get(Advertiser, advertiser_id)
        if advertiser is None:
            return report
        since = advertiser.ads_modified_after
        if since is not None and await reconcile_repository.tracks_new_posts(session, advertiser):
            # A post authorized since the last pass may have ads made before it (in Ads Manager, before its code
            # came here): those were modified before `since`, so only a full read finds them.
            since = None
    report.full = since is None
    token = box.decrypt(advertiser.access_token_encrypted)
    tiktok_id = advertiser.tiktok_advertiser_id
    modified_after = since - _MODIFIED_OVERLAP if since is not None else None
    live = await tiktok.spark_ads(advertiser_id=tiktok_id, access_token=token, modified_after=modified_after)
    # Removed only on TikTok's word that an ad is deleted, never because it is missing from the list: a linked ad
    # may be a Smart+ one (not in ad/get), or not carry its tiktok_item_id yet. A verdict that waits for proof
    # errs on the side of "not safe" (D7).
    deleted = await tiktok.spark_ads(
        advertiser_id=tiktok_id, access_token=token, deleted=True, modified_after=modified_after
    )
    report.read = len(live) + len(deleted)

    live_ids = {ad.ad_id for ad in live}
    deleted_ids = {ad.ad_id for ad in deleted if ad.ad_id not in live_ids}
    async with sessionmaker() as session:
        known = await reconcile_repository.known_ads(session, [*live_ids, *deleted_ids])
        authorizations = await reconcile_repository.live_by_post(
            session, advertiser_id, {ad.tiktok_item_id for ad in live}
        )

    for ad in live:
        authorization_id = authorizations.get(ad.tiktok_item_id or "")
        if ad.ad_id in known or authorization_id is None:
            continue
        async with sessionmaker.begin() as session:
            row = await repository.get_for_update(session, authorization_id)
            if row is None or row.state != AuthorizationState.active.value:
                continue
            if await ads_service.record_found_on_tiktok(session, authorization=row, ad_id=ad.ad_id, now=now):
                report.linked += 1

    for ad_id in sorted(deleted_ids):
        linked = known.get(ad_id)
        if linked is None or linked.advertiser_id != advertiser_id or linked.state != AdState.active.value:
            continue
        async with sessionmaker.begin() as session:
            # The authorization's row first, then the ad's: the order app/ads/service takes them in.
            row = await repository.get_for_update(session, linked.authorization_id)
            current = await ads_repository.get_by_ad_id(session, ad_id, for_update=True)
            if row is None or current is None or current.state != AdState.active.value:
                continue
            await ads_service.mark_removed(session, authorization=row, ad=current, now=now)
            report.removed += 1

    newest = max((ad.modified_at for ad in [*live, *deleted] if ad.modified_at is not None), default=None)
    async with sessionmaker.begin() as session:
        advertiser_row = await session.get(Advertiser, advertiser_id, with_for_update=True)
        if advertiser_row is not None:
            recorded = advertiser_row.ads_modified_after
            if newest is not None and (recorded is None or newest > recorded):
                advertiser_row.ads_modified_after = newest
            advertiser_row.ads_reconciled_at = now
    log.info("reconcile.ads", advertiser_id=str(advertiser_id), **_fields(report))
    return report


# -- an ad account, and which are due


async def reconcile_advertiser(
    sessionmaker: Sessions,
    tiktok: TikTokClient,
    box: SecretBox,
    advertiser_id: uuid.UUID,
    now: datetime,
    *,
    period_seconds: int,
) -> Report:
    """Posts, then ads; a TikTok failure in one does not stop the other. Records the failures (short, no secrets)
    and when the ad account is next due."""
    report = Report()
    try:
        report.posts = await reconcile_posts(sessionmaker, tiktok, box, advertiser_id, now)
    except TikTokError as error:
        report.errors.append(describe_failure("posts", error))
    try:
        report.ads = await reconcile_ads(sessionmaker, tiktok, box, advertiser_id, now)
    except TikTokError as error:
        report.errors.append(describe_failure("ads", error))
    async with sessionmaker.begin() as session:
        await reconcile_repository.record_pass(
            session, advertiser_id, error=report.error, due=now + timedelta(seconds=period_seconds)
        )
    if report.errors:
        log.warning("reconcile.failed", advertiser_id=str(advertiser_id), error=report.error)
    return report


async def pick_due(
    sessionmaker: Sessions, *, now: datetime, batch: int = PICK_BATCH, hold: timedelta = PICK_HOLD
) -> list[uuid.UUID]:
    """The ad accounts due for reconciliation, oldest due first, at most `batch`; each is pushed `hold` later in
    the same statement (rows taken `FOR UPDATE SKIP LOCKED`), so two ticks at once never pick one twice."""
    async with sessionmaker.begin() as session:
        return await reconcile_repository.pick_due(session, now=now, hold_until=now + hold, limit=batch)


# -- one authorization, now


async def refresh_authorization(
    sessionmaker: Sessions,
    tiktok: TikTokClient,
    box: SecretBox,
    *,
    authorization_id: uuid.UUID,
    caller: Caller,
    now: datetime,
) -> Authorization:
    """Ask TikTok about one authorization now and apply what it shows (the rules of `reconcile_posts`). Only an
    active authorization is compared: one being applied, un-authorized or un-authorizing is answered as it is.
    AuthorizationNotFound when the key may not touch it; TikTok's failures as their problems."""
    async with sessionmaker() as session:
        row = visible(await repository.get(session, authorization_id), authorization_id, caller)
        if row.state != AuthorizationState.active.value:
            return row
        advertiser = row.advertiser
        read_from = await reconcile_repository.db_clock(session)
    token = box.decrypt(advertiser.access_token_encrypted)
    try:
        post = await _read_one(tiktok, advertiser, token, row)
    except TikTokError as error:
        raise to_problem(error) from error
    async with sessionmaker.begin() as session:
        (current,) = await repository.lock_all(session, [authorization_id])
        if _still_as_read(current, read_from, now):
            # An own post TikTok no longer shows (None) is only marked as checked: nothing is inferred from it.
            await observe(session, current, post, now=now)
    async with sessionmaker() as session:
        refreshed = await repository.get(session, authorization_id)
        assert refreshed is not None
        return refreshed


async def _read_one(tiktok: TikTokClient, advertiser: Advertiser, token: str, row: Authorization) -> PostInfo | None:
    if row.identity_type == IdentityType.auth_code.value:
        return await tiktok.find_bound_post(
            advertiser_id=advertiser.tiktok_advertiser_id, access_token=token, item_id=row.item_id
        )
    assert row.identity_id is not None
    try:
        return await tiktok.own_post_info(
            advertiser_id=advertiser.tiktok_advertiser_id,
            access_token=token,
            identity_type=row.identity_type,
            identity_id=row.identity_id,
            item_id=row.item_id,
            identity_authorized_bc_id=row.identity_authorized_bc_id,
        )
    except TikTokRequestRejected as error:
        if error.refusal is TikTokRefusal.post_not_found_for_identity:
            return None  # not shown under the identity any more: nothing is inferred from it
        raise
