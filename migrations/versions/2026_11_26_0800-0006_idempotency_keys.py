"""idempotency keys: safe retries for every write

The first answer to each (caller, Idempotency-Key), kept for 24 hours and replayed to retries; `in_progress` while
its request runs. The caller is the SHA-256 of the API key, as `api_keys.key_hash` holds it.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26 08:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "idempotency_keys",
        sa.Column("caller", sa.LargeBinary(length=32), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("fingerprint", sa.LargeBinary(length=32), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("status", sa.SmallInteger(), nullable=True),
        sa.Column("headers", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("body", sa.LargeBinary(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("state IN ('in_progress', 'done')", name=op.f("ck_idempotency_keys_state")),
        sa.CheckConstraint(
            "(state = 'done') = (status IS NOT NULL AND headers IS NOT NULL AND body IS NOT NULL)",
            name=op.f("ck_idempotency_keys_answer_when_done"),
        ),
        sa.CheckConstraint("key ~ '^[!-~]{1,255}$'", name=op.f("ck_idempotency_keys_key_form")),
        sa.PrimaryKeyConstraint("caller", "key", name=op.f("pk_idempotency_keys")),
    )
    op.create_index(
        op.f("ix_idempotency_keys_caller_expires_at"), "idempotency_keys", ["caller", "expires_at"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_idempotency_keys_caller_expires_at"), table_name="idempotency_keys")
    op.drop_table("idempotency_keys")
