"""admin api keys: only admin keys manage keys

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 10:42:55.891985
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("api_keys", sa.Column("is_admin", sa.Boolean(), server_default=sa.text("false"), nullable=False))
    # Before this revision the only keys were BOOTSTRAP_API_KEY's, which is an admin key.
    op.execute("UPDATE api_keys SET is_admin = true WHERE name = 'bootstrap'")


def downgrade() -> None:
    op.drop_column("api_keys", "is_admin")
