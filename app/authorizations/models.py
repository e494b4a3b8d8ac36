from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import CheckConstraint, Float, ForeignKey, Index, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.advertisers.models import Advertiser
from app.kit.db import Base, IdMixin, TimestampMixin


class IdentityType(StrEnum):
    """D1: a creator's code (Type 2), or the advertiser's own / Business Center TikTok account (Type 1)."""

    auth_code = "AUTH_CODE"
    tt_user = "TT_USER"
    bc_auth_tt = "BC_AUTH_TT"


class AuthorizationState(StrEnum):
    """What this service has done with the authorization. Expiry is not a state: it is read off the window (D3)."""

    active = "active"


class AuthorizationStatus(StrEnum):
    """What a caller sees: the state, with a window that has ended read as expired at once (D3)."""

    active = "active"
    expired = "expired"


class OriginKind(StrEnum):
    duet = "duet"
    stitch = "stitch"


class Authorization(IdMixin, TimestampMixin, Base):
    """D2: a post authorized to one ad account. Applying another code for the same post updates this row."""

    __tablename__ = "authorizations"
    __table_args__ = (
        UniqueConstraint("advertiser_id", "item_id"),
        Index(None, "advertiser_id", "auth_code_fingerprint"),
        Index(None, "advertiser_id", "created_at", "id"),
        Index(None, "item_id"),
        CheckConstraint("identity_type IN ('AUTH_CODE', 'TT_USER', 'BC_AUTH_TT')", name="identity_type"),
        CheckConstraint("state IN ('active')", name="state"),
        CheckConstraint("origin_kind IS NULL OR origin_kind IN ('duet', 'stitch')", name="origin_kind"),
        CheckConstraint(
            "identity_type <> 'AUTH_CODE' OR (auth_code_encrypted IS NOT NULL AND auth_code_fingerprint IS NOT NULL)",
            name="auth_code_has_code",
        ),
        CheckConstraint("(origin_kind IS NULL) = (original_item_id IS NULL)", name="origin_complete"),
    )

    advertiser_id: Mapped[uuid.UUID] = mapped_column(ForeignKey(Advertiser.id, ondelete="RESTRICT"))
    advertiser: Mapped[Advertiser] = relationship(lazy="raise")

    item_id: Mapped[str] = mapped_column(String(64))
    item_type: Mapped[str] = mapped_column(String(16))
    identity_type: Mapped[str] = mapped_column(String(16))
    identity_id: Mapped[str | None] = mapped_column(String(128))
    tiktok_name: Mapped[str | None] = mapped_column(String(256))
    caption: Mapped[str | None] = mapped_column(Text)  # as authorized (D4)
    duration_seconds: Mapped[float | None] = mapped_column(Float)
    post_status: Mapped[str] = mapped_column(String(32))
    origin_kind: Mapped[str | None] = mapped_column(String(8))
    original_item_id: Mapped[str | None] = mapped_column(String(64))

    # The code itself only encrypted; found again by a keyed fingerprint; shown only as a hint.
    auth_code_encrypted: Mapped[bytes | None] = mapped_column(LargeBinary)
    auth_code_fingerprint: Mapped[bytes | None] = mapped_column(LargeBinary(32))
    auth_code_hint: Mapped[str | None] = mapped_column(String(16))
    original_post_auth_code_encrypted: Mapped[bytes | None] = mapped_column(LargeBinary)

    # The window exactly as TikTok reported it (D3): never derived from a duration.
    auth_start_at: Mapped[datetime | None]
    auth_end_at: Mapped[datetime | None]
    tiktok_auth_status: Mapped[str | None] = mapped_column(String(32))

    state: Mapped[str] = mapped_column(String(16), default=AuthorizationState.active.value)

    def status_at(self, now: datetime) -> AuthorizationStatus:
        """D3: expired as soon as the end has passed, whether or not any job has run."""
        if self.auth_end_at is not None and self.auth_end_at <= now:
            return AuthorizationStatus.expired
        return AuthorizationStatus(self.state)
