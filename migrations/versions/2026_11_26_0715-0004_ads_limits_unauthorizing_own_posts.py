"""ads, spark ads limits, un-authorizing, own posts

Ads that use authorized posts (D6) and who uses how many: a counter per ad account (D10) and per identity, kept
with the links. Authorizations can be un-authorized (D16) and stay as history, so only one live authorization
per (ad account, post) is unique; own posts (D1) may carry a Business Center id.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26 07:15:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0004'
down_revision: str | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('identity_usage',
    sa.Column('identity_type', sa.String(length=16), nullable=False),
    sa.Column('identity_id', sa.Text(), nullable=False),
    sa.Column('ads_used', sa.Integer(), server_default=sa.text('0'), nullable=False),
    sa.CheckConstraint('ads_used >= 0', name=op.f('ck_identity_usage_ads_used')),
    sa.PrimaryKeyConstraint('identity_type', 'identity_id', name=op.f('pk_identity_usage'))
    )
    op.create_table('ads',
    sa.Column('ad_id', sa.Text(), nullable=False),
    sa.Column('authorization_id', sa.Uuid(), nullable=False),
    sa.Column('advertiser_id', sa.Uuid(), nullable=False),
    sa.Column('campaign_type', sa.String(length=16), nullable=False),
    sa.Column('only_show_as_ad', sa.Boolean(), nullable=False),
    sa.Column('ends_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('removed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint("(state = 'removed') = (removed_at IS NOT NULL)", name=op.f('ck_ads_removed_when')),
    sa.CheckConstraint("campaign_type IN ('STANDARD', 'SMART_PLUS')", name=op.f('ck_ads_campaign_type')),
    sa.CheckConstraint("state IN ('active', 'removed')", name=op.f('ck_ads_state')),
    sa.ForeignKeyConstraint(['advertiser_id'], ['advertisers.id'], name=op.f('fk_ads_advertiser_id_advertisers'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['authorization_id'], ['authorizations.id'], name=op.f('fk_ads_authorization_id_authorizations'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ads')),
    sa.UniqueConstraint('ad_id', name=op.f('uq_ads_ad_id'))
    )
    op.create_index(op.f('ix_ads_advertiser_id'), 'ads', ['advertiser_id'], unique=False)
    op.create_index(op.f('ix_ads_authorization_id_state_created_at_id'), 'ads', ['authorization_id', 'state', 'created_at', 'id'], unique=False)
    op.add_column('advertisers', sa.Column('spark_ads_limit', sa.Integer(), server_default=sa.text('10000'), nullable=False))
    op.add_column('advertisers', sa.Column('spark_ads_used', sa.Integer(), server_default=sa.text('0'), nullable=False))
    op.add_column('authorizations', sa.Column('unauthorized_at', sa.DateTime(timezone=True), nullable=True))
    op.add_column('authorizations', sa.Column('active_ads', sa.Integer(), server_default=sa.text('0'), nullable=False))
    op.add_column('authorizations', sa.Column('identity_authorized_bc_id', sa.Text(), nullable=True))
    op.drop_constraint(op.f('uq_authorizations_advertiser_id_item_id'), 'authorizations', type_='unique')
    op.create_index('uq_authorizations_live_post', 'authorizations', ['advertiser_id', 'item_id'], unique=True, postgresql_where=sa.text("state <> 'unauthorized'"))
    op.create_check_constraint(op.f('ck_advertisers_spark_ads_limit'), 'advertisers', 'spark_ads_limit >= 0')
    op.create_check_constraint(op.f('ck_advertisers_spark_ads_used'), 'advertisers', 'spark_ads_used >= 0')
    op.drop_constraint(op.f('ck_authorizations_state'), 'authorizations', type_='check')
    op.create_check_constraint(
        op.f('ck_authorizations_state'),
        'authorizations',
        "state IN ('pending', 'active', 'unauthorizing', 'unauthorized')",
    )
    op.create_check_constraint(op.f('ck_authorizations_active_ads'), 'authorizations', 'active_ads >= 0')
    # `settle` now also looks for unbinds whose outcome is unknown.
    op.drop_index('ix_authorizations_unsettled', table_name='authorizations')
    op.create_index(
        'ix_authorizations_unsettled',
        'authorizations',
        ['claimed_until'],
        postgresql_where=sa.text("state IN ('pending', 'unauthorizing') OR claimed_until IS NOT NULL"),
    )
    op.create_check_constraint(
        op.f('ck_authorizations_unauthorized_when'),
        'authorizations',
        "(state = 'unauthorized') = (unauthorized_at IS NOT NULL)",
    )


def downgrade() -> None:
    # Before this revision a post had one authorization per ad account and no un-authorized state: the
    # history of un-authorized ones goes, and an unbind whose outcome is unknown is taken as not done. The ads
    # go first: they hold on to their authorizations.
    op.drop_index(op.f('ix_ads_authorization_id_state_created_at_id'), table_name='ads')
    op.drop_index(op.f('ix_ads_advertiser_id'), table_name='ads')
    op.drop_table('ads')
    op.drop_table('identity_usage')
    op.execute("DELETE FROM authorizations WHERE state = 'unauthorized'")
    op.execute("UPDATE authorizations SET state = 'active' WHERE state = 'unauthorizing'")
    op.drop_index('ix_authorizations_unsettled', table_name='authorizations')
    op.create_index(
        'ix_authorizations_unsettled',
        'authorizations',
        ['claimed_until'],
        postgresql_where=sa.text("state = 'pending' OR claimed_until IS NOT NULL"),
    )
    op.drop_constraint(op.f('ck_authorizations_unauthorized_when'), 'authorizations', type_='check')
    op.drop_constraint(op.f('ck_authorizations_active_ads'), 'authorizations', type_='check')
    op.drop_constraint(op.f('ck_authorizations_state'), 'authorizations', type_='check')
    op.create_check_constraint(op.f('ck_authorizations_state'), 'authorizations', "state IN ('pending', 'active')")
    op.drop_constraint(op.f('ck_advertisers_spark_ads_used'), 'advertisers', type_='check')
    op.drop_constraint(op.f('ck_advertisers_spark_ads_limit'), 'advertisers', type_='check')
    op.drop_index('uq_authorizations_live_post', table_name='authorizations', postgresql_where=sa.text("state <> 'unauthorized'"))
    op.create_unique_constraint(op.f('uq_authorizations_advertiser_id_item_id'), 'authorizations', ['advertiser_id', 'item_id'], postgresql_nulls_not_distinct=False)
    op.drop_column('authorizations', 'identity_authorized_bc_id')
    op.drop_column('authorizations', 'active_ads')
    op.drop_column('authorizations', 'unauthorized_at')
    op.drop_column('advertisers', 'spark_ads_used')
    op.drop_column('advertisers', 'spark_ads_limit')
