from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, Index, LargeBinary, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from app.kit.actor import WrittenByMixin
from app.kit.db import Base, IdMixin, TimestampMixin

DEFAULT_SPARK_ADS_LIMIT = 10_000  # TikTok's guide: an ad account can use up to 10,000 Spark Ads


class Advertiser(IdMixin, TimestampMixin, WrittenByMixin, Base):
    """A TikTok ad account the service acts for, with its access token (encrypted)."""

    __tablename__ = "advertisers"
    __table_args__ = (
        CheckConstraint("spark_ads_limit >= 0", name="spark_ads_limit"),
        CheckConstraint("spark_ads_used >= 0", name="spark_ads_used"),
        Index(None, "reconcile_due_at"),
    )

    tiktok_advertiser_id: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str | None] = mapped_column(String(200))
    access_token_encrypted: Mapped[bytes] = mapped_column(LargeBinary)

    # D10: how many Spark Ads this ad account may use, and how many it uses. `used` is a counter kept in the
    # transaction that links or removes an ad (never a count of rows), so the limit check is one conditional
    # UPDATE, exact under any concurrency. The limit may be set below `used`: nothing new links until ads go.
    spark_ads_limit: Mapped[int] = mapped_column(default=DEFAULT_SPARK_ADS_LIMIT, server_default=text("10000"))
    spark_ads_used: Mapped[int] = mapped_column(default=0, server_default=text("0"))

    # Reconciliation with TikTok (the worker, spread over RECONCILE_PERIOD_SECONDS): when it is next due, when the
    # posts (`tt_video/list`) and the ads (`ad/get`) were last read in full, the newest `modify_time` seen among
    # the ad account's ads (where the next incremental read of `ad/get` starts), and why the last pass failed.
    reconcile_due_at: Mapped[datetime] = mapped_column(server_default=text("now()"))
    posts_reconciled_at: Mapped[datetime | None]
    ads_reconciled_at: Mapped[datetime | None]
    ads_modified_after: Mapped[datetime | None]
    reconcile_error: Mapped[str | None] = mapped_column(Text)
