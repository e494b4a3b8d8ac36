"""Intake never loses track of TikTok: what a caller sees when TikTok or Postgres fails half-way, and how the
service finds again, by reading TikTok, every post it may have bound. Real Postgres, the sandbox in-process."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from typing import Any

import httpx
import pytest
import time_machine
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.authorizations import intake
from app.kit import clock
from app.kit.settings import Settings
from dev.sandbox.app import create_sandbox_app
from tests.api.helpers import (
    CountingTransport,
    GatedTransport,
    apply,
    assert_problem,
    authorizations_in_database,
    count_rows,
    losing_first_authorize_answer,
)
from tests.conftest import (
    ADVERTISER_ID,
    SHORT_DEADLINE_SECONDS,
    StoppablePostgres,
    register_advertiser,
    running,
    serving,
)

VIDEO_30D = "#SBX+video/30d="
VIDEO_60D = "#SBX+video/60d="
TIMES_OUT = "#SBX+authorize/times-out="
REFUSED_TWICE = "#SBX+authorize/refused-twice="
DUET = "#SBX+duet/secondary="
DUET_ORIGINAL = "#SBX+duet/original="
STITCH = "#SBX+stitch/secondary="
STITCH_ORIGINAL = "#SBX+stitch/original="
UNRELATED_ORIGINAL = "#SBX+original/unrelated="
# Valid codes for different posts, for many applies at once.
DIFFERENT_POSTS = (
    "#SBX+video/7d=",
    "#SBX+video/30d=",
    "#SBX+video/30d-b=",
    "#SBX+video/60d=",
    "#SBX+video/365d=",
    "#SBX+carousel/30d=",
    "#SBX+visibility/private=",
    "#SBX+duration/600s=",
    "#SBX+mentions/one=",
    "#SBX+original/unrelated=",
)


def _sandbox(slow_seconds: float = 30.0) -> Any:
    return create_sandbox_app(slow_seconds=slow_seconds)


async def _settle(app: FastAPI) -> intake.SettleReport:
    """What `python -m app.cli settle` does, against the running app's resources."""
    return await intake.settle(
        app.state.sessionmaker,
        app.state.tiktok,
        app.state.secret_box,
        intake.Policy.from_settings(app.state.settings),
    )


def _past_any_claim(settings: Settings) -> timedelta:
    return timedelta(seconds=intake.Policy.from_settings(settings).claim_seconds + 1)


def _failing_authorize(sandbox: Any, answer: Callable[[], httpx.Response | None]) -> httpx.MockTransport:
    """The sandbox, except that `authorize` answers `answer()` when that is not None."""
    inner = httpx.ASGITransport(app=sandbox)

    async def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/tt_video/authorize/"):
            response = answer()
            if response is not None:
                return response
        return await inner.handle_async_request(request)

    return httpx.MockTransport(handle)


def _system_error() -> httpx.Response:
    return httpx.Response(200, json={"code": 50000, "message": "System error", "request_id": "r", "data": {}})


class TestNoConnectionHeldWhileTikTokAnswers:
    """Finding 2: a connection was checked out across every TikTok call, so slow TikTok exhausted the pool."""

    @pytest.mark.parametrize(
        ("endpoint", "applies"),
        [
            ("info", 30),  # 30 applies of 10 posts: every one waits on TikTok's read
            ("authorize", len(DIFFERENT_POSTS)),  # one apply per post, each waiting on TikTok's authorize
        ],
    )
    async def test_applies_waiting_on_tiktok_hold_no_connection_and_reads_are_served(
        self, service: Any, settings: Settings, db: AsyncEngine, endpoint: str, applies: int
    ) -> None:
        # A small pool, and a deadline long enough that nothing gives up while the test holds TikTok.
        patient = settings.model_copy(update={"database_pool_size": 2, "tiktok_deadline_seconds": 60.0})
        gate = GatedTransport(httpx.ASGITransport(app=_sandbox()), endpoint, held=False)
        started = await service(gate, patient)
        client = started.client
        existing = (await apply(client, STITCH_ORIGINAL)).json()  # not among the posts applied below

        gate.hold()
        pending = [
            asyncio.create_task(apply(client, DIFFERENT_POSTS[i % len(DIFFERENT_POSTS)])) for i in range(applies)
        ]
        await gate.wait_for(applies)
        assert started.app.state.engine.pool.checkedout() == 0  # all of them wait on TikTok, none on Postgres
        read = await client.get(f"/v1/authorizations/{existing['id']}")
        assert read.status_code == 200, read.text
        assert (await client.get("/readyz")).status_code == 200

        gate.open()
        responses = await asyncio.gather(*pending)
        assert all(r.status_code in (200, 201) for r in responses), [r.text for r in responses]
        assert await count_rows(db, "authorizations") == len(DIFFERENT_POSTS) + 1


