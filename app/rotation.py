"""Re-encrypting every stored secret under the first key of ENCRYPTION_KEYS, so that older keys can be retired:
`python -m app.cli rotate-secrets`.

What is stored under a key: advertisers' access tokens (`access_token_encrypted`), creators' codes
(`auth_code_encrypted`) with their keyed fingerprints (`auth_code_fingerprint`), and webhook subscriptions' signing
secrets (`secret_encrypted`). A value needs rewriting when the first key alone does not decrypt it (Fernet tokens do
not name their key: trying the first key is one HMAC check), or when its fingerprint is not the first key's. It is
then re-encrypted with `MultiFernet.rotate` (the same clear text and Fernet timestamp) and its fingerprint made
again under the first key. A fingerprint that is NULL (a pending row carried over from before pairs had two rows)
stays NULL: the rotation changes keys, never what a row says. The hint is not keyed, and the clear text does not
change, so it is left as it is; so is every other column, `updated_at` included: nothing a caller sees changes.

Safe while the service runs, on any number of replicas:

- Rows are read in primary-key order, a batch at a time (keyset pagination, `id > last id seen`), and every
  statement is a transaction of its own (autocommit): no transaction is held across a batch, and no lock is
  held while waiting for another, so the service is never held up for longer than one row's UPDATE.
- Each row is written by a conditional UPDATE (`WHERE id = :id AND <value> = :value read`, and the fingerprint
  as read): a value the service wrote after it was read (a renewal storing a new code, a reconnect storing a new
  token) is never overwritten. That row is read again and judged by what it holds now (the service writes under
  the first key, so it is usually current already); a row deleted meanwhile is no longer counted.
- Idempotent and resumable: a second run finds every value current and writes nothing; a run stopped half-way
  and started again rewrites only what the first did not reach.

A value no configured key decrypts is counted as unreadable, with its row id, and left as it is.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

from sqlalchemy import ColumnElement, Row, Table, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.advertisers.models import Advertiser
from app.authorizations.models import Authorization
from app.kit.crypto import DecryptionFailed, SecretBox
from app.webhooks.models import WebhookSubscription

DEFAULT_BATCH_SIZE = 500
# How many times one row is read again because the service changed it between the read and the write. Each
# time means the service committed a new value to that very row meanwhile: never more than once or twice.
_MAX_ATTEMPTS_PER_ROW = 20


@dataclass(frozen=True, slots=True)
class SecretColumn:
    """A column of encrypted values, and the column of their keyed fingerprints, if it has one."""

    table: Table
    value: str
    fingerprint: str | None = None

    @property
    def name(self) -> str:
        return self.table.name


SECRET_COLUMNS = (
    SecretColumn(cast(Table, Advertiser.__table__), "access_token_encrypted"),
    SecretColumn(cast(Table, Authorization.__table__), "auth_code_encrypted", fingerprint="auth_code_fingerprint"),
    SecretColumn(cast(Table, WebhookSubscription.__table__), "secret_encrypted"),
)


@dataclass(slots=True)
class TableReport:
    """What a run did to one table's values. `seen` = `reencrypted` + `current` + `unreadable`."""

    table: str
    has_fingerprints: bool
    seen: int = 0
    reencrypted: int = 0  # rewritten under the first key (value, and fingerprint when the row has one)
    current: int = 0  # already under the first key, fingerprint included
    fingerprints_remade: int = 0  # of the re-encrypted, those whose fingerprint was made again
    unreadable_ids: list[uuid.UUID] = field(default_factory=list)

    @property
    def unreadable(self) -> int:
        return len(self.unreadable_ids)


@dataclass(slots=True)
class RotationReport:
    tables: list[TableReport]

    @property
    def unreadable(self) -> int:
        return sum(table.unreadable for table in self.tables)

    def lines(self) -> list[str]:
        """The report as printed: a line per table, the ids of unreadable rows, and the outcome. No secret."""
        lines = []
        for table in self.tables:
            line = (
                f"{table.table}: {table.seen} seen, {table.reencrypted} re-encrypted, {table.current} already "
                f"current, {table.unreadable} unreadable"
            )
            if table.has_fingerprints:
                line += f", {table.fingerprints_remade} fingerprints re-made"
            lines.append(line)
        for table in self.tables:
            if table.unreadable_ids:
                lines.append(f"{table.table} unreadable: {', '.join(str(row_id) for row_id in table.unreadable_ids)}")
        if self.unreadable:
            lines.append(
                f"incomplete: {self.unreadable} stored value(s) decrypt under no key in ENCRYPTION_KEYS (ids above); "
                "every other one is under the first key"
            )
        else:
            lines.append("done: every stored code and token is under the first key in ENCRYPTION_KEYS")
        return lines


# Called after each batch with the table's report so far and the number of rows in the batch (a progress bar).
OnBatch = Callable[[TableReport, int], None]


