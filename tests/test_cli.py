"""`python -m app.cli settle` as an operator runs it: a process of its own, configured by the environment, against
the real database and a TikTok (the sandbox) served over HTTP on a loopback port.

The pending rows it settles are left by the service itself, through the faults that leave them: TikTok failing
before it applied a code, and TikTok's answer lost after it applied one. And the ones migration 0003 left: the
original post of a pair stored before it, with its code and no fingerprint.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from starlette.applications import Starlette

from app.kit.crypto import SecretBox
from app.kit.settings import Settings
from dev.sandbox.app import create_sandbox_app
from dev.sandbox.seed import CODES_BY_TEXT
from tests.api.helpers import CountingTransport, apply, assert_problem
from tests.conftest import (
    ADVERTISER_ID,
    ADVERTISER_TOKEN,
    ENCRYPTION_KEY,
    ROOT,
    create_database,
    register_advertiser,
    run_alembic,
    running,
    served_on_loopback,
)

VIDEO_30D = "#SBX+video/30d="
VIDEO_60D = "#SBX+video/60d="
DUET = "#SBX+duet/secondary="
DUET_ORIGINAL = "#SBX+duet/original="
CLI_TIMEOUT_SECONDS = 60
_REPORT = re.compile(
    r"settled: (?P<activated>\d+) activated .*, (?P<forgotten>\d+) forgotten .*, (?P<released>\d+) renewals checked, "
    r"(?P<unbound>\d+) unbound, (?P<still_bound>\d+) still bound after an unbind, (?P<failed>\d+) left for later"
)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class LiveTikTok:
    """A sandbox instance, served on loopback for the command and reachable in-process for the service."""

    app: Starlette
    base_url: str

    def item_id(self, code: str) -> str:
        post = CODES_BY_TEXT[code].post
        assert post is not None
        return post.item_id


@pytest.fixture
def live_tiktok() -> Iterator[LiveTikTok]:
    """The sandbox served on a loopback port for the command, and reachable in-process for the service."""
    sandbox = create_sandbox_app(slow_seconds=5.0)
    with served_on_loopback(sandbox) as base_url:
        yield LiveTikTok(sandbox, f"{base_url}/open_api/")


def _authorize_fails_with_a_system_error(sandbox: Starlette) -> httpx.MockTransport:
    """TikTok, except that `authorize` answers a system error without applying anything."""
    inner = httpx.ASGITransport(app=sandbox)

    async def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/tt_video/authorize/"):
            return httpx.Response(200, json={"code": 50000, "message": "System error", "request_id": "r", "data": {}})
        return await inner.handle_async_request(request)

    return httpx.MockTransport(handle)


def _authorize_answer_lost(sandbox: Starlette) -> httpx.MockTransport:
    """TikTok, except that the answer to `authorize` never comes back, after TikTok applied the code."""
    inner = httpx.ASGITransport(app=sandbox)

    async def handle(request: httpx.Request) -> httpx.Response:
        response = await inner.handle_async_request(request)
        if request.url.path.endswith("/tt_video/authorize/"):
            raise httpx.ReadTimeout("the answer never came back", request=request)
        return response

    return httpx.MockTransport(handle)


async def _leave_pending(
    settings: Settings, transport: httpx.AsyncBaseTransport, code: str, *, expect: tuple[int, str], register: bool
) -> None:
    """Apply `code` through the service on `transport`, whose fault leaves the authorization pending."""
    async with running(settings, transport) as service:
        if register:
            await register_advertiser(service.client)
        assert_problem(await apply(service.client, code), *expect)


@dataclass
class CliRun:
    returncode: int
    stdout: str
    stderr: str

    def report(self) -> dict[str, int]:
        lines = self.stdout.splitlines()  # the report alone: the log goes to stderr
        match = _REPORT.match(lines[0]) if len(lines) == 1 else None
        assert match, f"not the report line:\n{self.stdout}\n{self.stderr}"
        return {name: int(value) for name, value in match.groupdict().items()}


async def _settle(database_url: str, tiktok_base_url: str, **extra_env: str) -> CliRun:
    """`python -m app.cli settle`, as an operator runs it, configured by its environment only."""
    env = {
        **{name: value for name, value in os.environ.items() if not name.startswith("TIKTOK_")},
        "DATABASE_URL": database_url,
        "TIKTOK_API_BASE_URL": tiktok_base_url,
        "ENCRYPTION_KEYS": ENCRYPTION_KEY,
        "ENVIRONMENT": "test",
        "LOG_FORMAT": "json",
        **extra_env,
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "app.cli",
        "settle",
        cwd=ROOT,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), CLI_TIMEOUT_SECONDS)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode is not None
    return CliRun(process.returncode, stdout.decode(), stderr.decode())


async def _states(db: AsyncEngine) -> dict[str, dict[str, Any]]:
    """The authorizations, by post."""
    async with db.connect() as connection:
        rows = await connection.execute(
            text("SELECT item_id, state, claimed_until, auth_code_fingerprint, auth_end_at FROM authorizations")
        )
        return {row.item_id: dict(row._mapping) for row in rows}


def _logged_events(run: CliRun) -> list[str]:
    """The events of the command's log (LOG_FORMAT=json: one JSON object per line on stderr)."""
    return [json.loads(line)["event"] for line in run.stderr.splitlines() if line.strip()]