class TestWhatTikTokSendsIsAlwaysStorable:
    """Finding 1: text Postgres cannot hold, or longer than its column, failed the write after TikTok applied."""

    async def test_nul_lone_surrogate_and_overlong_values_are_stored(self, service: Any, db: AsyncEngine) -> None:
        inner = httpx.ASGITransport(app=_sandbox())

        async def odd_post(request: httpx.Request) -> httpx.Response:
            response = await inner.handle_async_request(request)
            if not request.url.path.endswith("/tt_video/info/"):
                return response
            await response.aread()
            body = json.loads(response.content)
            data = body["data"]
            data["item_info"]["text"] = "Before\u0000after \ud800 lone, and \U0001f600 kept"
            data["user_info"]["tiktok_name"] = "n" * 1000
            data["auth_info"]["ad_auth_status"] = "AUTHORIZED_WITH_A_STATUS_NOBODY_HAS_SEEN_" * 10
            # json.dumps escapes the lone surrogate as \ud800, as TikTok's JSON would carry it.
            return httpx.Response(200, content=json.dumps(body).encode(), headers={"content-type": "application/json"})

        client = (await service(httpx.MockTransport(odd_post))).client
        response = await apply(client, VIDEO_30D)
        assert response.status_code == 201, response.text
        body = response.json()
        assert body["caption"] == "Before\ufffdafter \ufffd lone, and \U0001f600 kept"
        assert body["creator"]["tiktok_name"] == "n" * 1000
        assert (await client.get(f"/v1/authorizations/{body['id']}")).json() == body
        (row,) = await authorizations_in_database(db)
        assert (row["state"], row["caption"]) == ("active", body["caption"])
        assert row["tiktok_auth_status"] == "AUTHORIZED_WITH_A_STATUS_NOBODY_HAS_SEEN_" * 10


