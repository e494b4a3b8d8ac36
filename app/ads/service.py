"""Ads that use authorized posts (D6), and the limits on how many there may be (D10, and one identity's cap).

Every decision is taken under the lock that keeps it true at commit: the authorization's row (so a link and an
un-authorize of the same authorization are decided one after the other), then the ad account's counter and the
identity's counter, each moved by one conditional UPDATE. Locks are always taken in that order.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

import asyncpg
import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from app.ads import repository
from app.ads.errors import (
    AdLinkedElsewhere,
    AdNotFound,
    AdRemoved,
    AuthorizationNotActive,
    IdentityAdsLimitReached,
    SparkAdsLimitReached,
)
from app.ads.models import Ad, AdSource, AdState, CampaignType
from app.ads.schemas import AdRead, IdentityQuota, SparkAdsQuota
from app.advertisers import repository as advertisers
from app.advertisers import service as advertiser_accounts
from app.api_keys.access import Caller
from app.authorizations import repository as authorizations
from app.authorizations.models import Authorization
from app.authorizations.schemas import AuthorizationRead
from app.authorizations.service import visible
from app.events import service as events
from app.events.models import EventType
from app.kit.pagination import PageParams

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Linked:
    ad: Ad
    authorization: Authorization
    created: bool


async def _locked_authorization(session: AsyncSession, authorization_id: uuid.UUID, caller: Caller) -> Authorization:
    return visible(await authorizations.get_for_update(session, authorization_id), authorization_id, caller)


async def link(
    session: AsyncSession,
    *,
    authorization_id: uuid.UUID,
    ad_id: str,
    campaign_type: CampaignType,
    only_show_as_ad: bool,
    ends_at: datetime | None,
    now: datetime,
    identity_ads_limit: int,
    caller: Caller,
) -> Linked:
    """Record that a TikTok ad uses the authorization's post. The same ad again is the same link."""
    authorization = await _locked_authorization(session, authorization_id, caller)
    existing = await repository.get_by_ad_id(session, ad_id)
    if existing is not None:
        return _same_link(existing, authorization)
    if not authorization.usable_at(now):
        raise AuthorizationNotActive(
            f"Authorization {authorization.id} is {authorization.status_at(now).value} "
            f"(post status {authorization.post_status}): no new ad may use it.",
            authorization_status=authorization.status_at(now).value,
        )
    ad = await repository.insert_new(
        session,
        ad_id=ad_id,
        authorization_id=authorization.id,
        advertiser_id=authorization.advertiser_id,
        campaign_type=campaign_type.value,
        only_show_as_ad=only_show_as_ad,
        ends_at=ends_at,
    )
    if ad is None:  # linked by a concurrent request, to another authorization (this one is locked)
        existing = await repository.get_by_ad_id(session, ad_id)
        assert existing is not None
        return _same_link(existing, authorization)
    await _take_slots(session, authorization, identity_ads_limit=identity_ads_limit)
    authorization.active_ads += 1
    await session.flush()
    await _ad_changed(session, EventType.ad_linked, ad, authorization, now=now)
    log.info("ad.linked", ad_id=ad_id, authorization_id=str(authorization.id), campaign_type=campaign_type.value)
    return Linked(ad, authorization, created=True)


async def record_found_on_tiktok(
    session: AsyncSession, *, authorization: Authorization, ad_id: str, now: datetime
) -> Ad | None:
    """An ad TikTok shows using the authorization's post, which no caller linked: linked with `source: tiktok`.

    It exists whatever the limits say, so it is counted even past them (the counters then show the account over
    its limit, and nothing new links until ads go). `authorization` must be locked by the caller. None: the ad id
    is already linked (to this or another authorization).
    """
    ad = await repository.insert_new(
        session,
        ad_id=ad_id,
        authorization_id=authorization.id,
        advertiser_id=authorization.advertiser_id,
        campaign_type=CampaignType.standard.value,
        only_show_as_ad=False,
        ends_at=None,
        source=AdSource.tiktok,
    )
    if ad is None:
        return None
    await advertisers.count_spark_ad_anyway(session, authorization.advertiser_id)
    if authorization.identity_id is not None:
        await repository.count_identity_ad_anyway(
            session, identity_type=authorization.identity_type, identity_id=authorization.identity_id
        )
    authorization.active_ads += 1
    await session.flush()
    await _ad_changed(session, EventType.ad_linked, ad, authorization, now=now)
    log.info("ad.found_on_tiktok", ad_id=ad_id, authorization_id=str(authorization.id))
    return ad


async def _ad_changed(
    session: AsyncSession, event_type: EventType, ad: Ad, authorization: Authorization, *, now: datetime
) -> None:
    await events.record(
        session,
        event_type,
        advertiser_id=authorization.advertiser_id,
        tiktok_advertiser_id=authorization.advertiser.tiktok_advertiser_id,
        now=now,
        item_id=authorization.item_id,
        authorization_id=authorization.id,
        ad_id=ad.ad_id,
        data={
            "ad": AdRead.from_model(ad, authorization).model_dump(mode="json"),
            "authorization": AuthorizationRead.from_model(authorization, now).model_dump(mode="json"),
        },
    )


