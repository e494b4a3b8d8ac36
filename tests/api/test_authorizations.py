"""Intake of one creator's code, as a caller sees it: over HTTP, on the real database, against the sandbox."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import logging
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import time_machine
from cryptography.fernet import Fernet
from fastapi import FastAPI
from pydantic import SecretStr
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.authorizations import repository
from app.authorizations.models import Authorization
from app.authorizations.schemas import AuthorizationRead
from app.kit import clock
from app.kit.crypto import SecretBox
from dev.sandbox.app import create_sandbox_app
from tests.api.helpers import CountingTransport, apply, assert_problem, count_rows, dump_database
from tests.conftest import ADVERTISER_ID, SHORT_DEADLINE_SECONDS, register_advertiser, serving

VIDEO_30D = "#SBX+video/30d="
VIDEO_7D = "#SBX+video/7d="
DUET = "#SBX+duet/secondary="
DUET_ORIGINAL = "#SBX+duet/original="
STITCH = "#SBX+stitch/secondary="
STITCH_ORIGINAL = "#SBX+stitch/original="
UNRELATED_ORIGINAL = "#SBX+original/unrelated="


def _unsigned(payload: Any) -> str:
    """A cursor as the service made them before they were signed: base64 of JSON, which anyone can write."""
    return base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=")


def _parse(value: str) -> datetime:
    return datetime.fromisoformat(value)


@pytest.fixture
async def counted(settings: Any, db: AsyncEngine, fast_retries: None) -> Any:
    """An app whose calls to the sandbox are counted, with a client and a registered ad account."""
    transport = CountingTransport(httpx.ASGITransport(app=create_sandbox_app(slow_seconds=30.0)))
    async with serving(settings, transport) as client:
        await register_advertiser(client)
        transport.paths.clear()
        yield client, transport


class TestApplyCode:
    async def test_valid_code_is_applied_and_stored_with_tiktoks_window(
        self, client: httpx.AsyncClient, advertiser: dict[str, Any]
    ) -> None:
        response = await apply(client, VIDEO_30D)
        assert response.status_code == 201, response.text
        body = response.json()
        assert body["advertiser_id"] == ADVERTISER_ID
        assert body["item_id"].isdigit()
        assert body["item_type"] == "VIDEO"
        assert body["creator"]["identity_type"] == "AUTH_CODE"
        assert body["creator"]["identity_id"] and body["creator"]["tiktok_name"]
        assert body["caption"]
        assert body["video_duration_seconds"] > 0
        assert body["post_status"] == "HESITATE_RECOMMEND"
        assert body["original_post"] is None
        assert body["status"] == "active"
        assert body["tiktok_auth_status"] == "AUTHORIZED"
        assert body["code_hint"] == "…30d="
        assert body["warnings"] == []
        # D3: the window is TikTok's, as reported.
        assert _parse(body["auth_end_at"]) - _parse(body["auth_start_at"]) == timedelta(days=30)

        read = await client.get(f"/v1/authorizations/{body['id']}")
        assert read.status_code == 200
        assert read.json() == body

    @pytest.mark.parametrize("days", [7, 30, 60, 365])
    async def test_every_window_length_is_stored_as_reported(
        self, client: httpx.AsyncClient, advertiser: dict[str, Any], days: int
    ) -> None:
        body = (await apply(client, f"#SBX+video/{days}d=")).json()
        assert _parse(body["auth_end_at"]) - _parse(body["auth_start_at"]) == timedelta(days=days)

    async def test_applying_the_same_code_twice_is_the_same_authorization(self, counted: Any, db: AsyncEngine) -> None:
        """D2: one code, one post, one authorization; the retry does not even reach TikTok."""
        client, transport = counted
        first = await apply(client, VIDEO_30D)
        calls_after_first = len(transport.paths)
        second = await apply(client, f"  {VIDEO_30D}\n")  # pasted with surrounding whitespace
        assert (first.status_code, second.status_code) == (201, 200)
        assert second.json()["id"] == first.json()["id"]
        assert len(transport.paths) == calls_after_first
        assert await count_rows(db, "authorizations") == 1

    async def test_a_new_code_for_an_authorized_post_renews_the_same_authorization(
        self, counted: Any, db: AsyncEngine
    ) -> None:
        """D2: the authorization is (ad account, post); the new code's window is TikTok's new report."""
        client, transport = counted
        first = await apply(client, VIDEO_30D)
        renewed = await apply(client, "#SBX+video/30d-renewed=")
        assert (first.status_code, renewed.status_code) == (201, 200)
        assert renewed.json()["id"] == first.json()["id"]
        assert renewed.json()["code_hint"] == "…wed="
        assert _parse(renewed.json()["auth_end_at"]) - _parse(renewed.json()["auth_start_at"]) == timedelta(days=60)
        assert transport.count("authorize") == 2
        assert await count_rows(db, "authorizations") == 1
        # The old code now finds the same authorization too, from TikTok (its fingerprint was replaced).
        again = await apply(client, VIDEO_30D)
        assert (again.status_code, again.json()["id"]) == (200, first.json()["id"])

    async def test_concurrent_applies_of_one_code_make_one_authorization_and_one_tiktok_apply(
        self, counted: Any, db: AsyncEngine
    ) -> None:
        """D2 under concurrency: the post lock lets one request apply; the others find its row."""
        client, transport = counted
        responses = await asyncio.gather(*(apply(client, VIDEO_30D) for _ in range(4)))
        assert sorted(r.status_code for r in responses) == [200, 200, 200, 201]
        assert len({r.json()["id"] for r in responses}) == 1
        assert transport.count("authorize") == 1
        assert await count_rows(db, "authorizations") == 1

    async def test_codes_for_different_posts_are_different_authorizations(
        self, client: httpx.AsyncClient, advertiser: dict[str, Any]
    ) -> None:
        first = await apply(client, VIDEO_30D)
        second = await apply(client, "#SBX+video/30d-b=")
        assert (first.status_code, second.status_code) == (201, 201)
        assert first.json()["item_id"] != second.json()["item_id"]

    async def test_carousel_is_accepted_without_a_duration(
        self, client: httpx.AsyncClient, advertiser: dict[str, Any]
    ) -> None:
        response = await apply(client, "#SBX+carousel/30d=")
        assert response.status_code == 201
        assert response.json()["item_type"] == "CAROUSEL"
        assert response.json()["video_duration_seconds"] is None

    @pytest.mark.parametrize(
        ("code", "status"),
        [
            ("#SBX+visibility/private=", "ONLY_AUTHOR_SEE"),
            ("#SBX+visibility/friends-only=", "ONLY_FRIEND_SEE"),
        ],
    )
    async def test_private_post_is_accepted_with_a_warning_that_it_becomes_public(
        self, client: httpx.AsyncClient, advertiser: dict[str, Any], code: str, status: str
    ) -> None:
        """D5."""
        response = await apply(client, code)
        assert response.status_code == 201
        assert response.json()["post_status"] == status
        assert [w["reason"] for w in response.json()["warnings"]] == ["post_will_become_public"]

    async def test_video_exactly_at_the_limit_is_accepted(
        self, client: httpx.AsyncClient, advertiser: dict[str, Any]
    ) -> None:
        """D9: 10 minutes or shorter."""
        response = await apply(client, "#SBX+duration/600s=")
        assert response.status_code == 201
        assert response.json()["video_duration_seconds"] == 600

    async def test_post_mentioning_one_video_is_accepted(
        self, client: httpx.AsyncClient, advertiser: dict[str, Any]
    ) -> None:
        assert (await apply(client, "#SBX+mentions/one=")).status_code == 201

    async def test_unknown_ad_account_is_404(self, client: httpx.AsyncClient) -> None:
        assert_problem(await apply(client, VIDEO_30D, advertiser_id="123"), 404, "advertiser_not_found")


class TestRefusals:
    """Every refusal is a 422 problem with a stable reason, and writes nothing."""

    @pytest.mark.parametrize(
        ("code", "reason"),
        [
            ("not a code", "auth_code_invalid"),
            ("short", "auth_code_invalid"),
            ("#SBX+vidéo/30d=", "auth_code_invalid"),
            ("#SBX+" + "A" * 600, "auth_code_invalid"),
            ("#SBX+code/format-error=", "auth_code_invalid"),  # TikTok says so
            ("#SBX+never/issued=", "auth_code_not_found"),
            ("#SBX+code/deleted=", "auth_code_not_found"),
            ("#SBX+expired/error=", "auth_code_expired"),  # TikTok answers an error
            ("#SBX+expired/status=", "auth_code_expired"),  # TikTok answers the post with an ended window
            ("#SBX+post/deleted=", "post_deleted"),
            ("#SBX+post/banned=", "post_banned"),  # D8
            ("#SBX+post/removed=", "post_banned"),  # D8
            ("#SBX+duration/900s=", "video_too_long"),  # D9
            ("#SBX+duet/multi-level=", "multi_level_duet_stitch"),  # D12
            ("#SBX+mentions/two=", "mentions_multiple_videos"),  # D12
            ("#SBX+duet/carousel=", "carousel_duet_not_supported"),
            (DUET, "original_post_code_required"),  # D12
            (STITCH, "original_post_code_required"),  # D12
        ],
    )
    async def test_refused_with_a_precise_reason(
        self, client: httpx.AsyncClient, advertiser: dict[str, Any], db: AsyncEngine, code: str, reason: str
    ) -> None:
        problem = assert_problem(await apply(client, code), 422, reason)
        assert problem["retryable"] is False
        assert code not in str(problem)
        assert await count_rows(db, "authorizations") == 0

    async def test_tiktoks_words_are_kept_for_the_caller(
        self, client: httpx.AsyncClient, advertiser: dict[str, Any]
    ) -> None:
        problem = assert_problem(await apply(client, "#SBX+expired/error="), 422, "auth_code_expired")
        assert problem["tiktok"]["code"] == 40002
        assert "auth_code_expired" in problem["tiktok"]["message"]
        assert problem["tiktok"]["request_id"]

    async def test_missing_original_code_names_the_original_post(
        self, client: httpx.AsyncClient, advertiser: dict[str, Any]
    ) -> None:
        problem = assert_problem(await apply(client, DUET), 422, "original_post_code_required")
        original = (await apply(client, DUET_ORIGINAL)).json()
        assert problem["original_item_id"] == original["item_id"]

    async def test_too_long_video_says_how_long(self, client: httpx.AsyncClient, advertiser: dict[str, Any]) -> None:
        problem = assert_problem(await apply(client, "#SBX+duration/900s="), 422, "video_too_long")
        assert (problem["duration_seconds"], problem["max_duration_seconds"]) == (900, 600)

    async def test_duration_limit_is_a_policy_setting(
        self, settings: Any, sandbox: Any, db: AsyncEngine, fast_retries: None
    ) -> None:
        strict = settings.model_copy(update={"max_video_duration_seconds": 300.0})
        async with serving(strict, httpx.ASGITransport(app=sandbox)) as client:
            await register_advertiser(client)
            assert_problem(await apply(client, "#SBX+duration/600s="), 422, "video_too_long")

    async def test_a_refusal_tiktok_does_not_explain_is_tiktok_rejected(
        self, settings: Any, db: AsyncEngine, fast_retries: None
    ) -> None:
        sandbox = create_sandbox_app()

        async def unknown_refusal(request: httpx.Request) -> httpx.Response:
            if request.url.path.endswith("/tt_video/info/"):
                body = {"code": 41999, "message": "Something new", "request_id": "r-41999", "data": {}}
                return httpx.Response(200, json=body)
            return await httpx.ASGITransport(app=sandbox).handle_async_request(request)

        async with serving(settings, httpx.MockTransport(unknown_refusal)) as client:
            await register_advertiser(client)
            problem = assert_problem(await apply(client, VIDEO_30D), 422, "tiktok_rejected")
        assert problem["tiktok"] == {"code": 41999, "message": "Something new", "request_id": "r-41999"}
        assert problem["retryable"] is False
        assert await count_rows(db, "authorizations") == 0

    async def test_access_token_tiktok_no_longer_accepts(
        self, app: FastAPI, client: httpx.AsyncClient, advertiser: dict[str, Any], db: AsyncEngine
    ) -> None:
        box: SecretBox = app.state.secret_box
        async with db.begin() as connection:
            await connection.execute(
                text("UPDATE advertisers SET access_token_encrypted = :token"),
                {"token": box.encrypt("expired-token")},
            )
        problem = assert_problem(await apply(client, VIDEO_30D), 422, "access_token_invalid")
        assert problem["tiktok"]["code"] == 40102
        assert await count_rows(db, "authorizations") == 0

    @pytest.mark.parametrize(
        "body",
        [
            {},
            {"auth_code": None},
            {"auth_code": 12345678},
            {"auth_code": ""},
            {"auth_code": "#SBX+video/30d=", "original_post_auth_code": ""},
            {"auth_code": "#SBX+video/30d=", "unexpected": True},
            {"auth_code": "#SBX+" + "x" * 5000},
            ["#SBX+video/30d="],
        ],
    )
    async def test_malformed_bodies_are_422_without_echoing_input(
        self, client: httpx.AsyncClient, advertiser: dict[str, Any], db: AsyncEngine, body: Any
    ) -> None:
        response = await client.post(f"/v1/advertisers/{ADVERTISER_ID}/authorizations", json=body)
        problem = assert_problem(response, 422, "request_invalid")
        assert "#SBX" not in response.text
        assert all(set(error) == {"loc", "msg", "type"} for error in problem["errors"])
        assert await count_rows(db, "authorizations") == 0


class TestDuetAndStitch:
    """D12: the secondary creator's code first, then the primary's; both are needed."""

    @pytest.mark.parametrize(
        ("code", "original", "kind"), [(DUET, DUET_ORIGINAL, "duet"), (STITCH, STITCH_ORIGINAL, "stitch")]
    )
    async def test_applied_with_the_original_posts_code(
        self, client: httpx.AsyncClient, advertiser: dict[str, Any], code: str, original: str, kind: str
    ) -> None:
        response = await apply(client, code, original)
        assert response.status_code == 201, response.text
        body = response.json()
        assert body["original_post"]["kind"] == kind
        assert body["original_post"]["item_id"] != body["item_id"]

    @pytest.mark.parametrize(("code", "original"), [(DUET, DUET_ORIGINAL), (STITCH, STITCH_ORIGINAL)])
    async def test_codes_in_the_wrong_order_are_put_right(self, counted: Any, code: str, original: str) -> None:
        client, transport = counted
        right = await apply(client, original, code)  # the original's code first: the wrong way round
        assert right.status_code == 201, right.text
        assert right.json()["original_post"] is not None
        assert right.json()["code_hint"] == "…" + code[-4:]
        assert transport.count("authorize") == 1

    async def test_code_of_another_post_as_original_is_refused(
        self, client: httpx.AsyncClient, advertiser: dict[str, Any], db: AsyncEngine
    ) -> None:
        assert_problem(await apply(client, DUET, UNRELATED_ORIGINAL), 422, "original_post_code_mismatch")
        assert await count_rows(db, "authorizations") == 0

    async def test_original_code_for_a_post_that_is_no_duet_is_refused(
        self, client: httpx.AsyncClient, advertiser: dict[str, Any]
    ) -> None:
        assert_problem(await apply(client, VIDEO_30D, UNRELATED_ORIGINAL), 422, "original_post_code_unexpected")

    async def test_unusable_original_post_is_refused(
        self, client: httpx.AsyncClient, advertiser: dict[str, Any]
    ) -> None:
        assert_problem(await apply(client, DUET, "#SBX+expired/error="), 422, "auth_code_expired")


class TestTikTokFaults:
    """Transient faults are retried inside a deadline, then answered 502/503/504 with retryable; nothing written."""

    @pytest.mark.parametrize(
        ("code", "status", "reason"),
        [
            ("#SBX+fault/rate-limited=", 503, "tiktok_rate_limited"),
            ("#SBX+fault/system-error=", 503, "tiktok_unavailable"),
            ("#SBX+fault/http-503=", 503, "tiktok_unavailable"),
            ("#SBX+fault/malformed=", 502, "tiktok_bad_response"),
            pytest.param(
                "#SBX+fault/slow=", 504, "tiktok_timeout", marks=pytest.mark.tiktok_deadline(SHORT_DEADLINE_SECONDS)
            ),
        ],
    )
    async def test_fault_is_answered_retryable_and_writes_nothing(
        self, counted: Any, settings: Any, db: AsyncEngine, code: str, status: int, reason: str
    ) -> None:
        client, transport = counted
        response = await apply(client, code)
        problem = assert_problem(response, status, reason)
        assert problem["retryable"] is True
        if reason == "tiktok_rate_limited":
            assert response.headers["retry-after"] == "1"
        assert await count_rows(db, "authorizations") == 0
        if reason != "tiktok_timeout":
            assert transport.count("info") == settings.tiktok_max_attempts  # every attempt configured was made

    async def test_a_fault_that_clears_is_ridden_out_by_retries(self, counted: Any, db: AsyncEngine) -> None:
        """The sandbox fails the first two calls of each endpoint. Reads are retried within the request; an
        authorize that fails is not (TikTok may have applied it): the caller's retry settles, then applies."""
        client, transport = counted
        assert_problem(await apply(client, "#SBX+fault/flaky="), 503, "tiktok_unavailable")
        assert transport.count("info") == 3  # two failures, then the answer, within the first request
        assert_problem(await apply(client, "#SBX+fault/flaky="), 503, "tiktok_unavailable")
        response = await apply(client, "#SBX+fault/flaky=")
        assert response.status_code == 201, response.text
        assert transport.count("authorize") == 3
        assert await count_rows(db, "authorizations") == 1