class TestPostgresFailingAfterTikTokApplied:
    """Finding 1: TikTok was changed and nothing here knew; now the intent is recorded first and settled later."""

    @pytest.fixture
    async def activation_fails(self, db: AsyncEngine) -> AsyncIterator[None]:
        """Postgres refuses to make any authorization active: a write that fails after TikTok applied the code."""
        async with db.begin() as connection:
            await connection.execute(
                text(
                    "CREATE FUNCTION refuse_activation() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                    "RAISE EXCEPTION 'refused by the test'; END $$"
                )
            )
            await connection.execute(
                text(
                    "CREATE TRIGGER refuse_activation BEFORE UPDATE ON authorizations FOR EACH ROW "
                    "WHEN (NEW.state = 'active') EXECUTE FUNCTION refuse_activation()"
                )
            )
        try:
            yield
        finally:
            await self.allow_activation(db)

    @staticmethod
    async def allow_activation(db: AsyncEngine) -> None:
        async with db.begin() as connection:
            await connection.execute(text("DROP TRIGGER IF EXISTS refuse_activation ON authorizations"))
            await connection.execute(text("DROP FUNCTION IF EXISTS refuse_activation()"))

    @pytest.mark.tiktok_deadline(SHORT_DEADLINE_SECONDS)  # the 409 waits that long for the request that failed
    async def test_the_pending_authorization_is_kept_and_a_retry_settles_it_without_applying_again(
        self, service: Any, settings: Settings, db: AsyncEngine, activation_fails: None
    ) -> None:
        transport = CountingTransport(httpx.ASGITransport(app=_sandbox()))
        client = (await service(transport)).client
        assert_problem(await apply(client, VIDEO_30D), 500, "internal_error")
        (row,) = await authorizations_in_database(db)
        assert row["state"] == "pending"  # the service knows the post may be bound
        listed = (await client.get(f"/v1/advertisers/{ADVERTISER_ID}/authorizations")).json()["items"]
        assert [item["status"] for item in listed] == ["pending"]

        await self.allow_activation(db)
        # The failed request still owns the post; once its claim has run out, a retry settles it.
        assert_problem(await apply(client, VIDEO_30D), 409, "authorization_in_progress")
        with time_machine.travel(clock.utcnow() + _past_any_claim(settings), tick=True):
            retried = await apply(client, VIDEO_30D)
        assert retried.status_code == 201, retried.text
        assert retried.json()["id"] == str(row["id"])
        assert transport.count("authorize") == 1  # read back from tt_video/list, not applied twice
        assert [r["state"] for r in await authorizations_in_database(db)] == ["active"]

    async def test_settle_finds_it_again(
        self, service: Any, settings: Settings, db: AsyncEngine, activation_fails: None
    ) -> None:
        started = await service(httpx.ASGITransport(app=_sandbox()))
        assert_problem(await apply(started.client, VIDEO_30D), 500, "internal_error")
        await self.allow_activation(db)

        assert await _settle(started.app) == intake.SettleReport()  # still claimed by the request that failed
        with time_machine.travel(clock.utcnow() + _past_any_claim(settings), tick=True):
            report = await _settle(started.app)
        assert report == intake.SettleReport(activated=1)
        (row,) = await authorizations_in_database(db)
        assert (row["state"], row["claimed_until"]) == ("active", None)

    async def test_secrets_and_captions_never_reach_the_logs_when_the_database_fails(
        self, service: Any, db: AsyncEngine, activation_fails: None
    ) -> None:
        """Finding 7: the failed statement's bound parameters were logged with the traceback."""
        client = (await service(httpx.ASGITransport(app=_sandbox()))).client
        records = io.StringIO()
        handler = logging.StreamHandler(records)
        root = logging.getLogger()
        root.addHandler(handler)
        try:
            assert_problem(await apply(client, VIDEO_30D), 500, "internal_error")
        finally:
            root.removeHandler(handler)
        logged = records.getvalue()
        assert "refused by the test" in logged  # the failure itself is logged, with its statement
        async with db.connect() as connection:
            row = (
                await connection.execute(
                    text("SELECT caption, tiktok_name, auth_code_fingerprint, auth_code_encrypted FROM authorizations")
                )
            ).one()
        for secret in (row.caption, row.tiktok_name, bytes(row.auth_code_fingerprint).hex()):
            assert secret not in logged
        assert bytes(row.auth_code_encrypted)[:10].decode() not in logged  # Fernet tokens: url-safe base64


