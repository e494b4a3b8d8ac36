"""A post seen across every ad account: its authorizations and ads, and whether it may be deleted (D7).

Each is read as of one moment, so the verdict is never `safe` while an ad or an authorization that blocks it was
committed before the answer's moment. The post (`view`) is read with the ORM's objects, which its answer is built
from, in one REPEATABLE READ transaction; the verdict (`verdict_view`) reads only what it decides on, in one
statement on a driver connection (one statement sees one snapshot).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Collection, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime

import structlog
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.ads import repository as ads_repository
from app.ads.models import Ad
from app.api_keys.access import Caller
from app.authorizations import repository as authorizations_repository
from app.authorizations.models import Authorization, AuthorizationState, AuthorizationStatus, status_of
from app.kit import clock
from app.kit.crypto import SecretBox
from app.kit.db import driver_connection
from app.posts.schemas import Action, AdAccountCheck, Blocker, BlockerKind, DeletionSafety, Relation
from app.reconcile import service as reconcile
from app.tiktok.client import TikTokClient
from app.tiktok.errors import TikTokError

log = structlog.get_logger(__name__)

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


@dataclass(frozen=True, slots=True)
class Binding:
    """An authorization of the post, or of a Duet/Stitch made from it, as the verdict sees it."""

    id: uuid.UUID
    item_id: str
    origin_kind: str | None
    state: str
    status: AuthorizationStatus  # at the verdict's moment
    advertiser_id: uuid.UUID
    tiktok_advertiser_id: str
    ads_reconciled_at: datetime | None


@dataclass(frozen=True, slots=True)
class VerdictView:
    item_id: str
    bindings: list[Binding]  # the post's own, then those of the Duets/Stitches made from it; each oldest first
    active_ads: dict[uuid.UUID, list[str]]  # TikTok ad ids of the active ads, by authorization id
    now: datetime

    @property
    def known(self) -> bool:
        return bool(self.bindings)


async def verdict_view(engine: AsyncEngine, *, item_id: str) -> VerdictView:
    """What the verdict is decided on, as of one moment: one statement on a driver connection, which reads the
    authorizations with their active ads in one snapshot (the verdict is polled before posts are deleted; it needs
    no ORM object, and no transaction's round trips)."""
    async with driver_connection(engine) as connection:
        now = clock.utcnow()
        rows = await authorizations_repository.read_bindings_of_post(connection, item_id)
    active_ads = {row["id"]: list(row["active_ad_ids"]) for row in rows if row["active_ad_ids"]}
    bindings = [
        Binding(
            id=row["id"],
            item_id=row["item_id"],
            origin_kind=row["origin_kind"],
            state=row["state"],
            status=status_of(row["state"], revoked_at=row["revoked_at"], auth_end_at=row["auth_end_at"], now=now),
            advertiser_id=row["advertiser_id"],
            tiktok_advertiser_id=row["tiktok_advertiser_id"],
            ads_reconciled_at=row["ads_reconciled_at"],
        )
        for row in rows
    ]
    # The post's own first, then the Duets/Stitches made from it, each oldest first (as the post's read lists them).
    own = [binding for binding in bindings if binding.item_id == item_id]
    pairs = [binding for binding in bindings if binding.item_id != item_id]
    return VerdictView(item_id=item_id, bindings=own + pairs, active_ads=active_ads, now=now)


async def confirm_ads(
    sessions: async_sessionmaker[AsyncSession],
    tiktok: TikTokClient,
    box: SecretBox,
    advertiser_ids: Iterable[uuid.UUID],
) -> set[uuid.UUID]:
    """Read the ads of these ad accounts from TikTok now (reconciliation's `reconcile_ads`: ads made outside the
    service are linked, ads deleted there removed); the ad accounts TikTok could not be asked about. Each call takes
    its turns from the shared rate budget, so a budget that runs out is a failure like TikTok's."""
    failed: set[uuid.UUID] = set()
    for advertiser_id in advertiser_ids:
        try:
            await reconcile.reconcile_ads(sessions, tiktok, box, advertiser_id, clock.utcnow())
        except TikTokError as error:
            log.warning(
                "posts.deletion_safety.unconfirmed", advertiser_id=str(advertiser_id), error=type(error).__name__
            )
            failed.add(advertiser_id)
    return failed


def visible_to(post: PostView, caller: Caller) -> PostView:
    """The post as this key may see it: only the ad accounts it may touch."""
    return PostView(
        item_id=post.item_id,
        authorizations=[row for row in post.authorizations if caller.may_touch(row.advertiser.tiktok_advertiser_id)],
        pairs=[row for row in post.pairs if caller.may_touch(row.advertiser.tiktok_advertiser_id)],
        ads=post.ads,
        now=post.now,
    )


def ad_accounts_concerned(post: VerdictView) -> list[uuid.UUID]:
    """The ad accounts (internal ids) where the post, or a Duet/Stitch made from it, is still bound: hidden ones
    too. Their ads are what a confirmed verdict reads from TikTok."""
    return sorted({row.advertiser_id for row in post.bindings if row.state != AuthorizationState.unauthorized})


def deletion_safety(
    post: VerdictView, caller: Caller, *, unconfirmed: Collection[uuid.UUID] | None = None
) -> DeletionSafety:
    """D7: safe only when no ad uses the post and no authorization binds it, or a Duet/Stitch made from it, in
    any ad account. The blockers are named in the ad accounts the key may see; the others are counted.

    `unconfirmed`: None when the ads were not confirmed with TikTok; else the ad accounts (internal ids) whose ads
    TikTok could not be asked about. Any one of them makes the answer not safe: an ad made outside the service
    there may be missed."""
    blockers: list[Blocker] = []
    hidden: set[str] = set()
    seen: dict[uuid.UUID, AdAccountCheck] = {}
    for row in post.bindings:
        if row.state == AuthorizationState.unauthorized:
            continue
        if not caller.may_touch(row.tiktok_advertiser_id):
            hidden.add(row.tiktok_advertiser_id)
            continue
        if row.advertiser_id not in seen:
            seen[row.advertiser_id] = AdAccountCheck(
                advertiser_id=row.tiktok_advertiser_id,
                ads_reconciled_at=row.ads_reconciled_at,
                confirmed=None if unconfirmed is None else row.advertiser_id not in unconfirmed,
            )
        # A row of another post is here because it is a Duet/Stitch made from this one: it has an origin kind.
        relation = Relation.post if row.item_id == post.item_id else Relation(str(row.origin_kind))
        common = {
            "advertiser_id": row.tiktok_advertiser_id,
            "authorization_id": row.id,
            "item_id": row.item_id,
            "relation": relation,
            "authorization_status": row.status,
        }
        for ad_id in post.active_ads.get(row.id, []):
            blockers.append(Blocker(kind=BlockerKind.ad, action=Action.remove_ad, ad_id=ad_id, **common))
        action = Action.settle if row.status in _UNKNOWN_OUTCOME else Action.unauthorize
        blockers.append(Blocker(kind=BlockerKind.authorization, action=action, ad_id=None, **common))
    failed = len(unconfirmed) if unconfirmed is not None else 0
    return DeletionSafety(
        item_id=post.item_id,
        known=post.known,
        safe=not blockers and not hidden and not failed,
        blockers=blockers,
        other_ad_accounts=len(hidden),
        checked_at=post.now,
        ad_accounts=sorted(seen.values(), key=lambda check: check.advertiser_id),
        confirmed=None if unconfirmed is None else not failed,
        unconfirmed_ad_accounts=failed,
    )
