"""API key change notifications

Each replica keeps the API keys it authenticated recently in memory (app/api_keys/cache.py) for at most
API_KEY_CACHE_SECONDS. These triggers tell every replica at once when a key changes (revoked, scopes, grants
added or taken away, re-hashed) or when the tables are truncated: `pg_notify('spark_api_keys', <key id>)`, or
`'*'` for everything. Notifications are sent when the transaction commits, and never for one that rolls back.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-26 13:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        """
        CREATE FUNCTION api_keys_notify_change() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_LEVEL = 'STATEMENT' THEN
                PERFORM pg_notify('spark_api_keys', '*');
            ELSIF TG_OP = 'DELETE' THEN
                PERFORM pg_notify('spark_api_keys', to_jsonb(OLD) ->> TG_ARGV[0]);
            ELSE
                PERFORM pg_notify('spark_api_keys', to_jsonb(NEW) ->> TG_ARGV[0]);
            END IF;
            RETURN NULL;
        END
        $$
        """
    )
    op.execute(
        "CREATE TRIGGER api_keys_changed AFTER UPDATE OR DELETE ON api_keys "
        "FOR EACH ROW EXECUTE FUNCTION api_keys_notify_change('id')"
    )
    op.execute(
        "CREATE TRIGGER api_key_grants_changed AFTER INSERT OR UPDATE OR DELETE ON api_key_grants "
        "FOR EACH ROW EXECUTE FUNCTION api_keys_notify_change('api_key_id')"
    )
    for table in ("api_keys", "api_key_grants"):
        op.execute(
            f"CREATE TRIGGER {table}_truncated AFTER TRUNCATE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION api_keys_notify_change()"
        )


def downgrade() -> None:
    for table in ("api_keys", "api_key_grants"):
        op.execute(f"DROP TRIGGER {table}_truncated ON {table}")
    op.execute("DROP TRIGGER api_key_grants_changed ON api_key_grants")
    op.execute("DROP TRIGGER api_keys_changed ON api_keys")
    op.execute("DROP FUNCTION api_keys_notify_change()")
