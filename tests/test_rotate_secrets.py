"""`python -m app.cli rotate-secrets`: every stored code and token re-encrypted under the first key, so that the
old key can be retired.

The data is written by the service itself under an OLD key (an ad account, codes, a Duet with its original, an own
post without a code) plus a pending row carried over from before pairs had two rows (a code, no fingerprint). The
command runs as an operator runs it, a process of its own configured by its environment, with
ENCRYPTION_KEYS=new,old; then the old key is RETIRED and a service with ENCRYPTION_KEYS=new reads everything back.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import pty
import re
import struct
import sys
import termios
import uuid
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from cryptography.fernet import Fernet
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from starlette.applications import Starlette

from app import rotation
from app.kit.crypto import DecryptionFailed, SecretBox
from app.kit.settings import Settings
from dev.sandbox.app import create_sandbox_app
from dev.sandbox.seed import CODES_BY_TEXT, OWN_TT_USER_IDENTITY_ID, OWN_VIDEO_ITEM_ID
from tests.api.helpers import CountingTransport, apply, assert_problem, dump_database
from tests.conftest import ADVERTISER_ID, ADVERTISER_TOKEN, ROOT, register_advertiser, running, settings_for

OLD, NEW, STRANGER = (Fernet.generate_key().decode() for _ in range(3))
VIDEO_7D = "#SBX+video/7d="
VIDEO_30D = "#SBX+video/30d="
VIDEO_30D_RENEWED = "#SBX+video/30d-renewed="
VIDEO_60D = "#SBX+video/60d="
VIDEO_365D = "#SBX+video/365d="  # only ever in the pending row written by SQL
DUET = "#SBX+duet/secondary="
DUET_ORIGINAL = "#SBX+duet/original="
RECONNECTED_TOKEN = "sandbox-token-reconnected"
LISTING = f"/v1/advertisers/{ADVERTISER_ID}/authorizations"
# Nothing listens there: the command must not call TikTok (it would fail if it tried).
NO_TIKTOK = "http://127.0.0.1:9/open_api/"
CLI_TIMEOUT_SECONDS = 60
_TABLE_LINE = re.compile(
    r"(?P<table>\w+): (?P<seen>\d+) seen, (?P<reencrypted>\d+) re-encrypted, (?P<current>\d+) already current, "
    r"(?P<unreadable>\d+) unreadable(?:, (?P<fingerprints>\d+) fingerprints re-made)?"
)
DONE = "done: every stored code and token is under the first key in ENCRYPTION_KEYS"


def _item_id(code: str) -> str:
    post = CODES_BY_TEXT[code].post
    assert post is not None
    return post.item_id


def _settings(database_url: str, *keys: str) -> Settings:
    return settings_for(database_url, encryption_keys=",".join(keys))


# --- what is stored ---------------------------------------------------------------------------------------------


@dataclass
class Stored:
    """What the service wrote under OLD."""

    sandbox: Starlette
    advertiser_id: uuid.UUID
    authorization_ids: dict[str, str]  # by code
    pending_id: uuid.UUID  # the carried-over pending row: a code, no fingerprint, no hint
    own_post_id: str  # no code at all
    old_cursor: str  # a list cursor signed under OLD


@pytest.fixture
async def stored(database_url: str, db: AsyncEngine, fast_retries: None) -> Stored:
    sandbox = create_sandbox_app(slow_seconds=5.0)
    async with running(_settings(database_url, OLD), httpx.ASGITransport(app=sandbox)) as service:
        await register_advertiser(service.client)
        ids = {}
        for code in (VIDEO_30D, VIDEO_60D):
            response = await apply(service.client, code)
            assert response.status_code == 201, response.text
            ids[code] = response.json()["id"]
        duet = await apply(service.client, DUET, DUET_ORIGINAL)
        assert duet.status_code == 201, duet.text
        ids[DUET] = duet.json()["id"]
        ids[DUET_ORIGINAL] = duet.json()["original_post"]["authorization_id"]
        own = await service.client.post(
            f"/v1/advertisers/{ADVERTISER_ID}/own-posts",
            json={"item_id": OWN_VIDEO_ITEM_ID, "identity_type": "TT_USER", "identity_id": OWN_TT_USER_IDENTITY_ID},
        )
        assert own.status_code == 201, own.text
        old_cursor = (await service.client.get(LISTING, params={"limit": 2})).json()["next_cursor"]
    pending_id = uuid.uuid4()
    async with db.begin() as connection:
        advertiser_id = (await connection.execute(text("SELECT id FROM advertisers"))).scalar_one()
        await connection.execute(
            text(
                """
                INSERT INTO authorizations (id, advertiser_id, item_id, item_type, identity_type, post_status,
                    auth_code_encrypted, state)
                VALUES (:id, :advertiser_id, :item_id, 'VIDEO', 'AUTH_CODE', 'UNKNOWN', :code, 'pending')
                """
            ),
            {
                "id": pending_id,
                "advertiser_id": advertiser_id,
                "item_id": _item_id(VIDEO_365D),
                "code": SecretBox([OLD]).encrypt(VIDEO_365D),
            },
        )
    return Stored(sandbox, advertiser_id, ids, pending_id, own.json()["id"], old_cursor)


@dataclass(frozen=True)
class SecretRow:
    table: str
    value: bytes | None
    fingerprint: bytes | None
    hint: str | None
    updated_at: Any


async def _secret_rows(db: AsyncEngine) -> dict[uuid.UUID, SecretRow]:
    """Every row holding (or able to hold) a secret, by id, as the database holds it."""
    async with db.connect() as connection:
        advertisers = await connection.execute(text("SELECT id, access_token_encrypted, updated_at FROM advertisers"))
        rows = {
            row.id: SecretRow("advertisers", bytes(row.access_token_encrypted), None, None, row.updated_at)
            for row in advertisers
        }
        authorizations = await connection.execute(
            text(
                "SELECT id, auth_code_encrypted, auth_code_fingerprint, auth_code_hint, updated_at FROM authorizations"
            )
        )
        for row in authorizations:
            rows[row.id] = SecretRow(
                "authorizations",
                _bytes(row.auth_code_encrypted),
                _bytes(row.auth_code_fingerprint),
                row.auth_code_hint,
                row.updated_at,
            )
    return rows


def _bytes(value: Any) -> bytes | None:
    return None if value is None else bytes(value)


def _clear_texts(stored: Stored) -> dict[uuid.UUID, str]:
    """What each stored value decrypts to."""
    clear = {stored.advertiser_id: ADVERTISER_TOKEN, stored.pending_id: VIDEO_365D}
    clear.update({uuid.UUID(authorization_id): code for code, authorization_id in stored.authorization_ids.items()})
    return clear


def _assert_under(key: str, rows: dict[uuid.UUID, SecretRow], clear: dict[uuid.UUID, str]) -> None:
    """Every value in `clear` decrypts under `key` alone, and its fingerprint (if any) is `key`'s."""
    box = SecretBox([key])
    for row_id, expected in clear.items():
        row = rows[row_id]
        assert row.value is not None
        assert box.decrypt(row.value) == expected, row_id
        if row.fingerprint is not None:
            assert row.fingerprint == box.fingerprint(expected), row_id