class TestTikTokAnswerLost:
    """TikTok's authorize is not confirmed idempotent: a retry settles by reading TikTok, never applies twice."""

    @pytest.mark.tiktok_deadline(SHORT_DEADLINE_SECONDS)
    async def test_authorize_that_applies_then_times_out_is_settled_by_the_retry(
        self, service: Any, db: AsyncEngine
    ) -> None:
        transport = CountingTransport(httpx.ASGITransport(app=_sandbox(slow_seconds=30)))
        client = (await service(transport)).client
        problem = assert_problem(await apply(client, TIMES_OUT), 504, "tiktok_timeout")
        assert problem["retryable"] is True
        (row,) = await authorizations_in_database(db)
        assert (row["state"], row["claimed_until"]) == ("pending", None)  # unknown, and free to settle

        retried = await apply(client, TIMES_OUT)
        assert retried.status_code == 201, retried.text
        assert retried.json()["status"] == "active"
        assert transport.count("authorize") == 1
        assert await count_rows(db, "authorizations") == 1

    async def test_a_lost_answer_is_settled_where_a_second_authorize_would_be_refused(
        self, service: Any, db: AsyncEngine
    ) -> None:
        transport = CountingTransport(losing_first_authorize_answer(_sandbox()))
        client = (await service(transport)).client
        assert_problem(await apply(client, REFUSED_TWICE), 504, "tiktok_timeout")
        retried = await apply(client, REFUSED_TWICE)
        assert retried.status_code == 201, retried.text
        assert transport.count("authorize") == 1
        assert [r["state"] for r in await authorizations_in_database(db)] == ["active"]

    async def test_a_post_already_bound_outside_the_service_is_taken_in(self, service: Any) -> None:
        """Someone applied the code in Ads Manager first, and TikTok refuses a second authorize."""
        sandbox = _sandbox()
        transport = CountingTransport(httpx.ASGITransport(app=sandbox))
        client = (await service(transport)).client
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=sandbox)) as ads_manager:
            bound = await ads_manager.post(
                "http://tiktok.test/open_api/v1.3/tt_video/authorize/",
                json={"advertiser_id": ADVERTISER_ID, "auth_code": REFUSED_TWICE},
                headers={"Access-Token": "sandbox-token"},
            )
            assert bound.json()["code"] == 0

        response = await apply(client, REFUSED_TWICE)
        assert response.status_code == 201, response.text
        assert response.json()["status"] == "active"
        assert transport.count("authorize") == 1  # refused as already authorized, then read back

    async def test_a_refusal_at_authorize_leaves_nothing(self, service: Any, db: AsyncEngine) -> None:
        """TikTok answered no: nothing was applied, so nothing is pending."""
        expired = httpx.Response(200, json={"code": 40002, "message": "auth_code_expired: expired.", "data": {}})
        client = (await service(_failing_authorize(_sandbox(), lambda: expired))).client
        assert_problem(await apply(client, VIDEO_30D), 422, "auth_code_expired")
        assert await count_rows(db, "authorizations") == 0

    async def test_a_system_error_at_authorize_is_retryable_and_the_retry_applies(
        self, service: Any, db: AsyncEngine
    ) -> None:
        answers: list[httpx.Response | None] = [_system_error()]
        transport = CountingTransport(_failing_authorize(_sandbox(), lambda: answers.pop() if answers else None))
        client = (await service(transport)).client
        assert_problem(await apply(client, VIDEO_30D), 503, "tiktok_unavailable")
        assert [r["state"] for r in await authorizations_in_database(db)] == ["pending"]
        lists_before = transport.count("list")

        retried = await apply(client, VIDEO_30D)
        assert retried.status_code == 201, retried.text
        # The retry read TikTok first (not bound: the error came before anything was applied), then applied.
        assert (transport.count("list") - lists_before, transport.count("authorize")) == (1, 2)

    async def test_settle_forgets_an_intent_tiktok_never_carried_out(self, service: Any, db: AsyncEngine) -> None:
        started = await service(_failing_authorize(_sandbox(), _system_error))
        assert_problem(await apply(started.client, VIDEO_30D), 503, "tiktok_unavailable")
        assert await _settle(started.app) == intake.SettleReport(forgotten=1)
        assert await count_rows(db, "authorizations") == 0


