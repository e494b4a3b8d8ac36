"""A post seen across every ad account: its authorizations and ads, and whether it may be deleted (D7).

Read in one REPEATABLE READ transaction: every query sees the same snapshot, so the verdict is never `safe`
while an ad or an authorization that blocks it was committed before the answer's moment.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.ads import repository as ads_repository
from app.ads.models import Ad, AdState
from app.api_keys.access import Caller
from app.authorizations import repository as authorizations_repository
from app.authorizations.models import Authorization, AuthorizationState, AuthorizationStatus
from app.kit import clock
from app.posts.schemas import Action, Blocker, BlockerKind, DeletionSafety, Relation

_UNKNOWN_OUTCOME = frozenset({AuthorizationStatus.pending, AuthorizationStatus.unauthorizing})


@dataclass(frozen=True, slots=True)
class PostView:
    item_id: str
    authorizations: list[Authorization]  # of the post itself
    pairs: list[Authorization]  # of Duets/Stitches made from it
    ads: dict[uuid.UUID, list[Ad]]  # by authorization id
    now: datetime

    @property
    def known(self) -> bool:
        return bool(self.authorizations or self.pairs)


@asynccontextmanager
async def _snapshot(sessions: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    async with sessions() as session:
        await session.connection(execution_options={"isolation_level": "REPEATABLE READ", "postgresql_readonly": True})
        yield session


async def view(sessions: async_sessionmaker[AsyncSession], *, item_id: str) -> PostView:
    """The post's authorizations, its Duets'/Stitches', and all their ads, as of one moment."""
    async with _snapshot(sessions) as session:
        now = clock.utcnow()
        rows = await authorizations_repository.of_post(session, item_id)
        ads = await ads_repository.list_for_authorizations(session, [row.id for row in rows])
    by_authorization: dict[uuid.UUID, list[Ad]] = {}
    for ad in ads:
        by_authorization.setdefault(ad.authorization_id, []).append(ad)
    return PostView(
        item_id=item_id,
        authorizations=[row for row in rows if row.item_id == item_id],
        pairs=[row for row in rows if row.item_id != item_id],
        ads=by_authorization,
        now=now,
    )


def visible_to(post: PostView, caller: Caller) -> PostView:
    """The post as this key may see it: only the ad accounts it may touch."""
    return PostView(
        item_id=post.item_id,
        authorizations=[row for row in post.authorizations if caller.may_touch(row.advertiser.tiktok_advertiser_id)],
        pairs=[row for row in post.pairs if caller.may_touch(row.advertiser.tiktok_advertiser_id)],
        ads=post.ads,
        now=post.now,
    )


def deletion_safety(post: PostView, caller: Caller) -> DeletionSafety:
    """D7: safe only when no ad uses the post and no authorization binds it, or a Duet/Stitch made from it, in
    any ad account. The blockers are named in the ad accounts the key may see; the others are counted."""
    blockers: list[Blocker] = []
    hidden: set[str] = set()
    for row in post.authorizations + post.pairs:
        if row.state == AuthorizationState.unauthorized:
            continue
        if not caller.may_touch(row.advertiser.tiktok_advertiser_id):
            hidden.add(row.advertiser.tiktok_advertiser_id)
            continue
        status = row.status_at(post.now)
        # A row of another post is here because it is a Duet/Stitch made from this one: it has an origin kind.
        relation = Relation.post if row.item_id == post.item_id else Relation(str(row.origin_kind))
        common = {
            "advertiser_id": row.advertiser.tiktok_advertiser_id,
            "authorization_id": row.id,
            "item_id": row.item_id,
            "relation": relation,
            "authorization_status": status,
        }
        for ad in post.ads.get(row.id, []):
            if ad.state == AdState.active:
                blockers.append(Blocker(kind=BlockerKind.ad, action=Action.remove_ad, ad_id=ad.ad_id, **common))
        action = Action.settle if status in _UNKNOWN_OUTCOME else Action.unauthorize
        blockers.append(Blocker(kind=BlockerKind.authorization, action=action, ad_id=None, **common))
    return DeletionSafety(
        item_id=post.item_id,
        known=post.known,
        safe=not blockers and not hidden,
        blockers=blockers,
        other_ad_accounts=len(hidden),
        checked_at=post.now,
    )
