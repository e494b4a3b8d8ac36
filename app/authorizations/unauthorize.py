"""Un-authorizing (D16): ending a post's binding to an ad account with `tt_video/unbind`, never under a running ad.

In phases, like intake (see `intake`): the decision and the intent (`unauthorizing`, claimed) in one short
transaction under the rows' locks; `unbind` with no connection held; the outcome in another short transaction.
A link racing an un-authorize of the same authorization is decided under the same row lock: whichever commits
first wins, and the other is refused (`ads_still_active`, or `authorization_not_active`).

A Duet/Stitch is one authorization on TikTok's side that binds two posts: un-authorizing it ends both bindings
(one `unbind` each), unless another Duet/Stitch still bound here needs the original. Un-authorizing the original
of a pair that is still bound is refused: un-authorize the pair.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.ads import repository as ads
from app.api_keys.access import Caller
from app.authorizations import repository
from app.authorizations.errors import (
    AdsStillActive,
    AuthorizationInProgress,
    PairStillBound,
)
from app.authorizations.events import authorizations_changed
from app.authorizations.intake import NOTHING_APPLIED, Policy, as_problem
from app.authorizations.models import Authorization, AuthorizationState, IdentityType
from app.authorizations.service import visible
from app.events.models import EventType
from app.kit import clock
from app.kit.crypto import SecretBox
from app.posts.events import record_if_deletion_became_safe
from app.tiktok.client import TikTokClient
from app.tiktok.errors import TikTokError, TikTokRequestRejected

log = structlog.get_logger(__name__)

Sessions = async_sessionmaker[AsyncSession]


async def unauthorize(
    sessions: Sessions,
    tiktok: TikTokClient,
    box: SecretBox,
    policy: Policy,
    *,
    authorization_id: uuid.UUID,
    now: datetime,
    caller: Caller,
) -> Authorization:
    """Un-authorize the post (and a pair's other post) from its ad account. Twice is the same result."""
    group = await _claim(sessions, policy, authorization_id=authorization_id, now=now, caller=caller)
    if group:
        outcomes = await _unbind(tiktok, box, group)
        await _record(sessions, outcomes)
        failures = [error for error in outcomes.values() if error is not None]
        if failures:
            raise as_problem(failures[0]) from failures[0]
    async with sessions() as session:
        authorization = await repository.get(session, authorization_id)
    assert authorization is not None
    return authorization


async def _claim(
    sessions: Sessions, policy: Policy, *, authorization_id: uuid.UUID, now: datetime, caller: Caller
) -> list[Authorization]:
    """Decide, under the rows' locks, and record the intent. Returns the rows to unbind (none: already done)."""
    async with sessions.begin() as session:
        row = visible(await repository.get(session, authorization_id), authorization_id, caller)
        if row.state == AuthorizationState.unauthorized:
            return []
        ids = [row.id]
        if row.original_authorization_id is not None:
            others = [
                pair.id
                for pair in await repository.live_pairs_made_from(session, row.original_authorization_id)
                if pair.id != row.id
            ]
            if not others:  # no other Duet/Stitch here still needs the original
                ids.append(row.original_authorization_id)
        group = await repository.lock_all(session, ids)
        group = [locked for locked in group if locked.state != AuthorizationState.unauthorized]
        if row.id not in {locked.id for locked in group}:
            return []  # un-authorized by a concurrent request while this one waited for the lock
        pairs = await repository.live_pairs_made_from(session, row.id)
        if pairs:
            raise PairStillBound(
                f"Post {row.item_id} is the original of a Duet or Stitch still authorized here.",
                authorization_ids=[str(pair.id) for pair in pairs],
            )
        if any(locked.claimed_at(now) or locked.state == AuthorizationState.pending for locked in group):
            raise AuthorizationInProgress(
                f"Post {row.item_id} is being applied or un-authorized by another request, or its last apply is "
                "not settled yet; try again shortly."
            )
        active = await ads.list_active(session, [locked.id for locked in group])
        if active:
            raise AdsStillActive(
                f"{len(active)} ad(s) still use the post in this ad account: remove them first (D16).",
                ads=[{"ad_id": ad.ad_id, "authorization_id": str(ad.authorization_id)} for ad in active],
            )
        claimed_until = clock.utcnow() + timedelta(seconds=policy.claim_seconds)
        for locked in group:
            locked.state = AuthorizationState.unauthorizing.value
            locked.claimed_until = claimed_until
    log.info("authorization.unauthorize.claimed", authorization_ids=[str(locked.id) for locked in group])
    return group


async def _unbind(
    tiktok: TikTokClient, box: SecretBox, group: list[Authorization]
) -> dict[uuid.UUID, TikTokError | None]:
    """`unbind` each post; None where the post is no longer bound. An own post (D1) has nothing to unbind."""
    outcomes: dict[uuid.UUID, TikTokError | None] = {}
    for row in group:
        if row.identity_type != IdentityType.auth_code:
            outcomes[row.id] = None
            continue
        advertiser_id = row.advertiser.tiktok_advertiser_id
        token = box.decrypt(row.advertiser.access_token_encrypted)
        try:
            await tiktok.unbind(advertiser_id=advertiser_id, access_token=token, item_id=row.item_id)
            outcomes[row.id] = None
        except TikTokRequestRejected as error:
            # TikTok may refuse to unbind what is not bound (which code it uses is unconfirmed): ask it.
            try:
                bound = await tiktok.find_bound_post(
                    advertiser_id=advertiser_id, access_token=token, item_id=row.item_id
                )
                still_bound = bound is not None
            except TikTokError:
                still_bound = True  # cannot tell: the refusal stands
            outcomes[row.id] = error if still_bound else None
        except TikTokError as error:
            outcomes[row.id] = error
    return outcomes


async def _record(sessions: Sessions, outcomes: dict[uuid.UUID, TikTokError | None]) -> None:
    """Unbound: un-authorized. TikTok did nothing: active again. Unknown (a timeout...): left `unauthorizing`,
    unclaimed, for the next attempt or `settle` to settle by reading TikTok."""
    now = clock.utcnow()
    async with sessions.begin() as session:
        unbound = []
        for row in await repository.lock_all(session, outcomes):
            error = outcomes[row.id]
            row.claimed_until = None
            if error is None:
                row.state = AuthorizationState.unauthorized.value
                row.unauthorized_at = now
                unbound.append(row)
            elif isinstance(error, NOTHING_APPLIED):
                row.state = AuthorizationState.active.value
        await session.flush()
        await authorizations_changed(session, EventType.authorization_unauthorized, unbound, now=now)
        await record_if_deletion_became_safe(
            session, [item for row in unbound for item in (row.item_id, row.original_item_id) if item], now=now
        )
    log.info(
        "authorization.unauthorize.recorded",
        unbound=[str(i) for i, error in outcomes.items() if error is None],
        failed=[str(i) for i, error in outcomes.items() if error is not None],
    )