class TestPostgresUnavailable:
    """Finding 3: Postgres gone answered 500. Now 503 `database_unavailable`, and recovery needs no restart."""

    async def test_a_restart_between_requests_costs_at_most_one_answer(
        self, settings: Settings, stoppable_postgres: StoppablePostgres, fast_retries: None
    ) -> None:
        """Connections are not pinged before use (issue 10): those in the pool die unnoticed when Postgres restarts
        while nothing runs. The first request to meet one is answered 503 `database_unavailable` (safe to retry,
        never a 500), and that failure makes SQLAlchemy replace every connection opened before it: every request
        after it succeeds, with no restart of the service."""
        own = settings.model_copy(update={"database_url": stoppable_postgres.database_url})
        async with serving(own, httpx.ASGITransport(app=_sandbox())) as client:
            await register_advertiser(client)
            path = f"/v1/advertisers/{ADVERTISER_ID}"
            # Several connections in the pool, each of which will be dead after the restart.
            assert {r.status_code for r in await asyncio.gather(*(client.get(path) for _ in range(8)))} == {200}
            await stoppable_postgres.stop()
            await stoppable_postgres.start()

            answers = [await client.get(path) for _ in range(10)]
            failed = [answer for answer in answers if answer.status_code != 200]
            assert len(failed) <= 1, [answer.status_code for answer in answers]
            for answer in failed:
                assert_problem(answer, 503, "database_unavailable")
            assert (
                await client.post(
                    "/v1/advertisers", json={"tiktok_advertiser_id": "7000000000000000002", "access_token": "t"}
                )
            ).status_code == 201

    @pytest.mark.tiktok_deadline(SHORT_DEADLINE_SECONDS)  # the 409 waits that long for the request that failed
    async def test_postgres_stopping_mid_apply(
        self, settings: Settings, stoppable_postgres: StoppablePostgres, fast_retries: None
    ) -> None:
        own = settings.model_copy(update={"database_url": stoppable_postgres.database_url})
        gate = GatedTransport(httpx.ASGITransport(app=_sandbox()), "authorize")
        transport = CountingTransport(gate)
        async with serving(own, transport) as client:
            await register_advertiser(client)
            applying = asyncio.create_task(apply(client, VIDEO_30D))
            await gate.wait_for(1)  # TikTok is applying the code; the intent is already committed
            await stoppable_postgres.stop()
            gate.open()

            response = await applying
            problem = assert_problem(response, 503, "database_unavailable")
            assert problem["retryable"] is True
            assert response.headers["retry-after"] == "2"
            assert_problem(await client.get("/readyz"), 503, "database_unavailable")
            assert_problem(await client.get(f"/v1/advertisers/{ADVERTISER_ID}"), 503, "database_unavailable")

            await stoppable_postgres.start()
            assert (await client.get("/readyz")).status_code == 200  # the same process: no restart
            assert (await client.get(f"/v1/advertisers/{ADVERTISER_ID}")).status_code == 200
            # The request that lost Postgres still owns the post until its claim runs out.
            assert_problem(await apply(client, VIDEO_30D), 409, "authorization_in_progress")
            with time_machine.travel(clock.utcnow() + _past_any_claim(own), tick=True):
                retried = await apply(client, VIDEO_30D)
            assert retried.status_code == 201, retried.text
            assert transport.count("authorize") == 1


