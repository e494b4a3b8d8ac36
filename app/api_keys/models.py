from __future__ import annotations

from datetime import datetime

from sqlalchemy import LargeBinary, String, false
from sqlalchemy.orm import Mapped, mapped_column

from app.kit.db import Base, IdMixin, TimestampMixin


class ApiKey(IdMixin, TimestampMixin, Base):
    """A caller's key. Only its SHA-256 is stored; the key itself is shown once, when it is made."""

    __tablename__ = "api_keys"

    name: Mapped[str] = mapped_column(String(200))
    key_hash: Mapped[bytes] = mapped_column(LargeBinary(32), unique=True)
    # Admin keys manage keys; every key may use the rest of /v1. BOOTSTRAP_API_KEY is an admin key.
    is_admin: Mapped[bool] = mapped_column(default=False, server_default=false())
    revoked_at: Mapped[datetime | None]
