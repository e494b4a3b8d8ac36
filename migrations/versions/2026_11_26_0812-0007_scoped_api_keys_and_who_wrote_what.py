"""scoped api keys and who wrote what

API keys get scopes (read, write, admin) and the ad accounts they may touch; their hashes become keyed (HMAC under
API_KEY_SECRET): keys made before keep their SHA-256, marked so, and are re-hashed the first time they are used.
Ad accounts, authorizations and ads record the API key that created and last changed them.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-26 08:12:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = '0007'
down_revision: str | None = '0006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('api_key_grants',
    sa.Column('api_key_id', sa.Uuid(), nullable=False),
    sa.Column('tiktok_advertiser_id', sa.String(length=32), nullable=False),
    sa.ForeignKeyConstraint(['api_key_id'], ['api_keys.id'], name=op.f('fk_api_key_grants_api_key_id_api_keys'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('api_key_id', 'tiktok_advertiser_id', name=op.f('pk_api_key_grants'))
    )
    op.add_column('ads', sa.Column('created_by_api_key_id', sa.Uuid(), nullable=True))
    op.add_column('ads', sa.Column('updated_by_api_key_id', sa.Uuid(), nullable=True))
    op.create_foreign_key(op.f('fk_ads_updated_by_api_key_id_api_keys'), 'ads', 'api_keys', ['updated_by_api_key_id'], ['id'], ondelete='SET NULL')
    op.create_foreign_key(op.f('fk_ads_created_by_api_key_id_api_keys'), 'ads', 'api_keys', ['created_by_api_key_id'], ['id'], ondelete='SET NULL')
    op.add_column('advertisers', sa.Column('created_by_api_key_id', sa.Uuid(), nullable=True))
    op.add_column('advertisers', sa.Column('updated_by_api_key_id', sa.Uuid(), nullable=True))
    op.create_foreign_key(op.f('fk_advertisers_created_by_api_key_id_api_keys'), 'advertisers', 'api_keys', ['created_by_api_key_id'], ['id'], ondelete='SET NULL')
    op.create_foreign_key(op.f('fk_advertisers_updated_by_api_key_id_api_keys'), 'advertisers', 'api_keys', ['updated_by_api_key_id'], ['id'], ondelete='SET NULL')
    op.add_column('api_keys', sa.Column('hash_scheme', sa.String(length=8), server_default='hmac', nullable=False))
    op.add_column('api_keys', sa.Column('scopes', postgresql.ARRAY(sa.Text()), server_default=sa.text("ARRAY['read', 'write']::text[]"), nullable=False))
    op.add_column('api_keys', sa.Column('created_by_api_key_id', sa.Uuid(), nullable=True))
    op.create_foreign_key(op.f('fk_api_keys_created_by_api_key_id_api_keys'), 'api_keys', 'api_keys', ['created_by_api_key_id'], ['id'], ondelete='SET NULL')
    op.create_check_constraint(
        op.f('ck_api_keys_scopes'), 'api_keys', "scopes <@ ARRAY['read', 'write', 'admin']::text[]"
    )
    op.create_check_constraint(op.f('ck_api_keys_hash_scheme'), 'api_keys', "hash_scheme IN ('hmac', 'sha256')")
    # Every key so far was made before keys were keyed. Admin keys may do everything; the others keep what they
    # could do: read and write every ad account registered now (an admin narrows them, or grants new ones).
    op.execute("UPDATE api_keys SET hash_scheme = 'sha256'")
    op.execute("UPDATE api_keys SET scopes = ARRAY['read', 'write', 'admin']::text[] WHERE is_admin")
    op.execute(
        "INSERT INTO api_key_grants (api_key_id, tiktok_advertiser_id) "
        "SELECT k.id, a.tiktok_advertiser_id FROM api_keys k CROSS JOIN advertisers a WHERE NOT k.is_admin"
    )
    op.drop_column('api_keys', 'is_admin')
    op.add_column('authorizations', sa.Column('created_by_api_key_id', sa.Uuid(), nullable=True))
    op.add_column('authorizations', sa.Column('updated_by_api_key_id', sa.Uuid(), nullable=True))
    op.create_foreign_key(op.f('fk_authorizations_updated_by_api_key_id_api_keys'), 'authorizations', 'api_keys', ['updated_by_api_key_id'], ['id'], ondelete='SET NULL')
    op.create_foreign_key(op.f('fk_authorizations_created_by_api_key_id_api_keys'), 'authorizations', 'api_keys', ['created_by_api_key_id'], ['id'], ondelete='SET NULL')


def downgrade() -> None:
    op.drop_constraint(op.f('fk_authorizations_created_by_api_key_id_api_keys'), 'authorizations', type_='foreignkey')
    op.drop_constraint(op.f('fk_authorizations_updated_by_api_key_id_api_keys'), 'authorizations', type_='foreignkey')
    op.drop_column('authorizations', 'updated_by_api_key_id')
    op.drop_column('authorizations', 'created_by_api_key_id')
    op.add_column('api_keys', sa.Column('is_admin', sa.BOOLEAN(), server_default=sa.text('false'), autoincrement=False, nullable=False))
    op.execute("UPDATE api_keys SET is_admin = 'admin' = ANY(scopes)")
    # Keys hashed under the secret cannot be read by the old code: they stop working (make them again).
    op.drop_constraint(op.f('ck_api_keys_hash_scheme'), 'api_keys', type_='check')
    op.drop_constraint(op.f('ck_api_keys_scopes'), 'api_keys', type_='check')
    op.drop_constraint(op.f('fk_api_keys_created_by_api_key_id_api_keys'), 'api_keys', type_='foreignkey')
    op.drop_column('api_keys', 'created_by_api_key_id')
    op.drop_column('api_keys', 'scopes')
    op.drop_column('api_keys', 'hash_scheme')
    op.drop_constraint(op.f('fk_advertisers_updated_by_api_key_id_api_keys'), 'advertisers', type_='foreignkey')
    op.drop_constraint(op.f('fk_advertisers_created_by_api_key_id_api_keys'), 'advertisers', type_='foreignkey')
    op.drop_column('advertisers', 'updated_by_api_key_id')
    op.drop_column('advertisers', 'created_by_api_key_id')
    op.drop_constraint(op.f('fk_ads_created_by_api_key_id_api_keys'), 'ads', type_='foreignkey')
    op.drop_constraint(op.f('fk_ads_updated_by_api_key_id_api_keys'), 'ads', type_='foreignkey')
    op.drop_column('ads', 'updated_by_api_key_id')
    op.drop_column('ads', 'created_by_api_key_id')
    op.drop_table('api_key_grants')