class TestPairs:
    """Finding 4: both posts TikTok binds for a Duet/Stitch are tracked, and the shortcut checks both codes."""

    @pytest.mark.parametrize(
        ("code", "original", "kind"), [(DUET, DUET_ORIGINAL, "duet"), (STITCH, STITCH_ORIGINAL, "stitch")]
    )
    async def test_the_original_post_has_its_own_authorization(
        self, service: Any, code: str, original: str, kind: str
    ) -> None:
        client = (await service(httpx.ASGITransport(app=_sandbox()))).client
        pair = (await apply(client, code, original)).json()
        original_id = pair["original_post"]["authorization_id"]
        assert pair["original_post"]["kind"] == kind
        read = (await client.get(f"/v1/authorizations/{original_id}")).json()
        assert read["item_id"] == pair["original_post"]["item_id"]
        assert read["status"] == "active"
        assert read["original_post"] is None
        assert read["creator"]["tiktok_name"] != pair["creator"]["tiktok_name"]  # the primary creator
        assert read["auth_end_at"]
        assert read["code_hint"] == "…" + original[-4:]
        listed = (await client.get(f"/v1/advertisers/{ADVERTISER_ID}/authorizations")).json()["items"]
        assert {item["id"] for item in listed} == {pair["id"], original_id}
        # Applying the original's code alone later is the same authorization (D2).
        alone = await apply(client, original)
        assert (alone.status_code, alone.json()["id"]) == (200, original_id)

    async def test_the_same_duet_with_an_unrelated_original_is_refused(self, service: Any) -> None:
        client = (await service(httpx.ASGITransport(app=_sandbox()))).client
        assert (await apply(client, DUET, DUET_ORIGINAL)).status_code == 201
        assert_problem(await apply(client, DUET, UNRELATED_ORIGINAL), 422, "original_post_code_mismatch")
        assert_problem(await apply(client, DUET), 422, "original_post_code_required")

    async def test_the_same_pair_again_answers_from_what_is_stored(self, service: Any) -> None:
        transport = CountingTransport(httpx.ASGITransport(app=_sandbox()))
        client = (await service(transport)).client
        first = await apply(client, DUET, DUET_ORIGINAL)
        calls = len(transport.paths)
        again = await apply(client, DUET, DUET_ORIGINAL)
        assert (again.status_code, again.json()["id"]) == (200, first.json()["id"])
        assert len(transport.paths) == calls  # TikTok not asked
        swapped = await apply(client, DUET_ORIGINAL, DUET)  # the other way round: TikTok reads, nothing applied
        assert (swapped.status_code, swapped.json()["id"]) == (200, first.json()["id"])
        assert transport.count("authorize") == 1

    async def test_an_original_already_authorized_alone_is_linked_not_duplicated(
        self, service: Any, db: AsyncEngine
    ) -> None:
        client = (await service(httpx.ASGITransport(app=_sandbox()))).client
        alone = (await apply(client, DUET_ORIGINAL)).json()
        pair = (await apply(client, DUET, DUET_ORIGINAL)).json()
        assert pair["original_post"]["authorization_id"] == alone["id"]
        assert await count_rows(db, "authorizations") == 2

    async def test_a_pair_whose_answer_was_lost_is_settled_with_both_posts(self, service: Any, db: AsyncEngine) -> None:
        transport = CountingTransport(losing_first_authorize_answer(_sandbox()))
        client = (await service(transport)).client
        assert_problem(await apply(client, STITCH, STITCH_ORIGINAL), 504, "tiktok_timeout")
        assert [r["state"] for r in await authorizations_in_database(db)] == ["pending", "pending"]
        pair = await apply(client, STITCH, STITCH_ORIGINAL)
        assert pair.status_code == 201, pair.text
        rows = await authorizations_in_database(db)
        assert [r["state"] for r in rows] == ["active", "active"]
        assert pair.json()["original_post"]["authorization_id"] in {str(r["id"]) for r in rows}
        assert transport.count("authorize") == 1

    async def test_settle_activates_both_posts_of_a_pair_and_keeps_them_linked(
        self, service: Any, db: AsyncEngine
    ) -> None:
        started = await service(losing_first_authorize_answer(_sandbox()))
        assert_problem(await apply(started.client, DUET, DUET_ORIGINAL), 504, "tiktok_timeout")
        assert await _settle(started.app) == intake.SettleReport(activated=2)
        rows = await authorizations_in_database(db)
        assert [r["state"] for r in rows] == ["active", "active"]
        (duet,) = [r for r in rows if r["original_authorization_id"] is not None]
        (original,) = [r for r in rows if r is not duet]
        assert duet["original_authorization_id"] == original["id"]


class TestConcurrentApplies:
    async def test_concurrent_applies_of_one_pair_make_one_authorize_call(self, service: Any, db: AsyncEngine) -> None:
        transport = CountingTransport(httpx.ASGITransport(app=_sandbox()))
        client = (await service(transport)).client
        responses = await asyncio.gather(
            *(apply(client, DUET, DUET_ORIGINAL) for _ in range(3)),
            *(apply(client, DUET_ORIGINAL, DUET) for _ in range(2)),
        )
        assert sorted(r.status_code for r in responses) == [200, 200, 200, 200, 201], [r.text for r in responses]
        assert len({r.json()["id"] for r in responses}) == 1
        assert transport.count("authorize") == 1
        assert await count_rows(db, "authorizations") == 2

    async def test_two_replicas_applying_one_code_make_one_authorize_call(
        self, service: Any, settings: Settings, db: AsyncEngine
    ) -> None:
        """Two processes on one database (two engines, two pools), one TikTok: the claim is in Postgres."""
        transport = CountingTransport(httpx.ASGITransport(app=_sandbox()))
        first = (await service(transport)).client
        async with running(settings, transport) as second:
            responses = await asyncio.gather(
                *(apply(client, VIDEO_30D) for client in (first, second.client) for _ in range(3))
            )
        assert sorted(r.status_code for r in responses) == [200, 200, 200, 200, 200, 201], [r.text for r in responses]
        assert len({r.json()["id"] for r in responses}) == 1
        assert transport.count("authorize") == 1
        assert await count_rows(db, "authorizations") == 1
