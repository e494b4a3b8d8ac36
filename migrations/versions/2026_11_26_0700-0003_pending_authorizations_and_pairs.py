"""pending authorizations, both posts of a pair, text columns for what TikTok sends

Intake records a `pending` authorization before it calls TikTok's authorize, and a request claims a post
(`claimed_until`) while it decides about it. A Duet/Stitch becomes two rows: the original post gets its own
authorization, which the Duet/Stitch row points at, and holds the original's code (moved off the Duet's row).
TikTok's free-form values get text columns.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26 07:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Columns holding TikTok's own words, and their lengths before this revision.
_TEXT_COLUMNS = {"item_id": 64, "identity_id": 128, "tiktok_name": 256, "original_item_id": 64, "tiktok_auth_status": 32}


def upgrade() -> None:
    for column, length in _TEXT_COLUMNS.items():
        op.alter_column("authorizations", column, type_=sa.Text(), existing_type=sa.String(length=length))
    op.add_column("authorizations", sa.Column("original_authorization_id", sa.Uuid(), nullable=True))
    op.add_column("authorizations", sa.Column("claimed_until", sa.DateTime(timezone=True), nullable=True))
    op.create_foreign_key(
        op.f("fk_authorizations_original_authorization_id_authorizations"),
        "authorizations",
        "authorizations",
        ["original_authorization_id"],
        ["id"],
        ondelete="SET NULL",
    )
    op.drop_constraint(op.f("ck_authorizations_state"), "authorizations", type_="check")
    op.create_check_constraint(op.f("ck_authorizations_state"), "authorizations", "state IN ('pending', 'active')")
    op.drop_constraint(op.f("ck_authorizations_auth_code_has_code"), "authorizations", type_="check")
    op.create_check_constraint(
        op.f("ck_authorizations_auth_code_has_code"),
        "authorizations",
        "identity_type <> 'AUTH_CODE' OR auth_code_encrypted IS NOT NULL",
    )
    op.create_check_constraint(
        op.f("ck_authorizations_active_code_has_fingerprint"),
        "authorizations",
        "state = 'pending' OR identity_type <> 'AUTH_CODE' OR auth_code_fingerprint IS NOT NULL",
    )
    op.create_check_constraint(
        op.f("ck_authorizations_pair_has_origin"),
        "authorizations",
        "original_authorization_id IS NULL OR original_item_id IS NOT NULL",
    )

    # Pairs stored before this revision: the original post gets its row. Where the ad account has none yet, a
    # pending one with the original's code, which `python -m app.cli settle` completes from TikTok (creator,
    # window, and the code's fingerprint, which SQL cannot compute).
    op.execute(
        """
        INSERT INTO authorizations (id, advertiser_id, item_id, item_type, identity_type, post_status,
                                    auth_code_encrypted, state, created_at, updated_at)
        SELECT gen_random_uuid(), pair.advertiser_id, pair.original_item_id, 'VIDEO', 'AUTH_CODE', 'UNKNOWN',
               pair.original_post_auth_code_encrypted, 'pending', now(), now()
        FROM authorizations pair
        WHERE pair.original_post_auth_code_encrypted IS NOT NULL
          AND NOT EXISTS (SELECT 1 FROM authorizations original
                          WHERE original.advertiser_id = pair.advertiser_id
                            AND original.item_id = pair.original_item_id)
        ON CONFLICT DO NOTHING
        """
    )
    op.execute(
        """
        UPDATE authorizations pair SET original_authorization_id = original.id
        FROM authorizations original
        WHERE pair.original_item_id IS NOT NULL
          AND original.advertiser_id = pair.advertiser_id
          AND original.item_id = pair.original_item_id
        """
    )
    op.drop_column("authorizations", "original_post_auth_code_encrypted")
    op.create_index(
        "ix_authorizations_unsettled",
        "authorizations",
        ["claimed_until"],
        unique=False,
        postgresql_where=sa.text("state = 'pending' OR claimed_until IS NOT NULL"),
    )


def downgrade() -> None:
    # Before this revision there was no pending state: intents not yet settled are dropped (settle them with
    # `python -m app.cli settle` before downgrading). Original posts' rows stay, as plain authorizations.
    op.add_column("authorizations", sa.Column("original_post_auth_code_encrypted", sa.LargeBinary(), nullable=True))
    op.execute(
        """
        UPDATE authorizations pair SET original_post_auth_code_encrypted = original.auth_code_encrypted
        FROM authorizations original
        WHERE pair.original_authorization_id = original.id
        """
    )
    op.drop_index("ix_authorizations_unsettled", table_name="authorizations", postgresql_where=sa.text("state = 'pending' OR claimed_until IS NOT NULL"))
    op.execute("DELETE FROM authorizations WHERE state = 'pending'")
    op.drop_constraint(op.f("ck_authorizations_pair_has_origin"), "authorizations", type_="check")
    op.drop_constraint(op.f("ck_authorizations_active_code_has_fingerprint"), "authorizations", type_="check")
    op.drop_constraint(op.f("ck_authorizations_auth_code_has_code"), "authorizations", type_="check")
    op.create_check_constraint(
        op.f("ck_authorizations_auth_code_has_code"),
        "authorizations",
        "identity_type <> 'AUTH_CODE' OR (auth_code_encrypted IS NOT NULL AND auth_code_fingerprint IS NOT NULL)",
    )
    op.drop_constraint(op.f("ck_authorizations_state"), "authorizations", type_="check")
    op.create_check_constraint(op.f("ck_authorizations_state"), "authorizations", "state IN ('active')")
    op.drop_constraint(
        op.f("fk_authorizations_original_authorization_id_authorizations"), "authorizations", type_="foreignkey"
    )
    op.drop_column("authorizations", "claimed_until")
    op.drop_column("authorizations", "original_authorization_id")
    # Fails, rather than truncates, if TikTok sent something longer than the old columns held.
    for column, length in _TEXT_COLUMNS.items():
        op.alter_column("authorizations", column, type_=sa.String(length=length), existing_type=sa.Text())