def _under(key: str, value: bytes | None) -> bool:
    return value is not None and SecretBox([key]).decrypt_under_first_key(value) is not None


async def _assert_no_secret_in_clear(db: AsyncEngine) -> None:
    dump = await dump_database(db)
    for secret in (ADVERTISER_TOKEN, RECONNECTED_TOKEN, VIDEO_7D, VIDEO_30D, VIDEO_30D_RENEWED, VIDEO_60D, VIDEO_365D):
        assert secret not in dump
        assert secret.encode().hex() not in dump  # nor as the bytes of a bytea column
    for code in (DUET, DUET_ORIGINAL):
        assert code not in dump
        assert code.encode().hex() not in dump


# --- the command, as an operator runs it ----------------------------------------------------------------------


@dataclass
class CliRun:
    returncode: int
    stdout: str
    stderr: str

    def tables(self) -> dict[str, dict[str, int]]:
        """The report's line per table, as numbers."""
        report = {}
        for line in self.stdout.splitlines():
            match = _TABLE_LINE.fullmatch(line)
            if match:
                numbers = {name: int(value) for name, value in match.groupdict().items() if name != "table" and value}
                report[match["table"]] = numbers
        assert set(report) == {"advertisers", "authorizations", "webhook_subscriptions"}, self.stdout
        return report


def _environment(database_url: str, keys: str) -> dict[str, str]:
    return {
        **{name: value for name, value in os.environ.items() if not name.startswith(("TIKTOK_", "ENCRYPTION_"))},
        "DATABASE_URL": database_url,
        "TIKTOK_API_BASE_URL": NO_TIKTOK,
        "ENCRYPTION_KEYS": keys,
        "ENVIRONMENT": "test",
        "LOG_FORMAT": "json",
    }