class TestSettle:
    async def test_activates_what_tiktok_bound_forgets_the_rest_and_then_has_nothing_to_do(
        self, settings: Settings, db: AsyncEngine, database_url: str, fast_retries: None, live_tiktok: LiveTikTok
    ) -> None:
        sandbox = live_tiktok.app
        # TikTok fails before applying anything: unknown to the service, so the row stays pending.
        await _leave_pending(
            settings,
            _authorize_fails_with_a_system_error(sandbox),
            VIDEO_30D,
            expect=(503, "tiktok_unavailable"),
            register=True,
        )
        # TikTok applies the code and its answer is lost: pending too, and bound on TikTok.
        await _leave_pending(
            settings, _authorize_answer_lost(sandbox), VIDEO_60D, expect=(504, "tiktok_timeout"), register=False
        )
        not_bound, bound = live_tiktok.item_id(VIDEO_30D), live_tiktok.item_id(VIDEO_60D)
        before = await _states(db)
        assert {item: row["state"] for item, row in before.items()} == {not_bound: "pending", bound: "pending"}

        run = await _settle(database_url, live_tiktok.base_url)

        assert run.returncode == 0, run.stderr
        assert run.report() == {
            "activated": 1,
            "forgotten": 1,
            "released": 0,
            "unbound": 0,
            "still_bound": 0,
            "failed": 0,
        }
        after = await _states(db)
        assert set(after) == {bound}  # the intent TikTok never carried out is gone
        assert (after[bound]["state"], after[bound]["claimed_until"]) == ("active", None)
        assert after[bound]["auth_code_fingerprint"] == before[bound]["auth_code_fingerprint"]
        assert after[bound]["auth_end_at"] is not None  # TikTok's window, read back
        assert _logged_events(run).count("authorization.settled") == 2
        assert "#SBX+" not in run.stdout + run.stderr  # no code in clear

        again = await _settle(database_url, live_tiktok.base_url)

        assert again.returncode == 0, again.stderr
        assert again.report() == {
            "activated": 0,
            "forgotten": 0,
            "released": 0,
            "unbound": 0,
            "still_bound": 0,
            "failed": 0,
        }
        assert await _states(db) == after

    async def test_tiktok_unreachable_leaves_the_row_pending_and_exits_1(
        self, settings: Settings, db: AsyncEngine, database_url: str, fast_retries: None, live_tiktok: LiveTikTok
    ) -> None:
        await _leave_pending(
            settings,
            _authorize_fails_with_a_system_error(live_tiktok.app),
            VIDEO_30D,
            expect=(503, "tiktok_unavailable"),
            register=True,
        )
        item_id = live_tiktok.item_id(VIDEO_30D)
        closed = f"http://127.0.0.1:{_free_port()}/open_api/"  # nothing listens there

        # One attempt: the same outcome as the default four, without seconds of backoff between them.
        run = await _settle(database_url, closed, TIKTOK_MAX_ATTEMPTS="1")

        assert run.returncode == 1, run.stderr
        assert run.report() == {
            "activated": 0,
            "forgotten": 0,
            "released": 0,
            "unbound": 0,
            "still_bound": 0,
            "failed": 1,
        }
        assert "authorization.settle.failed" in _logged_events(run)
        (row,) = (await _states(db)).values()
        assert (row["item_id"], row["state"], row["claimed_until"]) == (item_id, "pending", None)  # free to retry

        # The next run, with TikTok back, settles it.
        retried = await _settle(database_url, live_tiktok.base_url)
        assert retried.returncode == 0, retried.stderr
        assert retried.report()["forgotten"] == 1
        assert await _states(db) == {}

    async def test_completes_the_original_post_of_a_pair_stored_before_0003(
        self, settings: Settings, postgres_server_url: str, fast_retries: None, live_tiktok: LiveTikTok
    ) -> None:
        """Migration 0003 gave the original post of a Duet a pending row with its code and no fingerprint."""
        url = await create_database(postgres_server_url, f"spark_cli_0003_{uuid.uuid4().hex[:8]}")
        assert run_alembic(url, "upgrade", "0002").returncode == 0
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=live_tiktok.app)) as tiktok:
            bound = await tiktok.post(
                "http://tiktok.test/open_api/v1.3/tt_video/authorize/",
                json={"advertiser_id": ADVERTISER_ID, "auth_code": DUET, "original_post_auth_code": DUET_ORIGINAL},
                headers={"Access-Token": ADVERTISER_TOKEN},
            )
            assert bound.json()["code"] == 0, bound.text
        box = SecretBox([ENCRYPTION_KEY])
        engine = create_async_engine(url)
        try:
            async with engine.begin() as connection:
                advertiser_id = uuid.uuid4()
                await connection.execute(
                    text(
                        "INSERT INTO advertisers (id, tiktok_advertiser_id, name, access_token_encrypted) "
                        "VALUES (:id, :tiktok_id, 'Brand', :token)"
                    ),
                    {"id": advertiser_id, "tiktok_id": ADVERTISER_ID, "token": box.encrypt(ADVERTISER_TOKEN)},
                )
                pair_id = uuid.uuid4()
                await connection.execute(
                    text(
                        """
                        INSERT INTO authorizations (id, advertiser_id, item_id, item_type, identity_type,
                            post_status, origin_kind, original_item_id, auth_code_encrypted, auth_code_fingerprint,
                            auth_code_hint, original_post_auth_code_encrypted, state)
                        VALUES (:id, :advertiser_id, :item_id, 'VIDEO', 'AUTH_CODE', 'PUBLIC', 'duet',
                            :original_item_id, :code, :fingerprint, '…ary=', :original_code, 'active')
                        """
                    ),
                    {
                        "id": pair_id,
                        "advertiser_id": advertiser_id,
                        "item_id": live_tiktok.item_id(DUET),
                        "original_item_id": live_tiktok.item_id(DUET_ORIGINAL),
                        "code": box.encrypt(DUET),
                        "fingerprint": box.fingerprint(DUET),
                        "original_code": box.encrypt(DUET_ORIGINAL),
                    },
                )
            assert run_alembic(url, "upgrade", "head").returncode == 0

            run = await _settle(url, live_tiktok.base_url)

            assert run.returncode == 0, run.stderr
            assert run.report() == {
                "activated": 1,
                "forgotten": 0,
                "released": 0,
                "unbound": 0,
                "still_bound": 0,
                "failed": 0,
            }
            async with engine.connect() as connection:
                original = (
                    await connection.execute(
                        text("SELECT * FROM authorizations WHERE item_id = :item_id"),
                        {"item_id": live_tiktok.item_id(DUET_ORIGINAL)},
                    )
                ).one()
            assert original.state == "active"
            assert bytes(original.auth_code_fingerprint) == box.fingerprint(DUET_ORIGINAL)  # from the decrypted code
            assert original.post_status != "UNKNOWN"
            assert original.auth_end_at is not None  # TikTok's window and creator, read back
            assert original.tiktok_name

            # The pair applied again is answered from what is stored: both codes are known now.
            transport = CountingTransport(httpx.ASGITransport(app=live_tiktok.app))
            async with running(settings.model_copy(update={"database_url": url}), transport) as service:
                again = await apply(service.client, DUET, DUET_ORIGINAL)
            assert (again.status_code, again.json()["id"]) == (200, str(pair_id)), again.text
            assert again.json()["original_post"]["authorization_id"] == str(original.id)
            assert transport.count("authorize") == 0
        finally:
            await engine.dispose()