class TestExpiry:
    """D3: an authorization whose end has passed reads as expired at once, whether or not any job has run."""

    async def test_expired_one_second_after_the_end_and_not_before(
        self, client: httpx.AsyncClient, advertiser: dict[str, Any]
    ) -> None:
        created = (await apply(client, VIDEO_7D)).json()
        end = _parse(created["auth_end_at"])
        path = f"/v1/authorizations/{created['id']}"
        listing = f"/v1/advertisers/{ADVERTISER_ID}/authorizations"
        with time_machine.travel(end - timedelta(seconds=1), tick=False):
            assert (await client.get(path)).json()["status"] == "active"
            assert [i["id"] for i in (await client.get(listing, params={"status": "active"})).json()["items"]] == [
                created["id"]
            ]
            assert (await client.get(listing, params={"status": "expired"})).json()["items"] == []
        with time_machine.travel(end + timedelta(seconds=1), tick=False):
            assert (await client.get(path)).json()["status"] == "expired"
            assert (await client.get(listing, params={"status": "active"})).json()["items"] == []
            assert [i["id"] for i in (await client.get(listing, params={"status": "expired"})).json()["items"]] == [
                created["id"]
            ]

    async def test_one_request_reads_the_clock_once(
        self, client: httpx.AsyncClient, advertiser: dict[str, Any], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Finding 8: the list read `now` twice, so an item filtered as active could be shown as expired."""
        created = (await apply(client, VIDEO_7D)).json()
        end = _parse(created["auth_end_at"])
        # A clock that moves past the window's end between one reading and the next.
        readings = iter([end - timedelta(seconds=1), end + timedelta(seconds=1)])
        monkeypatch.setattr(clock, "utcnow", lambda: next(readings, end + timedelta(days=1)))
        page = await client.get(f"/v1/advertisers/{ADVERTISER_ID}/authorizations", params={"status": "active"})
        assert [(item["id"], item["status"]) for item in page.json()["items"]] == [(created["id"], "active")]

    async def test_reapplying_after_the_window_ended_asks_tiktok_again(self, counted: Any, db: AsyncEngine) -> None:
        """A stored, expired authorization is no answer to a new apply: TikTok's current view decides."""
        client, transport = counted
        created = (await apply(client, VIDEO_7D)).json()
        info_calls = transport.count("info")
        with time_machine.travel(_parse(created["auth_end_at"]) + timedelta(days=1), tick=False):
            # The sandbox's window has ended too, so TikTok's answer is that the code expired.
            assert_problem(await apply(client, VIDEO_7D), 422, "auth_code_expired")
        assert transport.count("info") == info_calls + 1
        assert await count_rows(db, "authorizations") == 1


class TestListAuthorizations:
    async def test_pages_newest_first_until_the_end(
        self, client: httpx.AsyncClient, advertiser: dict[str, Any]
    ) -> None:
        codes = [
            "#SBX+video/7d=",
            "#SBX+video/30d=",
            "#SBX+video/30d-b=",
            "#SBX+video/60d=",
            "#SBX+video/365d=",
        ]
        ids = [(await apply(client, code)).json()["id"] for code in codes]
        seen: list[str] = []
        cursor = None
        while True:
            params: dict[str, Any] = {"limit": 2}
            if cursor:
                params["cursor"] = cursor
            page = (await client.get(f"/v1/advertisers/{ADVERTISER_ID}/authorizations", params=params)).json()
            seen.extend(item["id"] for item in page["items"])
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert seen == list(reversed(ids))

    @pytest.mark.parametrize(
        "cursor",
        [
            "garbage",
            "e30",
            "WyJub3QgYSBkYXRlIiwgIngiXQ",
            # Finding 6: a cursor made by hand with a date Postgres cannot hold answered 500.
            _unsigned(["0001-01-01T00:00:00+14:00", "00000000-0000-0000-0000-000000000000"]),
            _unsigned(["0001-01-01T00:00:00+14:00", "00000000-0000-0000-0000-000000000000"]) + ".c2lnbmF0dXJl",
        ],
    )
    async def test_cursor_not_issued_by_the_service_is_422(
        self, client: httpx.AsyncClient, advertiser: dict[str, Any], cursor: str
    ) -> None:
        response = await client.get(f"/v1/advertisers/{ADVERTISER_ID}/authorizations", params={"cursor": cursor})
        assert_problem(response, 422, "cursor_invalid")

    async def test_a_cursor_is_tamper_evident(self, client: httpx.AsyncClient, advertiser: dict[str, Any]) -> None:
        for code in ("#SBX+video/7d=", "#SBX+video/30d="):
            await apply(client, code)
        listing = f"/v1/advertisers/{ADVERTISER_ID}/authorizations"
        cursor = (await client.get(listing, params={"limit": 1})).json()["next_cursor"]
        assert (await client.get(listing, params={"limit": 1, "cursor": cursor})).status_code == 200
        payload, signature = cursor.rsplit(".", 1)
        altered = payload + "." + ("A" if signature[0] != "A" else "B") + signature[1:]
        assert_problem(await client.get(listing, params={"cursor": altered}), 422, "cursor_invalid")
        forged = SecretBox([Fernet.generate_key().decode()]).sign(
            ["1970-01-01T00:00:00+00:00", "00000000-0000-0000-0000-000000000000"], purpose="pagination-cursor"
        )
        assert_problem(await client.get(listing, params={"cursor": forged}), 422, "cursor_invalid")

    async def test_cursors_survive_a_key_rotation(self, settings: Any, db: AsyncEngine, fast_retries: None) -> None:
        sandbox = create_sandbox_app()
        listing = f"/v1/advertisers/{ADVERTISER_ID}/authorizations"
        async with serving(settings, httpx.ASGITransport(app=sandbox)) as client:
            await register_advertiser(client)
            for code in ("#SBX+video/7d=", "#SBX+video/30d="):
                await apply(client, code)
            cursor = (await client.get(listing, params={"limit": 1})).json()["next_cursor"]
        old_key = settings.encryption_keys[0].get_secret_value()
        rotated = settings.model_copy(
            update={"encryption_keys": [SecretStr(Fernet.generate_key().decode()), SecretStr(old_key)]}
        )
        async with serving(rotated, httpx.ASGITransport(app=sandbox)) as client:
            page = await client.get(listing, params={"limit": 1, "cursor": cursor})
        assert page.status_code == 200, page.text
        assert len(page.json()["items"]) == 1

    @pytest.mark.parametrize("params", [{"limit": 0}, {"limit": 201}, {"status": "sleeping"}])
    async def test_bad_query_is_422(
        self, client: httpx.AsyncClient, advertiser: dict[str, Any], params: dict[str, Any]
    ) -> None:
        response = await client.get(f"/v1/advertisers/{ADVERTISER_ID}/authorizations", params=params)
        assert_problem(response, 422, "request_invalid")

    async def test_other_ad_accounts_authorizations_are_not_listed(
        self, client: httpx.AsyncClient, advertiser: dict[str, Any]
    ) -> None:
        await apply(client, VIDEO_30D)
        await client.post("/v1/advertisers", json={"tiktok_advertiser_id": "7000000000000000002", "access_token": "t"})
        page = (await client.get("/v1/advertisers/7000000000000000002/authorizations")).json()
        assert page == {"items": [], "next_cursor": None}

    async def test_unknown_authorization_is_404(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/v1/authorizations/00000000-0000-0000-0000-000000000000")
        assert_problem(response, 404, "authorization_not_found")


class TestTheReadsCallersPoll:
    """One authorization and the list are read on the driver's connection, without the ORM (issue 10); every other
    answer about an authorization (applying it, un-authorizing it, its events) is built from the ORM's object. The
    two must say the same thing, field for field."""

    async def test_one_and_the_list_say_what_the_orm_says(
        self, app: FastAPI, client: httpx.AsyncClient, advertiser: dict[str, Any], db: AsyncEngine
    ) -> None:
        for code, original in (
            (VIDEO_30D, None),
            ("#SBX+visibility/private=", None),  # a warning (D5)
            ("#SBX+carousel/30d=", None),  # no duration
            (DUET, DUET_ORIGINAL),  # a pair: its original post's authorization is part of its read
            (STITCH_ORIGINAL, STITCH),  # given the other way round
        ):
            response = await apply(client, code, original)
            assert response.status_code == 201, response.text
        async with db.begin() as connection:
            await connection.execute(
                text(
                    "UPDATE authorizations SET tiktok_caption = 'changed on TikTok', caption_changed_at = now(), "
                    "tiktok_checked_at = now() WHERE item_type = 'CAROUSEL'"
                )
            )
            await connection.execute(
                text("UPDATE authorizations SET revoked_at = now() WHERE post_status LIKE '%ONLY_AUTHOR_SEE'")
            )

        # Now, and once the 30-day windows have ended (D3: expired is read from the window, not stored).
        for moment in (clock.utcnow(), clock.utcnow() + timedelta(days=40)):
            with time_machine.travel(moment, tick=False):
                listed = (await client.get(f"/v1/advertisers/{ADVERTISER_ID}/authorizations")).json()["items"]
                read = [(await client.get(f"/v1/authorizations/{item['id']}")).json() for item in listed]
                async with app.state.read_sessionmaker() as session:
                    statement = select(Authorization).options(*repository.LOADED)
                    orm = {
                        str(row.id): AuthorizationRead.from_model(row, clock.utcnow()).model_dump(mode="json")
                        for row in (await session.execute(statement)).scalars()
                    }
            assert len(orm) == 7
            assert {item["id"]: item for item in listed} == orm
            assert {item["id"]: item for item in read} == orm
            statuses = {item["status"] for item in read}
            assert "revoked" in statuses and ({"expired"} if moment > clock.utcnow() else {"active"}) <= statuses
            assert any(item["warnings"] for item in read) and any(item["original_post"] for item in read)


class TestCodesStaySecret:
    """A code never appears in clear in the database, in a response or in the logs."""

    async def test_code_never_in_clear(
        self, client: httpx.AsyncClient, advertiser: dict[str, Any], db: AsyncEngine
    ) -> None:
        records = io.StringIO()
        handler = logging.StreamHandler(records)
        handler.setFormatter(logging.Formatter("%(name)s %(message)s"))
        root = logging.getLogger()
        previous_level = root.level
        root.addHandler(handler)
        root.setLevel(logging.DEBUG)
        try:
            codes = [VIDEO_30D, DUET, DUET_ORIGINAL, "#SBX+post/banned=", "#SBX+fault/rate-limited="]
            responses = [
                await apply(client, VIDEO_30D),
                await apply(client, DUET, DUET_ORIGINAL),
                await apply(client, "#SBX+post/banned="),
                await apply(client, "#SBX+fault/rate-limited="),
            ]
            listing = await client.get(f"/v1/advertisers/{ADVERTISER_ID}/authorizations")
        finally:
            root.removeHandler(handler)
            root.setLevel(previous_level)
        logged = records.getvalue()
        stored = await dump_database(db)
        assert "authorization.applied" in logged  # the capture works: it sees the service's own events
        for code in codes:
            for form in (code, quote(code, safe="")):  # as sent, and as it travels in TikTok's query strings
                assert form not in logged, f"{code!r} was logged"
                assert form not in stored, f"{code!r} is stored in clear"
                assert all(form not in response.text for response in [*responses, listing])


class TestKeyRotation:
    """ENCRYPTION_KEYS: the first key encrypts, all decrypt; a lookup by code still works after a rotation."""

    async def test_rows_written_before_a_rotation_stay_usable(
        self, settings: Any, db: AsyncEngine, fast_retries: None
    ) -> None:
        sandbox = create_sandbox_app()
        async with serving(settings, httpx.ASGITransport(app=sandbox)) as client:
            await register_advertiser(client)
            first = (await apply(client, VIDEO_30D)).json()

        new_key = Fernet.generate_key().decode()
        old_key = settings.encryption_keys[0].get_secret_value()
        rotated = settings.model_copy(update={"encryption_keys": [SecretStr(new_key), SecretStr(old_key)]})
        counting = CountingTransport(httpx.ASGITransport(app=sandbox))
        async with serving(rotated, counting) as client:
            again = await apply(client, VIDEO_30D)  # found by its fingerprint under the old key: TikTok not asked
            assert (again.status_code, again.json()["id"], counting.paths) == (200, first["id"], [])
            assert (await apply(client, "#SBX+video/60d=")).status_code == 201  # the token decrypts

        forgotten = settings.model_copy(update={"encryption_keys": [SecretStr(new_key)]})
        async with serving(forgotten, httpx.ASGITransport(app=sandbox)) as client:
            assert_problem(await apply(client, "#SBX+video/7d="), 500, "stored_secret_unreadable")
