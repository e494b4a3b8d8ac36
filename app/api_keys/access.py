"""What the calling API key may do: its scopes, and the ad accounts it may touch."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from app.api_keys.models import Scope


@dataclass(frozen=True, slots=True)
class Caller:
    api_key_id: uuid.UUID
    scopes: frozenset[str]
    # The TikTok ad account ids it may touch; None: every one (an admin key).
    advertiser_ids: frozenset[str] | None

    @property
    def is_admin(self) -> bool:
        return Scope.admin.value in self.scopes

    def has(self, scope: Scope) -> bool:
        """`admin` implies every scope."""
        return self.is_admin or scope.value in self.scopes

    def may_touch(self, tiktok_advertiser_id: str) -> bool:
        return self.advertiser_ids is None or tiktok_advertiser_id in self.advertiser_ids
