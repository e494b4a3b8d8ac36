from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import CheckConstraint, ForeignKey, LargeBinary, String, Text, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Mapped, mapped_column

from app.kit.db import Base, IdMixin, TimestampMixin


class Scope(StrEnum):
    """What a key may do. `admin` manages keys and may touch every ad account; it implies the others."""

    read = "read"
    write = "write"
    admin = "admin"


class HashScheme(StrEnum):
    hmac = "hmac"  # HMAC-SHA256 under API_KEY_SECRET: every key made or used since keys were keyed
    sha256 = "sha256"  # a key made before, not used since: re-hashed under the secret the first time it is


class ApiKey(IdMixin, TimestampMixin, Base):
    """A caller's key. Only its keyed hash is stored; the key itself is shown once, when it is made."""

    __tablename__ = "api_keys"
    __table_args__ = (
        CheckConstraint("scopes <@ ARRAY['read', 'write', 'admin']::text[]", name="scopes"),
        CheckConstraint("hash_scheme IN ('hmac', 'sha256')", name="hash_scheme"),
    )

    name: Mapped[str] = mapped_column(String(200))
    key_hash: Mapped[bytes] = mapped_column(LargeBinary(32), unique=True)
    hash_scheme: Mapped[str] = mapped_column(String(8), default=HashScheme.hmac.value, server_default="hmac")
    scopes: Mapped[list[str]] = mapped_column(ARRAY(Text), server_default=text("ARRAY['read', 'write']::text[]"))
    created_by_api_key_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("api_keys.id", ondelete="SET NULL"))
    revoked_at: Mapped[datetime | None]

    @property
    def is_admin(self) -> bool:
        return Scope.admin.value in self.scopes


class ApiKeyGrant(Base):
    """A TikTok ad account a key that is not an admin key may touch (the account need not be registered yet)."""

    __tablename__ = "api_key_grants"

    api_key_id: Mapped[uuid.UUID] = mapped_column(ForeignKey(ApiKey.id, ondelete="CASCADE"), primary_key=True)
    tiktok_advertiser_id: Mapped[str] = mapped_column(String(32), primary_key=True)
