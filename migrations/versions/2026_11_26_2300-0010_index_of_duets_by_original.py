"""Find the Duets/Stitches made from a post by an index

What a post's deletion verdict and its read look for is `item_id = :post OR original_item_id = :post`: the
post's own authorizations and those of the Duets/Stitches made from it. `item_id` had an index, `original_item_id`
none, so each verdict read every authorization of every ad account. A partial index (only pairs have an original)
lets Postgres combine both indexes and read only the rows it returns.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-26 23:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_authorizations_original_item_id",
        "authorizations",
        ["original_item_id"],
        unique=False,
        postgresql_where=sa.text("original_item_id IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_authorizations_original_item_id", table_name="authorizations")
