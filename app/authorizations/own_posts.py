"""Own posts (D1): a post from the brand's own TikTok account (`TT_USER`, or `BC_AUTH_TT` through a Business
Center) needs no code and has no window. It is checked with TikTok (`identity/video/info`) and then tracked like
a creator's authorization: ads, limits, un-authorizing (a local change: there is nothing to unbind), the verdict.
Nothing changes on TikTok, so there is no pending phase: one short transaction once TikTok has answered.
"""

from __future__ import annotations

import uuid
from datetime import datetime

import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.advertisers import service as advertisers
from app.authorizations import repository
from app.authorizations.errors import OwnPostNotFound
from app.authorizations.intake import Applied, Policy, as_problem, fill_from_post, refuse_unusable
from app.authorizations.models import Authorization, AuthorizationState, IdentityType
from app.kit.crypto import SecretBox
from app.tiktok.client import TikTokClient
from app.tiktok.errors import TikTokError, TikTokRefusal, TikTokRequestRejected

log = structlog.get_logger(__name__)


async def register(
    sessions: async_sessionmaker[AsyncSession],
    tiktok: TikTokClient,
    box: SecretBox,
    policy: Policy,
    *,
    tiktok_advertiser_id: str,
    item_id: str,
    identity_type: IdentityType,
    identity_id: str,
    identity_authorized_bc_id: str | None,
    now: datetime,
) -> Applied:
    """Register an own post once TikTok shows it under that identity. The same post again is the same one."""
    async with sessions() as session:
        advertiser = await advertisers.get(session, tiktok_advertiser_id=tiktok_advertiser_id)
    try:
        post = await tiktok.own_post_info(
            advertiser_id=tiktok_advertiser_id,
            access_token=box.decrypt(advertiser.access_token_encrypted),
            identity_type=identity_type.value,
            identity_id=identity_id,
            item_id=item_id,
            identity_authorized_bc_id=identity_authorized_bc_id,
        )
    except TikTokRequestRejected as error:
        if error.refusal is TikTokRefusal.post_not_found_for_identity:
            raise OwnPostNotFound(
                f"TikTok shows no post {item_id} under {identity_type.value} identity {identity_id}.",
                item_id=item_id,
            ) from error
        raise as_problem(error) from error
    except TikTokError as error:
        raise as_problem(error) from error
    refuse_unusable(post, policy, now, role="post")

    async with sessions.begin() as session:
        await repository.lock_posts(session, advertiser_id=advertiser.id, item_ids=[item_id])
        existing = (await repository.get_for_posts(session, advertiser_id=advertiser.id, item_ids=[item_id])).get(
            item_id
        )
        if existing is not None:
            return Applied(existing, created=False)  # tracked already, as an own post or under a creator's code
        row = Authorization(
            id=uuid.uuid4(), advertiser_id=advertiser.id, item_id=item_id, state=AuthorizationState.active.value
        )
        fill_from_post(row, post)
        row.identity_type = identity_type.value
        row.identity_id = identity_id
        row.identity_authorized_bc_id = identity_authorized_bc_id
        session.add(row)
        await session.flush()
        created = await repository.get(session, row.id)
    assert created is not None
    log.info("authorization.own_post.registered", authorization_id=str(row.id), item_id=item_id)
    return Applied(created, created=True)