async def _rotate_secrets(database_url: str, keys: str, *args: str, stderr: int | None = None) -> CliRun:
    """`python -m app.cli rotate-secrets`, configured by its environment only; stderr a pipe unless given."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "app.cli",
        "rotate-secrets",
        *args,
        cwd=ROOT,
        env=_environment(database_url, keys),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE if stderr is None else stderr,
    )
    try:
        stdout, stderr_bytes = await asyncio.wait_for(process.communicate(), CLI_TIMEOUT_SECONDS)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode is not None
    return CliRun(process.returncode, stdout.decode(), (stderr_bytes or b"").decode())


def _report(seen: int, reencrypted: int, current: int, unreadable: int = 0, **fingerprints: int) -> dict[str, int]:
    return {"seen": seen, "reencrypted": reencrypted, "current": current, "unreadable": unreadable, **fingerprints}


# --- the tests ----------------------------------------------------------------------------------------------------


class TestRotateSecrets:
    async def test_rotated_then_the_old_key_retired_everything_reads_back(
        self, stored: Stored, database_url: str, db: AsyncEngine
    ) -> None:
        clear = _clear_texts(stored)
        before = await _secret_rows(db)
        _assert_under(OLD, before, clear)
        assert before[stored.pending_id].fingerprint is None
        assert before[uuid.UUID(stored.own_post_id)].value is None
        await _assert_no_secret_in_clear(db)

        run = await _rotate_secrets(database_url, f"{NEW},{OLD}")

        assert run.returncode == 0, run.stderr
        assert run.stderr == ""  # not a terminal: no bar, no log, only the report
        assert run.tables() == {
            "advertisers": _report(1, 1, 0),
            # 4 applied codes (a Duet is two) and the pending row; the own post holds no code
            "authorizations": _report(5, 5, 0, fingerprints=4),
            "webhook_subscriptions": _report(0, 0, 0),  # none here: see TestWebhookSecrets
        }
        assert run.stdout.splitlines()[-1] == DONE
        after = await _secret_rows(db)
        _assert_under(NEW, after, clear)
        assert after[stored.pending_id].fingerprint is None  # a missing fingerprint stays missing
        assert after[uuid.UUID(stored.own_post_id)] == before[uuid.UUID(stored.own_post_id)]
        for row_id, row in after.items():  # the hint and updated_at are not the key's business
            assert (row.hint, row.updated_at) == (before[row_id].hint, before[row_id].updated_at)
        await _assert_no_secret_in_clear(db)

        # The old key retired: the service knows NEW only.
        transport = CountingTransport(httpx.ASGITransport(app=stored.sandbox))
        async with running(_settings(database_url, NEW), transport) as service:
            client = service.client
            assert (await client.get(f"/v1/advertisers/{ADVERTISER_ID}")).status_code == 200
            every_id = {str(row_id) for row_id, row in after.items() if row.table == "authorizations"}
            for authorization_id in every_id:
                response = await client.get(f"/v1/authorizations/{authorization_id}")
                assert response.status_code == 200, response.text
            # A cursor signed under the retired key is refused, as any cursor the service did not sign...
            assert_problem(await client.get(LISTING, params={"cursor": stored.old_cursor}), 422, "cursor_invalid")
            # ...and the listing, paged under NEW's cursors, shows every authorization.
            listed: list[str] = []
            cursor = None
            while True:
                params: dict[str, Any] = {"limit": 2} | ({"cursor": cursor} if cursor else {})
                page = await client.get(LISTING, params=params)
                assert page.status_code == 200, page.text
                listed.extend(item["id"] for item in page.json()["items"])
                cursor = page.json()["next_cursor"]
                if cursor is None:
                    break
            assert sorted(listed) == sorted(every_id)

            # The same codes again are found by their fingerprints, now NEW's: answered from what is stored.
            for code in (VIDEO_30D, VIDEO_60D):
                again = await apply(client, code)
                assert (again.status_code, again.json()["id"]) == (200, stored.authorization_ids[code]), again.text
            pair = await apply(client, DUET, DUET_ORIGINAL)
            assert (pair.status_code, pair.json()["id"]) == (200, stored.authorization_ids[DUET]), pair.text
            assert pair.json()["original_post"]["authorization_id"] == stored.authorization_ids[DUET_ORIGINAL]
            assert transport.count("authorize") == 0

            # The ad account's token decrypts: a new code goes to TikTok with it and is applied.
            new = await apply(client, VIDEO_7D)
            assert new.status_code == 201, new.text
            assert transport.count("authorize") == 1
        await _assert_no_secret_in_clear(db)

        # A second run finds everything current, the new authorization included, and writes nothing.
        rows = await _secret_rows(db)
        again = await _rotate_secrets(database_url, f"{NEW},{OLD}")
        assert again.returncode == 0, again.stderr
        assert again.tables() == {
            "advertisers": _report(1, 0, 1),
            "authorizations": _report(6, 0, 6, fingerprints=0),
            "webhook_subscriptions": _report(0, 0, 0),
        }
        assert again.stdout.splitlines()[-1] == DONE
        assert await _secret_rows(db) == rows

    async def test_a_value_under_a_key_not_configured_is_reported_and_exits_1(
        self, stored: Stored, database_url: str, db: AsyncEngine
    ) -> None:
        lost = uuid.UUID(stored.authorization_ids[VIDEO_60D])
        async with db.begin() as connection:
            await connection.execute(
                text("UPDATE authorizations SET auth_code_encrypted = :value WHERE id = :id"),
                {"value": SecretBox([STRANGER]).encrypt(VIDEO_60D), "id": lost},
            )
        before = await _secret_rows(db)

        run = await _rotate_secrets(database_url, f"{NEW},{OLD}")

        assert run.returncode == 1, run.stderr
        assert run.stderr == ""
        assert run.tables() == {
            "advertisers": _report(1, 1, 0),
            "authorizations": _report(5, 4, 0, unreadable=1, fingerprints=3),
            "webhook_subscriptions": _report(0, 0, 0),
        }
        lines = run.stdout.splitlines()
        assert f"authorizations unreadable: {lost}" in lines
        assert lines[-1] == (
            "incomplete: 1 stored value(s) decrypt under no key in ENCRYPTION_KEYS (ids above); "
            "every other one is under the first key"
        )
        assert "#SBX+" not in run.stdout
        after = await _secret_rows(db)
        assert after[lost] == before[lost]  # left as it is
        clear = {row_id: code for row_id, code in _clear_texts(stored).items() if row_id != lost}
        _assert_under(NEW, after, clear)  # everything else rotated
        with pytest.raises(DecryptionFailed):
            SecretBox([NEW, OLD]).decrypt(after[lost].value or b"")

    async def test_a_progress_bar_on_a_terminal_only(self, stored: Stored, database_url: str) -> None:
        controller, terminal = pty.openpty()
        fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # a terminal has a size
        try:
            run = await _rotate_secrets(database_url, f"{NEW},{OLD}", "--batch-size", "2", stderr=terminal)
            os.close(terminal)
            terminal = -1
            shown = _read_all(controller)
        finally:
            if terminal != -1:
                os.close(terminal)
            os.close(controller)
        assert run.returncode == 0, shown
        assert "100%" in shown
        assert "6/6" in shown  # one ad account's token and five codes
        assert "#SBX+" not in shown
        assert run.tables()["authorizations"] == _report(5, 5, 0, fingerprints=4)  # stdout: the report alone

    async def test_the_batch_size_must_be_positive(self, database_url: str) -> None:
        run = await _rotate_secrets(database_url, f"{NEW},{OLD}", "--batch-size", "0")
        assert run.returncode == 2
        assert "--batch-size" in run.stderr


class TestResumable:
    async def test_stopped_after_one_batch_and_run_again_it_finishes(self, stored: Stored, db: AsyncEngine) -> None:
        """A run that dies half-way (here: after its first batch of codes) leaves the rest for the next run."""

        class Killed(Exception):
            pass

        def die_after_the_first_batch_of_codes(table: rotation.TableReport, rows: int) -> None:
            if table.table == "authorizations":
                raise Killed

        box = SecretBox([NEW, OLD])
        with pytest.raises(Killed):
            await rotation.rotate_secrets(db, box, batch_size=2, on_batch=die_after_the_first_batch_of_codes)

        half = await _secret_rows(db)
        assert _under(NEW, half[stored.advertiser_id].value)
        codes = [row for row in half.values() if row.table == "authorizations" and row.value is not None]
        assert sorted(_under(NEW, row.value) for row in codes) == [False, False, False, True, True]

        report = await rotation.rotate_secrets(db, box, batch_size=2)

        assert [(table.table, table.seen, table.reencrypted, table.current) for table in report.tables] == [
            ("advertisers", 1, 0, 1),
            ("authorizations", 5, 3, 2),
            ("webhook_subscriptions", 0, 0, 0),
        ]
        done = await _secret_rows(db)
        _assert_under(NEW, done, _clear_texts(stored))
        for row_id, row in half.items():
            if _under(NEW, row.value):
                assert done[row_id] == row  # what the first run did is not done again

        last = await rotation.rotate_secrets(db, box, batch_size=2)
        assert [(table.seen, table.reencrypted, table.current) for table in last.tables] == [
            (1, 0, 1),
            (5, 0, 5),
            (0, 0, 0),
        ]
        assert await _secret_rows(db) == done


class TestWhileTheServiceRuns:
    async def test_a_value_the_service_writes_meanwhile_is_never_overwritten(
        self, stored: Stored, database_url: str, db: AsyncEngine, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Between the rotation's read of a batch and its writes, the service (configured NEW,OLD, as it must be
        before a rotation) stores a new token for the ad account and renews a code: those values stay."""
        renewed_id = uuid.UUID(stored.authorization_ids[VIDEO_30D])
        read_batch = rotation._read_batch
        async with running(_settings(database_url, NEW, OLD), httpx.ASGITransport(app=stored.sandbox)) as service:
            written: list[str] = []

            async def read_then_let_the_service_write(
                connection: AsyncConnection, column: rotation.SecretColumn, **kwargs: Any
            ) -> list[Any]:
                rows = await read_batch(connection, column, **kwargs)
                if column.name not in written:
                    written.append(column.name)
                    if column.name == "advertisers":
                        response = await service.client.put(
                            f"/v1/advertisers/{ADVERTISER_ID}/access-token", json={"access_token": RECONNECTED_TOKEN}
                        )
                        assert response.status_code == 200, response.text
                    elif column.name == "authorizations":
                        response = await apply(service.client, VIDEO_30D_RENEWED)
                        assert (response.status_code, response.json()["id"]) == (200, str(renewed_id)), response.text
                return rows

            monkeypatch.setattr(rotation, "_read_batch", read_then_let_the_service_write)
            report = await rotation.rotate_secrets(db, SecretBox([NEW, OLD]))

        assert written == ["advertisers", "authorizations", "webhook_subscriptions"]
        # Those two were re-read after their conditional UPDATE matched nothing, and found current.
        assert [(table.seen, table.reencrypted, table.current) for table in report.tables] == [
            (1, 0, 1),
            (5, 4, 1),
            (0, 0, 0),
        ]
        clear = _clear_texts(stored) | {stored.advertiser_id: RECONNECTED_TOKEN, renewed_id: VIDEO_30D_RENEWED}
        _assert_under(NEW, await _secret_rows(db), clear)
        await _assert_no_secret_in_clear(db)


