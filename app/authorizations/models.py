from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import (
    CheckConstraint,
    ColumnElement,
    Float,
    ForeignKey,
    Index,
    LargeBinary,
    String,
    Text,
    and_,
    case,
    text,
)
from sqlalchemy.ext.hybrid import hybrid_method
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.advertisers.models import Advertiser
from app.kit.actor import WrittenByMixin
from app.kit.db import Base, IdMixin, TimestampMixin
from app.tiktok.models import IdentityType, PostStatus

__all__ = ["Authorization", "AuthorizationState", "AuthorizationStatus", "IdentityType", "OriginKind"]


class AuthorizationState(StrEnum):
    """What this service has done with the authorization. Expiry is not a state: it is read off the window (D3)."""

    # Recorded before TikTok's authorize is called: the post may or may not be bound on TikTok. Settled by the
    # request that recorded it, or later by reading TikTok (the next apply of the post, `app.cli settle`).
    pending = "pending"
    active = "active"
    # TikTok's unbind was sent and its outcome is not known yet: settled the same way.
    unauthorizing = "unauthorizing"
    # Unbound (D16): history. The post may be authorized again, as a new authorization.
    unauthorized = "unauthorized"


class AuthorizationStatus(StrEnum):
    """What a caller sees: the state, with a window that has ended read as expired at once (D3)."""

    pending = "pending"
    active = "active"
    expired = "expired"
    # Active here, but TikTok no longer has it: the creator revoked the code. Applying a new code revives it.
    revoked = "revoked"
    unauthorizing = "unauthorizing"
    unauthorized = "unauthorized"


class OriginKind(StrEnum):
    duet = "duet"
    stitch = "stitch"


