"""Batches of up to 20 codes (D11, D13), Duet/Stitch pairs in any order (D12), and one TikTok rate budget shared by
every replica. As a caller sees it, on the real database, against the sandbox."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.authorizations import batch as batch_module
from app.authorizations.batch import CONCURRENCY
from app.kit.rate_budget import PostgresCallBudget
from app.kit.settings import Settings
from dev.sandbox.app import create_sandbox_app
from dev.sandbox.seed import bulk_code
from tests.api.helpers import CountingTransport, GatedTransport, apply, assert_problem, count_rows
from tests.conftest import ADVERTISER_ID, register_advertiser, running

BATCH = f"/v1/advertisers/{ADVERTISER_ID}/authorizations/batch"
DUET = "#SBX+duet/secondary="
DUET_ORIGINAL = "#SBX+duet/original="
STITCH = "#SBX+stitch/secondary="
STITCH_ORIGINAL = "#SBX+stitch/original="
SHORT_DUET = "#SBX+duet-short-original/secondary="
SHORT_ORIGINAL = "#SBX+duet-short-original/original="
EXPIRED_DUET = "#SBX+duet-expired-original/secondary="
EXPIRED_ORIGINAL = "#SBX+duet-expired-original/original="


def _items(*codes: str | tuple[str, str]) -> dict[str, Any]:
    return {
        "items": [
            {"auth_code": code} if isinstance(code, str) else {"auth_code": code[0], "original_post_auth_code": code[1]}
            for code in codes
        ]
    }


def _outcomes(response: httpx.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return [result["outcome"] for result in response.json()["results"]]


class TestBatch:
    async def test_each_code_is_answered_in_order(self, service: Any, db: AsyncEngine) -> None:
        client = (await service(httpx.ASGITransport(app=create_sandbox_app()))).client
        codes = [bulk_code(n) for n in range(3)]
        response = await client.post(BATCH, json=_items(*codes))
        assert _outcomes(response) == ["created", "created", "created"]
        results = response.json()["results"]
        assert [r["index"] for r in results] == [0, 1, 2]
        assert [r["authorization"]["code_hint"] for r in results] == ["…" + code[-4:] for code in codes]
        assert all(r["problem"] is None for r in results)

        again = await client.post(BATCH, json=_items(*codes))
        assert _outcomes(again) == ["existing", "existing", "existing"]
        assert [r["authorization"]["id"] for r in again.json()["results"]] == [
            r["authorization"]["id"] for r in results
        ]
        assert await count_rows(db, "authorizations") == 3

    async def test_one_bad_code_never_spoils_the_others(self, service: Any, db: AsyncEngine) -> None:
        client = (await service(httpx.ASGITransport(app=create_sandbox_app()))).client
        response = await client.post(
            BATCH,
            json=_items(
                bulk_code(0), "#SBX+expired/error=", "#SBX+fault/system-error=", DUET, "#SBX+post/banned=", bulk_code(1)
            ),
        )
        assert _outcomes(response) == ["created", "rejected", "failed", "rejected", "rejected", "created"]
        results = response.json()["results"]
        # The same problem bodies a single code gets.
        single = await apply(client, "#SBX+expired/error=")
        assert {k: v for k, v in results[1]["problem"].items() if k not in ("instance", "tiktok")} == {
            k: v for k, v in single.json().items() if k not in ("instance", "tiktok")
        }
        assert (results[2]["problem"]["reason"], results[2]["problem"]["retryable"]) == ("tiktok_unavailable", True)
        assert results[3]["problem"]["reason"] == "original_post_code_required"
        assert results[3]["problem"]["original_item_id"]
        assert results[4]["problem"]["reason"] == "post_banned"
        assert await count_rows(db, "authorizations") == 2

    async def test_the_same_code_twice_is_one_authorization(self, service: Any, db: AsyncEngine) -> None:
        transport = CountingTransport(httpx.ASGITransport(app=create_sandbox_app()))
        client = (await service(transport)).client
        response = await client.post(BATCH, json=_items(bulk_code(7), f"  {bulk_code(7)} "))
        assert _outcomes(response) == ["created", "existing"]
        first, second = (r["authorization"]["id"] for r in response.json()["results"])
        assert first == second
        assert (transport.count("info"), transport.count("authorize")) == (1, 1)
        assert await count_rows(db, "authorizations") == 1

    @pytest.mark.parametrize(
        ("body", "reason"),
        [
            ({"items": []}, "request_invalid"),
            ({"items": [{"auth_code": bulk_code(n)} for n in range(21)]}, "request_invalid"),
            # Not a code at all: the single-code call's reason, with `errors` naming the items.
            (_items(bulk_code(0), "not a code"), "auth_code_invalid"),
            (_items(bulk_code(0), (bulk_code(1), "bad code!")), "auth_code_invalid"),
            ({"items": [{"auth_code": bulk_code(0), "extra": 1}]}, "request_invalid"),
            ({}, "request_invalid"),
        ],
        ids=["empty", "21-items", "one-not-a-code", "original-not-a-code", "extra-field", "no-items"],
    )
    async def test_a_malformed_request_is_refused_whole_and_changes_nothing(
        self, service: Any, db: AsyncEngine, body: dict[str, Any], reason: str
    ) -> None:
        transport = CountingTransport(httpx.ASGITransport(app=create_sandbox_app()))
        client = (await service(transport)).client
        calls = len(transport.paths)
        problem = assert_problem(await client.post(BATCH, json=body), 422, reason)
        assert problem["errors"]
        assert "#SBX" not in str(problem)
        assert len(transport.paths) == calls
        assert await count_rows(db, "authorizations") == 0

    async def test_twenty_codes_go_to_tiktok_at_once_holding_no_connection(self, service: Any) -> None:
        gate = GatedTransport(httpx.ASGITransport(app=create_sandbox_app()), "info", held=False)
        started = await service(gate)
        gate.hold()
        batch = asyncio.create_task(started.client.post(BATCH, json=_items(*(bulk_code(n) for n in range(20)))))
        await gate.wait_for(20)
        assert CONCURRENCY >= 20
        assert started.app.state.engine.pool.checkedout() == 0  # no connection held while TikTok answers
        gate.open()
        assert _outcomes(await batch) == ["created"] * 20

    async def test_the_calls_in_flight_are_bounded(self, service: Any, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(batch_module, "CONCURRENCY", 5)
        monkeypatch.setattr(batch_module.apply_batch, "__kwdefaults__", {"concurrency": 5})
        gate = GatedTransport(httpx.ASGITransport(app=create_sandbox_app()), "info", held=False)
        started = await service(gate)
        gate.hold()
        batch = asyncio.create_task(started.client.post(BATCH, json=_items(*(bulk_code(n) for n in range(12)))))
        await gate.wait_for(5)
        await asyncio.sleep(0.2)  # room for a sixth, were there no bound
        assert gate.waiting == 5
        gate.open()
        assert _outcomes(await batch) == ["created"] * 12

    async def test_a_failure_late_in_the_batch_loses_none_of_the_earlier_ones(
        self, service: Any, db: AsyncEngine, settings: Settings
    ) -> None:
        sandbox = create_sandbox_app()
        inner = httpx.ASGITransport(app=sandbox)
        doomed = bulk_code(19)

        async def last_one_fails(request: httpx.Request) -> httpx.Response:
            if request.url.path.endswith("/tt_video/authorize/") and doomed in request.content.decode():
                await asyncio.sleep(0.1)  # after the others
                return httpx.Response(200, json={"code": 40001, "message": "No permission", "data": {}})
            return await inner.handle_async_request(request)

        # A deadline no busy machine runs out of: what is tested is the one refusal, not twenty timeouts.
        patient = settings.model_copy(update={"tiktok_deadline_seconds": 30.0})
        client = (await service(httpx.MockTransport(last_one_fails), patient)).client
        response = await client.post(BATCH, json=_items(*(bulk_code(n) for n in range(20))))
        assert _outcomes(response) == ["created"] * 19 + ["rejected"]
        assert await count_rows(db, "authorizations") == 19


class TestPairs:
    """D12: the primary creator's code (the original) in `original_post_auth_code`, the secondary's in `auth_code`."""

    @pytest.mark.parametrize(
        "items",
        [
            (DUET, DUET_ORIGINAL),  # the Duet first
            (DUET_ORIGINAL, DUET),  # the original first
        ],
    )
    async def test_two_items_of_one_pair_are_applied_together(
        self, service: Any, db: AsyncEngine, items: tuple[str, str]
    ) -> None:
        transport = CountingTransport(httpx.ASGITransport(app=create_sandbox_app()))
        client = (await service(transport)).client
        response = await client.post(BATCH, json=_items(bulk_code(0), *items))
        assert _outcomes(response) == ["created", "created", "created"]
        results = response.json()["results"]
        assert results[1]["authorization"]["id"] == results[2]["authorization"]["id"]
        assert (results[1]["paired_with"], results[2]["paired_with"]) == (2, 1)
        assert results[1]["authorization"]["original_post"]["kind"] == "duet"
        assert transport.count("authorize") == 2  # one for the pair, one for the other code
        assert await count_rows(db, "authorizations") == 3

    async def test_a_pair_in_one_item_given_swapped_says_so(self, service: Any) -> None:
        client = (await service(httpx.ASGITransport(app=create_sandbox_app()))).client
        response = await client.post(BATCH, json=_items((STITCH_ORIGINAL, STITCH)))
        (result,) = response.json()["results"]
        assert result["outcome"] == "created"
        assert [w["reason"] for w in result["authorization"]["warnings"]] == ["codes_reordered"]
        single = await apply(client, STITCH_ORIGINAL, STITCH)
        assert single.status_code == 200  # the same pair
        assert [w["reason"] for w in single.json()["warnings"]] == ["codes_reordered"]

    async def test_a_pair_records_both_creators_and_each_codes_window(self, service: Any) -> None:
        client = (await service(httpx.ASGITransport(app=create_sandbox_app()))).client
        pair = (await apply(client, SHORT_DUET, SHORT_ORIGINAL)).json()
        original = (await client.get(f"/v1/authorizations/{pair['original_post']['authorization_id']}")).json()
        assert pair["secondary_creator"] == pair["creator"]
        assert pair["primary_creator"] == original["creator"]
        assert pair["primary_creator"] != pair["secondary_creator"]
        own, originals = pair["code_window"], pair["original_post"]["code_window"]
        assert datetime.fromisoformat(own["end_at"]) - datetime.fromisoformat(own["start_at"]) == timedelta(days=60)
        assert originals == original["code_window"]
        # Usable while both codes are: until the earlier end (the original's, 7 days).
        assert pair["auth_end_at"] == originals["end_at"] < own["end_at"]
        assert original["primary_creator"] is None  # the original is no pair itself

    async def test_a_pair_whose_original_code_expired_is_refused(self, service: Any, db: AsyncEngine) -> None:
        client = (await service(httpx.ASGITransport(app=create_sandbox_app()))).client
        problem = assert_problem(await apply(client, EXPIRED_DUET, EXPIRED_ORIGINAL), 422, "auth_code_expired")
        assert problem["item_id"]
        response = await client.post(BATCH, json=_items(EXPIRED_DUET, EXPIRED_ORIGINAL))
        assert _outcomes(response) == ["rejected", "rejected"]
        assert await count_rows(db, "authorizations") == 0

    async def test_a_duet_with_the_code_of_another_post_is_refused(self, service: Any) -> None:
        client = (await service(httpx.ASGITransport(app=create_sandbox_app()))).client
        response = await client.post(BATCH, json=_items((DUET, "#SBX+original/unrelated=")))
        (result,) = response.json()["results"]
        assert (result["outcome"], result["problem"]["reason"]) == ("rejected", "original_post_code_mismatch")


class TestRateBudget:
    """TikTok counts calls per developer app, whichever replica sends them: one budget in Postgres for all."""

    async def test_three_replicas_never_send_more_than_the_budget_in_any_second(
        self, settings: Settings, db: AsyncEngine, fast_retries: None
    ) -> None:
        sandbox = create_sandbox_app()
        budgeted = settings.model_copy(update={"tiktok_qps": 5, "tiktok_deadline_seconds": 60.0})
        transport = httpx.ASGITransport(app=sandbox)
        async with (
            running(budgeted, transport) as first,
            running(budgeted, transport) as second,
            running(budgeted, transport) as third,
        ):
            await register_advertiser(first.client)
            sandbox.state.sandbox.calls.clear()
            replicas = [first.client, second.client, third.client]
            responses = await asyncio.gather(
                *(
                    replicas[n % 3].post(BATCH, json=_items(*(bulk_code(n * 5 + k) for k in range(5))))
                    for n in range(12)
                )
            )
        assert all(_outcomes(response) == ["created"] * 5 for response in responses)
        assert len(sandbox.state.sandbox.calls) == 120  # 60 codes: info and authorize each
        assert sandbox.state.sandbox.max_calls_in_any_second() <= 5

    async def test_callers_racing_to_make_the_budget_all_get_a_turn(self, settings: Settings, db: AsyncEngine) -> None:
        """The budget's row is made by its first user. Callers that found no row while another made it must take
        a turn from the new row, not report the budget as spent (it once did: 503 on a fresh budget)."""
        async with running(settings, httpx.ASGITransport(app=create_sandbox_app())) as started:
            budget = PostgresCallBudget(started.app.state.engine, qps=50, name="race")
            for _ in range(5):
                async with db.begin() as connection:
                    await connection.execute(text("DELETE FROM call_turns WHERE name = 'race'"))
                await asyncio.gather(*(budget.take_turn(max_wait_seconds=5.0) for _ in range(20)))

    async def test_waiting_is_not_failing_until_the_deadline_then_rate_limited_with_retry_after(
        self, settings: Settings, db: AsyncEngine, fast_retries: None
    ) -> None:
        """At 1 call a second with a 2.5 s deadline, four codes at once (eight calls): some wait their turn and are
        applied; those whose turn would come after their deadline are 503 with Retry-After, and nothing is left."""
        tight = settings.model_copy(update={"tiktok_qps": 1, "tiktok_deadline_seconds": 2.5})
        async with running(tight, httpx.ASGITransport(app=create_sandbox_app())) as started:
            client = started.client
            await register_advertiser(client)
            responses = await asyncio.gather(*(apply(client, bulk_code(n)) for n in range(4)))
            statuses = sorted(response.status_code for response in responses)
            assert 201 in statuses
            assert 503 in statuses
            limited = [response for response in responses if response.status_code == 503]
            for response in limited:
                problem = assert_problem(response, 503, "tiktok_rate_limited")
                assert problem["retryable"] is True
                assert int(response.headers["retry-after"]) >= 1
            assert await count_rows(db, "authorizations") == statuses.count(201)


class TestSafeRetries:
    async def test_a_batch_with_items_that_failed_for_now_is_not_replayed(self, service: Any) -> None:
        """Retried with the same Idempotency-Key, the failed items run again (a replay would fail them for ever)."""
        sandbox = create_sandbox_app()
        inner = httpx.ASGITransport(app=sandbox)
        outage = [True]

        async def authorize_down_once(request: httpx.Request) -> httpx.Response:
            if request.url.path.endswith("/tt_video/authorize/") and outage:
                outage.clear()
                return httpx.Response(200, json={"code": 50000, "message": "System error", "data": {}})
            return await inner.handle_async_request(request)

        client = (await service(httpx.MockTransport(authorize_down_once))).client
        headers = {"Idempotency-Key": "batch-1"}
        body = _items(bulk_code(0))
        first = await client.post(BATCH, json=body, headers=headers)
        assert _outcomes(first) == ["failed"]
        again = await client.post(BATCH, json=body, headers=headers)
        assert _outcomes(again) == ["created"]
        replay = await client.post(BATCH, json=body, headers=headers)
        assert replay.content == again.content  # a batch whose items all succeeded is kept and replayed
        assert replay.headers["idempotent-replayed"] == "true"
