"""pair windows and the shared TikTok call budget

Each authorization keeps its code's own window (`code_start_at`, `code_end_at`) beside the window it is usable in
(`auth_start_at`, `auth_end_at`), which for a Duet/Stitch is the part both codes cover (D12). The budget of TikTok
calls per second that every replica shares is a row of recent call times (`call_turns`).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26 07:50:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "call_turns",
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("turns", postgresql.ARRAY(sa.DateTime(timezone=True)), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_call_turns")),
    )
    op.add_column("authorizations", sa.Column("code_start_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("authorizations", sa.Column("code_end_at", sa.DateTime(timezone=True), nullable=True))
    op.execute("UPDATE authorizations SET code_start_at = auth_start_at, code_end_at = auth_end_at")
    op.execute(
        """
        UPDATE authorizations AS pair
        SET auth_start_at = greatest(pair.code_start_at, original.code_start_at),
            auth_end_at = least(pair.code_end_at, original.code_end_at)
        FROM authorizations AS original
        WHERE pair.original_authorization_id = original.id
        """
    )


def downgrade() -> None:
    # Before this revision the window stored was the code's own.
    op.execute("UPDATE authorizations SET auth_start_at = code_start_at, auth_end_at = code_end_at")
    op.drop_column("authorizations", "code_end_at")
    op.drop_column("authorizations", "code_start_at")
    op.drop_table("call_turns")
