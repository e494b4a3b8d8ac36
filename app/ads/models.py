from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.advertisers.models import Advertiser
from app.authorizations.models import Authorization
from app.kit.actor import WrittenByMixin
from app.kit.db import Base, IdMixin, TimestampMixin


class CampaignType(StrEnum):
    """D15: Smart+ campaigns have their own set-up flow; each ad records which kind it is."""

    standard = "STANDARD"
    smart_plus = "SMART_PLUS"


class AdSource(StrEnum):
    """Who told the service about the ad."""

    caller = "caller"  # a calling system linked it (linkAd)
    tiktok = "tiktok"  # reconciliation found it on TikTok (`ad/get`): made outside the service


class AdState(StrEnum):
    active = "active"
    removed = "removed"  # removed from Ads Manager; kept as history (D6)


class Ad(IdMixin, TimestampMixin, WrittenByMixin, Base):
    """A TikTok ad that uses an authorized post (D6). Removing it keeps the row, as history."""

    __tablename__ = "ads"
    __table_args__ = (
        Index(None, "authorization_id", "state", "created_at", "id"),
        Index(None, "advertiser_id"),
        CheckConstraint("campaign_type IN ('STANDARD', 'SMART_PLUS')", name="campaign_type"),
        CheckConstraint("state IN ('active', 'removed')", name="state"),
        CheckConstraint("source IN ('caller', 'tiktok')", name="source"),
        CheckConstraint("(state = 'removed') = (removed_at IS NOT NULL)", name="removed_when"),
    )

    # TikTok's ad id: one ad, one post, for ever (TikTok never gives an id to another ad).
    ad_id: Mapped[str] = mapped_column(Text, unique=True)
    authorization_id: Mapped[uuid.UUID] = mapped_column(ForeignKey(Authorization.id, ondelete="RESTRICT"))
    authorization: Mapped[Authorization] = relationship(lazy="raise")
    advertiser_id: Mapped[uuid.UUID] = mapped_column(ForeignKey(Advertiser.id, ondelete="RESTRICT"))
    campaign_type: Mapped[str] = mapped_column(String(16))
    only_show_as_ad: Mapped[bool]  # D5: dark_post_status ON
    ends_at: Mapped[datetime | None]
    state: Mapped[str] = mapped_column(String(16), default=AdState.active.value)
    removed_at: Mapped[datetime | None]
    source: Mapped[str] = mapped_column(String(8), default=AdSource.caller.value, server_default=text("'caller'"))


class IdentityUsage(Base):
    """How many active ads use one identity (a creator, or the brand's own account), across every ad account
    the service knows: TikTok caps an identity at 10,000 ads. A counter, like the ad account's."""

    __tablename__ = "identity_usage"
    __table_args__ = (CheckConstraint("ads_used >= 0", name="ads_used"),)

    identity_type: Mapped[str] = mapped_column(String(16), primary_key=True)
    identity_id: Mapped[str] = mapped_column(Text, primary_key=True)
    ads_used: Mapped[int] = mapped_column(default=0, server_default=text("0"))