class Authorization(IdMixin, TimestampMixin, WrittenByMixin, Base):
    """D2: a post authorized to one ad account. Applying another code for the same post updates this row.

    A Duet or Stitch is two rows, one per post TikTok binds (D12): the Duet/Stitch itself, with the secondary
    creator's code, and the original post, with the primary creator's code, which the first points at.
    """

    __tablename__ = "authorizations"
    __table_args__ = (
        # One live authorization per (ad account, post); un-authorized ones stay beside it as history.
        Index(
            "uq_authorizations_live_post",
            "advertiser_id",
            "item_id",
            unique=True,
            postgresql_where=text("state <> 'unauthorized'"),
        ),
        Index(None, "advertiser_id", "auth_code_fingerprint"),
        Index(None, "advertiser_id", "created_at", "id"),
        Index(None, "item_id"),
        # With the one above, what a post's verdict and read look for: its own rows, and its Duets'/Stitches'.
        Index(
            "ix_authorizations_original_item_id",
            "original_item_id",
            postgresql_where=text("original_item_id IS NOT NULL"),
        ),
        # What `settle` looks for: rows whose outcome on TikTok is not known yet.
        Index(
            "ix_authorizations_unsettled",
            "claimed_until",
            postgresql_where=text("state IN ('pending', 'unauthorizing') OR claimed_until IS NOT NULL"),
        ),
        CheckConstraint("identity_type IN ('AUTH_CODE', 'TT_USER', 'BC_AUTH_TT')", name="identity_type"),
        CheckConstraint("state IN ('pending', 'active', 'unauthorizing', 'unauthorized')", name="state"),
        CheckConstraint("active_ads >= 0", name="active_ads"),
        CheckConstraint("(state = 'unauthorized') = (unauthorized_at IS NOT NULL)", name="unauthorized_when"),
        CheckConstraint("origin_kind IS NULL OR origin_kind IN ('duet', 'stitch')", name="origin_kind"),
        CheckConstraint("identity_type <> 'AUTH_CODE' OR auth_code_encrypted IS NOT NULL", name="auth_code_has_code"),
        # Only a pending row may lack its fingerprint (one carried over from before pairs had two rows).
        CheckConstraint(
            "state = 'pending' OR identity_type <> 'AUTH_CODE' OR auth_code_fingerprint IS NOT NULL",
            name="active_code_has_fingerprint",
        ),
        CheckConstraint("(origin_kind IS NULL) = (original_item_id IS NULL)", name="origin_complete"),
        CheckConstraint("original_authorization_id IS NULL OR original_item_id IS NOT NULL", name="pair_has_origin"),
        # What the worker's sweep reads (D3): windows that have not been recorded as ended yet, and reminders due.
        # Both stay small however many authorizations there are, so the sweep costs what is due, not the table.
        Index(
            "ix_authorizations_expiry", "auth_end_at", postgresql_where=text("state = 'active' AND expired_at IS NULL")
        ),
        Index("ix_authorizations_reminders", "next_reminder_at", postgresql_where=text("next_reminder_at IS NOT NULL")),
    )

    advertiser_id: Mapped[uuid.UUID] = mapped_column(ForeignKey(Advertiser.id, ondelete="RESTRICT"))
    advertiser: Mapped[Advertiser] = relationship(lazy="raise")

    # Text for everything TikTok says in its own words: no length TikTok might send is refused by a column.
    item_id: Mapped[str] = mapped_column(Text)
    item_type: Mapped[str] = mapped_column(String(16))  # VIDEO or CAROUSEL: the adapter refuses anything else
    identity_type: Mapped[str] = mapped_column(String(16))
    identity_id: Mapped[str | None] = mapped_column(Text)
    tiktok_name: Mapped[str | None] = mapped_column(Text)
    caption: Mapped[str | None] = mapped_column(Text)  # as authorized (D4)
    duration_seconds: Mapped[float | None] = mapped_column(Float)
    post_status: Mapped[str] = mapped_column(String(32))  # folded to a known value or UNKNOWN by the adapter
    origin_kind: Mapped[str | None] = mapped_column(String(8))
    original_item_id: Mapped[str | None] = mapped_column(Text)
    # The original post's own authorization, for a Duet or Stitch (D12).
    original_authorization_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("authorizations.id", ondelete="SET NULL")
    )
    original_authorization: Mapped[Authorization | None] = relationship(remote_side="Authorization.id", lazy="raise")

    # The code itself only encrypted; found again by a keyed fingerprint; shown only as a hint.
    auth_code_encrypted: Mapped[bytes | None] = mapped_column(LargeBinary)
    auth_code_fingerprint: Mapped[bytes | None] = mapped_column(LargeBinary(32))
    auth_code_hint: Mapped[str | None] = mapped_column(String(16))

    # The code's window exactly as TikTok reported it (D3): never derived from a duration.
    code_start_at: Mapped[datetime | None]
    code_end_at: Mapped[datetime | None]
    # The window the post is usable in: the code's, or for a Duet/Stitch the part both codes cover (D12). What
    # expiry reads (D3). Kept by `repository.refresh_pair_windows` whenever either code's window changes.
    auth_start_at: Mapped[datetime | None]
    auth_end_at: Mapped[datetime | None]
    tiktok_auth_status: Mapped[str | None] = mapped_column(Text)

    state: Mapped[str] = mapped_column(String(16), default=AuthorizationState.active.value)
    unauthorized_at: Mapped[datetime | None]
    # D6: ads linked and not removed, kept in the transactions that link and remove them.
    active_ads: Mapped[int] = mapped_column(default=0, server_default=text("0"))
    # D1: the Business Center an own post's BC_AUTH_TT identity is authorized through.
    identity_authorized_bc_id: Mapped[str | None] = mapped_column(Text)
    # While set and in the future, one request owns the decision about this post: it is calling TikTok's
    # authorize or unbind. Expired, the owner died mid-way and the row is settled by reading TikTok.
    claimed_until: Mapped[datetime | None]

    # What the worker and reconciliation have recorded (each change also written as an event).
    # When the worker recorded the end of the window (authorization.expired); cleared when the window moves.
    expired_at: Mapped[datetime | None]
    # When reminders (authorization.expiring) must be looked at again, and the shortest lead already reminded of
    # for the current window. A trigger resets both whenever the window's end changes (migration 0008).
    next_reminder_at: Mapped[datetime | None]
    reminded_lead_seconds: Mapped[int | None]
    # TikTok no longer has the post authorized to the ad account, and this service did not unbind it: the creator
    # revoked the code (D8's sibling). Cleared when a code for the post is applied again.
    revoked_at: Mapped[datetime | None]
    # D4: the caption as TikTok shows it now, when it differs from the caption as authorized (kept in `caption`).
    tiktok_caption: Mapped[str | None] = mapped_column(Text)
    caption_changed_at: Mapped[datetime | None]
    # When TikTok was last asked about this authorization (reconciliation or refresh).
    tiktok_checked_at: Mapped[datetime | None]

    def _status_at(self, now: datetime) -> AuthorizationStatus:
        return status_of(self.state, revoked_at=self.revoked_at, auth_end_at=self.auth_end_at, now=now)

    def _status_at_sql(cls, now: datetime) -> ColumnElement[str]:
        # The same rule as `_status_at`, as SQL, so that a filter by status agrees with what each row reads as.
        # Called on the class: the columns are read off `Authorization`, which is what `cls` is.
        table = Authorization
        active = table.state == AuthorizationState.active.value
        revoked = and_(active, table.revoked_at.is_not(None))
        ended = and_(active, table.auth_end_at.is_not(None), table.auth_end_at <= now)
        return case(
            (revoked, AuthorizationStatus.revoked.value), (ended, AuthorizationStatus.expired.value), else_=table.state
        )

    # D3: an active authorization is expired as soon as its window's end has passed, whether or not any job has
    # run; every other state reads as itself. One rule, read in Python on a row and as SQL in a filter:
    # `Authorization.status_at(now) == "active"`.
    status_at = hybrid_method(_status_at, _status_at_sql)  # type: ignore[arg-type]

    def claimed_at(self, now: datetime) -> bool:
        """Whether a request is deciding about this post right now."""
        return self.claimed_until is not None and self.claimed_until > now

    def usable_at(self, now: datetime) -> bool:
        """Whether a new ad may use the post (D6, D8): active, in its window, and the post not gone or banned."""
        return self.status_at(now) is AuthorizationStatus.active and PostStatus.parse(self.post_status) not in _GONE

    def is_private(self) -> bool:
        """D5: a private post becomes public while it runs as an ad, unless the ad only shows as an ad."""
        return PostStatus.parse(self.post_status) in _PRIVATE


