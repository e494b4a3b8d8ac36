from __future__ import annotations

from sqlalchemy import LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from app.kit.db import Base, IdMixin, TimestampMixin


class Advertiser(IdMixin, TimestampMixin, Base):
    """A TikTok ad account the service acts for, with its access token (encrypted)."""

    __tablename__ = "advertisers"

    tiktok_advertiser_id: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str | None] = mapped_column(String(200))
    access_token_encrypted: Mapped[bytes] = mapped_column(LargeBinary)