def _same_link(existing: Ad, authorization: Authorization) -> Linked:
    if existing.authorization_id != authorization.id:
        raise AdLinkedElsewhere(
            f"Ad {existing.ad_id} is linked to authorization {existing.authorization_id}.",
            authorization_id=str(existing.authorization_id),
        )
    if existing.state == AdState.removed:
        raise AdRemoved(f"Ad {existing.ad_id} was recorded as removed at {existing.removed_at}.")
    return Linked(existing, authorization, created=False)


async def _take_slots(session: AsyncSession, authorization: Authorization, *, identity_ads_limit: int) -> None:
    """One more ad for the ad account (D10) and for the post's identity, or the refusal; the transaction's
    rollback gives back whatever was taken before a refusal."""
    if await advertisers.take_spark_ad_slot(session, authorization.advertiser_id) is None:
        used, limit = await advertisers.spark_ads_usage(session, authorization.advertiser_id)
        raise SparkAdsLimitReached(
            f"The ad account uses {used} Spark Ads and its limit is {limit}.", used=used, limit=limit
        )
    if authorization.identity_id is None:
        return  # TikTok named no identity: there is nothing to count against
    taken = await repository.take_identity_slot(
        session,
        identity_type=authorization.identity_type,
        identity_id=authorization.identity_id,
        limit=identity_ads_limit,
    )
    if taken is None:
        identity = (authorization.identity_type, authorization.identity_id)
        used = (await repository.identity_usage(session, [identity]))[identity]
        raise IdentityAdsLimitReached(
            f"Identity {authorization.identity_id} is used by {used} active ads; the limit is {identity_ads_limit}.",
            identity_type=authorization.identity_type,
            identity_id=authorization.identity_id,
            used=used,
            limit=identity_ads_limit,
        )


async def remove(
    session: AsyncSession, *, authorization_id: uuid.UUID, ad_id: str, now: datetime, caller: Caller
) -> None:
    """Record that the ad was removed from Ads Manager; the link stays as history. Removing twice is harmless."""
    authorization = await _locked_authorization(session, authorization_id, caller)
    ad = await repository.get_by_ad_id(session, ad_id, for_update=True)
    if ad is None or ad.authorization_id != authorization.id:
        raise AdNotFound(f"Authorization {authorization_id} has no ad {ad_id}.")
    await mark_removed(session, authorization=authorization, ad=ad, now=now)


async def mark_removed(session: AsyncSession, *, authorization: Authorization, ad: Ad, now: datetime) -> None:
    """The ad was removed (a caller said so, or TikTok shows it deleted): its slots go back. Both rows locked by
    the caller; removing twice is harmless."""
    if ad.state == AdState.removed:
        return
    ad_id = ad.ad_id
    ad.state = AdState.removed.value
    ad.removed_at = now
    authorization.active_ads -= 1
    await advertisers.release_spark_ad_slot(session, authorization.advertiser_id)
    if authorization.identity_id is not None:
        await repository.release_identity_slot(
            session, identity_type=authorization.identity_type, identity_id=authorization.identity_id
        )
    await session.flush()
    await _ad_changed(session, EventType.ad_removed, ad, authorization, now=now)
    log.info("ad.removed", ad_id=ad_id, authorization_id=str(authorization.id))


async def get(
    session: AsyncSession, *, authorization_id: uuid.UUID, ad_id: str, caller: Caller
) -> tuple[Authorization, Ad]:
    """One ad of the authorization, removed or not."""
    authorization = visible(await authorizations.get(session, authorization_id), authorization_id, caller)
    ad = await repository.get_by_ad_id(session, ad_id)
    if ad is None or ad.authorization_id != authorization.id:
        raise AdNotFound(f"Authorization {authorization_id} has no ad {ad_id}.")
    return authorization, ad


async def list_page(
    session: AsyncSession, *, authorization_id: uuid.UUID, include_removed: bool, page: PageParams, caller: Caller
) -> tuple[Authorization, list[Ad], str | None]:
    """A page of the authorization's ads, newest first, and the cursor of the next page."""
    authorization = visible(await authorizations.get(session, authorization_id), authorization_id, caller)
    rows = await repository.list_page(
        session,
        authorization_id=authorization_id,
        include_removed=include_removed,
        after=page.cursor,
        limit=page.limit,
    )
    if len(rows) <= page.limit:
        return authorization, rows, None
    rows = rows[: page.limit]
    return authorization, rows, page.next_cursor(rows[-1].created_at, rows[-1].id)


async def quota(connection: asyncpg.Connection, *, tiktok_advertiser_id: str, identity_ads_limit: int) -> SparkAdsQuota:
    """What the ad account and its posts' identities use, against their limits: counters, not counts of ads.
    AdvertiserNotFound when it is not registered."""
    advertiser = await advertiser_accounts.read(connection, tiktok_advertiser_id=tiktok_advertiser_id)
    usage = await repository.identity_usage_of(connection, advertiser["id"])
    limit, used = advertiser["spark_ads_limit"], advertiser["spark_ads_used"]
    return SparkAdsQuota(
        advertiser_id=advertiser["tiktok_advertiser_id"],
        limit=limit,
        used=used,
        remaining=max(limit - used, 0),
        identities=[
            IdentityQuota(
                identity_type=identity_type,
                identity_id=identity_id,
                limit=identity_ads_limit,
                used=identity_used,
                remaining=max(identity_ads_limit - identity_used, 0),
            )
            for identity_type, identity_id, identity_used in usage
        ],
    )