_PRIVATE = frozenset({PostStatus.private, PostStatus.friends_only})
_GONE = frozenset({PostStatus.deleted, PostStatus.banned, PostStatus.removed})


# Rules on the columns alone, so that an answer is the same whether it is built from the ORM's object or from a row
# read on the driver's connection (schemas.AuthorizationRead.from_row).


def status_of(
    state: str, *, revoked_at: datetime | None, auth_end_at: datetime | None, now: datetime
) -> AuthorizationStatus:
    """D3: an active authorization reads as expired once its window has ended; revoked once TikTok no longer
    has it; every other state as itself."""
    if state == AuthorizationState.active and revoked_at is not None:
        return AuthorizationStatus.revoked
    if state == AuthorizationState.active and auth_end_at is not None and auth_end_at <= now:
        return AuthorizationStatus.expired
    return AuthorizationStatus(state)


def warnings_of(post_status: str) -> list[tuple[str, str]]:
    """(reason, detail) pairs a caller should know before using the post in an ad."""
    if PostStatus.parse(post_status) in _PRIVATE:  # D5
        return [
            (
                "post_will_become_public",
                "The post is private: it becomes public while it runs as an ad unless the ad is set to "
                "'only show as ad' (dark_post_status ON).",
            )
        ]
    return []


# What an authorization's read is made of: its own columns, its ad account's TikTok id, and, for a Duet/Stitch, its
# original post's authorization's columns (prefixed `original_`). `repository.read_one` selects
# exactly these; `schemas.AuthorizationRead.from_row` reads them.
READ_COLUMNS = (
    "id",
    "item_id",
    "item_type",
    "identity_type",
    "identity_id",
    "tiktok_name",
    "caption",
    "duration_seconds",
    "post_status",
    "origin_kind",
    "original_item_id",
    "original_authorization_id",
    "auth_start_at",
    "auth_end_at",
    "code_start_at",
    "code_end_at",
    "tiktok_auth_status",
    "state",
    "auth_code_hint",
    "active_ads",
    "unauthorized_at",
    "revoked_at",
    "tiktok_caption",
    "caption_changed_at",
    "tiktok_checked_at",
    "created_by_api_key_id",
    "updated_by_api_key_id",
    "created_at",
    "updated_at",
)
ORIGINAL_READ_COLUMNS = ("code_start_at", "code_end_at", "identity_type", "identity_id", "tiktok_name")