async def count_secrets(engine: AsyncEngine) -> int:
    """How many values a run will look at (for a progress bar): one count per table."""
    total = 0
    async with engine.connect() as connection:
        for column in SECRET_COLUMNS:
            query = select(func.count()).select_from(column.table).where(column.table.c[column.value].is_not(None))
            total += (await connection.execute(query)).scalar_one()
    return total


async def rotate_secrets(
    engine: AsyncEngine,
    box: SecretBox,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    on_batch: OnBatch | None = None,
) -> RotationReport:
    """Every stored value re-encrypted under `box`'s first key, with its fingerprint; see the module's doc."""
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    report = RotationReport([TableReport(column.name, column.fingerprint is not None) for column in SECRET_COLUMNS])
    async with engine.connect() as connection:
        # Every statement commits on its own: no transaction outlives a statement.
        connection = await connection.execution_options(isolation_level="AUTOCOMMIT")
        for column, table_report in zip(SECRET_COLUMNS, report.tables, strict=True):
            after: uuid.UUID | None = None
            while True:
                rows = await _read_batch(connection, column, after=after, limit=batch_size)
                for row in rows:
                    await _rotate_row(connection, column, box, row, table_report)
                if rows:
                    after = rows[-1].id
                    if on_batch is not None:
                        on_batch(table_report, len(rows))
                if len(rows) < batch_size:
                    break
    return report


async def _read_batch(
    connection: AsyncConnection, column: SecretColumn, *, after: uuid.UUID | None, limit: int
) -> list[Row[Any]]:
    query = select(*_read_columns(column)).where(column.table.c[column.value].is_not(None))
    if after is not None:
        query = query.where(column.table.c.id > after)
    result = await connection.execute(query.order_by(column.table.c.id).limit(limit))
    return list(result.all())


async def _read_row(connection: AsyncConnection, column: SecretColumn, row_id: uuid.UUID) -> Row[Any] | None:
    query = select(*_read_columns(column)).where(column.table.c.id == row_id, column.table.c[column.value].is_not(None))
    return (await connection.execute(query)).one_or_none()


def _read_columns(column: SecretColumn) -> list[ColumnElement[Any]]:
    table = column.table
    columns: list[ColumnElement[Any]] = [table.c.id, table.c[column.value].label("value")]
    if column.fingerprint is not None:
        columns.append(table.c[column.fingerprint].label("fingerprint"))
    return columns


async def _rotate_row(
    connection: AsyncConnection, column: SecretColumn, box: SecretBox, row: Row[Any] | None, report: TableReport
) -> None:
    for _ in range(_MAX_ATTEMPTS_PER_ROW):
        if row is None:
            return  # deleted meanwhile (settle forgetting a pending row): nothing left to rotate
        value = bytes(row.value)
        fingerprint = bytes(row.fingerprint) if column.fingerprint is not None and row.fingerprint is not None else None
        if _is_current(box, value, fingerprint):
            report.seen += 1
            report.current += 1
            return
        try:
            new_value = box.rotate(value)
            new_fingerprint = box.fingerprint(box.decrypt(new_value)) if fingerprint is not None else None
        except DecryptionFailed:
            report.seen += 1
            report.unreadable_ids.append(row.id)
            return
        if await _write(connection, column, row.id, value, fingerprint, new_value, new_fingerprint):
            report.seen += 1
            report.reencrypted += 1
            report.fingerprints_remade += new_fingerprint is not None
            return
        # The service wrote this row after it was read: judge what it holds now.
        row = await _read_row(connection, column, row.id)
    raise RuntimeError(f"{column.name} row {row.id if row else '?'} kept changing while it was being rotated")


def _is_current(box: SecretBox, value: bytes, fingerprint: bytes | None) -> bool:
    clear = box.decrypt_under_first_key(value)
    if clear is None:
        return False
    return fingerprint is None or fingerprint == box.fingerprint(clear)


async def _write(
    connection: AsyncConnection,
    column: SecretColumn,
    row_id: uuid.UUID,
    value: bytes,
    fingerprint: bytes | None,
    new_value: bytes,
    new_fingerprint: bytes | None,
) -> bool:
    """The row rewritten, if it still holds what was read; whether it did."""
    table = column.table
    # `updated_at` kept as it is: the column's onupdate would otherwise mark the row as changed.
    values: dict[str, Any] = {column.value: new_value, "updated_at": table.c.updated_at}
    statement = update(table).where(table.c.id == row_id, table.c[column.value] == value)
    if column.fingerprint is not None:
        statement = statement.where(table.c[column.fingerprint].is_not_distinct_from(fingerprint))
        if new_fingerprint is not None:
            values[column.fingerprint] = new_fingerprint
    result = await connection.execute(statement.values(values))
    return result.rowcount == 1