class TestWebhookSecrets:
    async def test_a_webhook_signing_secret_is_rotated_too(
        self, database_url: str, db: AsyncEngine, fast_retries: None
    ) -> None:
        """A subscription made under OLD: its signing secret is re-encrypted under NEW (the same secret, the row's
        `updated_at` untouched): with OLD retired, the service still reads it to sign deliveries."""
        async with running(_settings(database_url, OLD), httpx.ASGITransport(app=create_sandbox_app())) as service:
            created = await service.client.post("/v1/webhooks", json={"url": "https://hooks.example.com/spark"})
            assert created.status_code == 201, created.text
        secret = created.json()["secret"]

        async def stored() -> tuple[bytes, Any]:
            async with db.connect() as connection:
                row = (
                    await connection.execute(text("SELECT secret_encrypted, updated_at FROM webhook_subscriptions"))
                ).one()
            return bytes(row.secret_encrypted), row.updated_at

        before, updated_at = await stored()
        assert _under(OLD, before)

        report = await rotation.rotate_secrets(db, SecretBox([NEW, OLD]))

        webhooks = report.tables[-1]
        assert (webhooks.table, webhooks.seen, webhooks.reencrypted, webhooks.current) == (
            "webhook_subscriptions",
            1,
            1,
            0,
        )
        after, updated_at_after = await stored()
        assert SecretBox([NEW]).decrypt(after) == secret
        assert updated_at_after == updated_at
        again = await rotation.rotate_secrets(db, SecretBox([NEW, OLD]))
        assert (again.tables[-1].seen, again.tables[-1].reencrypted, again.tables[-1].current) == (1, 0, 1)
        assert await stored() == (after, updated_at)


def _read_all(fd: int) -> str:
    """What a closed terminal received (Linux answers EIO once the other side is closed and the data read)."""
    chunks = []
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks).decode(errors="replace")
