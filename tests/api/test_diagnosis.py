"""D14: the guide's checklist for a Spark Ad that is not running, for one authorization, as a caller sees it: over
HTTP, on the real database, against the sandbox, each failing item provoked for real; TikTok failing makes only
the items that need it `unknown`, and the answer is still 200."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
import time_machine
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.kit.clock import utcnow
from app.main import create_app
from dev.sandbox.app import EXPIRED_TOKEN, INVALID_TOKEN, create_sandbox_app
from dev.sandbox.seed import OWN_PRIVATE_ITEM_ID, OWN_TT_USER_IDENTITY_ID, OWN_VIDEO_ITEM_ID
from tests.api.helpers import GatedTransport, apply, assert_problem
from tests.conftest import ADVERTISER_ID

ANA_7D = "#SBX+video/7d="
ANA_30D = "#SBX+video/30d="
ANA_PRIVATE = "#SBX+visibility/private="
BRUNO_FRIENDS_ONLY = "#SBX+visibility/friends-only="
PAIR = ("#SBX+duet-short-original/secondary=", "#SBX+duet-short-original/original=")
ORDER = ["ad_account_access", "code", "window", "post", "spark_ads_limit"]
Fault = Callable[[httpx.Request], Awaitable[httpx.Response]]


class TikTokLine(httpx.AsyncBaseTransport):
    """The sandbox behind a line the test can break (`fault`), counting the calls that reach TikTok by path."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.fault: Fault | None = None
        self.paths: list[str] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.paths.append(request.url.path)
        if self.fault is not None:
            return await self.fault(request)
        return await self.inner.handle_async_request(request)

    def count(self, endpoint: str) -> int:
        return sum(1 for path in self.paths if path.endswith(f"/{endpoint}/"))


async def _refused_connection(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("connection refused", request=request)


async def _http_503(request: httpx.Request) -> httpx.Response:
    return httpx.Response(503, html="<html><body><h1>503 Service Temporarily Unavailable</h1></body></html>")


async def _read_timeout(request: httpx.Request) -> httpx.Response:
    raise httpx.ReadTimeout("no answer", request=request)


async def _no_permission(request: httpx.Request) -> httpx.Response:
    return httpx.Response(
        200,
        json={
            "code": 40001,
            "message": "No permission to operate advertiser 7000000000000000001.",
            "request_id": "20260101000000ABCDEF",
            "data": {},
        },
    )


@dataclass
class World:
    client: httpx.AsyncClient
    app: FastAPI
    sandbox: Any  # dev.sandbox.app.Sandbox: TikTok's state
    tiktok: TikTokLine


@pytest.fixture
async def world(service: Any) -> World:
    """The service on the sandbox (through a line the test may break), with the test ad account registered."""
    sandbox = create_sandbox_app()
    line = TikTokLine(httpx.ASGITransport(app=sandbox))
    started = await service(line)
    return World(started.client, started.app, sandbox.state.sandbox, line)


# --- how a caller speaks to the service, and how TikTok changes under it -----------------------------------------


async def _authorized(client: httpx.AsyncClient, code: str, original: str | None = None) -> dict[str, Any]:
    response = await apply(client, code, original)
    assert response.status_code in (200, 201), response.text
    body: dict[str, Any] = response.json()
    return body


async def _own_post(client: httpx.AsyncClient, item_id: str) -> dict[str, Any]:
    response = await client.post(
        f"/v1/advertisers/{ADVERTISER_ID}/own-posts",
        json={"item_id": item_id, "identity_type": "TT_USER", "identity_id": OWN_TT_USER_IDENTITY_ID},
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def _link(
    client: httpx.AsyncClient,
    authorization_id: str,
    ad_id: str,
    *,
    campaign_type: str = "STANDARD",
    only_show_as_ad: bool = True,
    ends_at: datetime | None = None,
) -> None:
    body: dict[str, Any] = {"ad_id": ad_id, "campaign_type": campaign_type, "only_show_as_ad": only_show_as_ad}
    if ends_at is not None:
        body["ends_at"] = ends_at.isoformat()
    response = await client.post(f"/v1/authorizations/{authorization_id}/ads", json=body)
    assert response.status_code == 201, response.text


async def _diagnose(client: httpx.AsyncClient, authorization_id: str) -> dict[str, Any]:
    response = await client.get(f"/v1/authorizations/{authorization_id}/diagnosis")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _checks(diagnosis: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The checks other than the ads', by name."""
    return {check["check"]: check for check in diagnosis["checks"] if check["check"] != "ad"}


def _ads(diagnosis: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {check["ad_id"]: check for check in diagnosis["checks"] if check["check"] == "ad"}


def _statuses(diagnosis: dict[str, Any]) -> dict[str, str]:
    return {name: check["status"] for name, check in _checks(diagnosis).items()}


def _end(authorization: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(authorization["auth_end_at"])


async def _execute(db: AsyncEngine, sql: str, **params: Any) -> None:
    async with db.begin() as connection:
        await connection.execute(text(sql), params)


# --- the checks ----------------------------------------------------------------------------------------------------


class TestAllWell:
    async def test_every_item_ok_and_tiktok_asked_three_times(self, world: World) -> None:
        created = await _authorized(world.client, ANA_30D)
        await _link(world.client, created["id"], "1800000000000000001", ends_at=_end(created) - timedelta(days=1))
        calls = len(world.tiktok.paths)

        diagnosis = await _diagnose(world.client, created["id"])

        assert diagnosis["status"] == "ok"
        assert diagnosis["authorization_id"] == created["id"]
        assert diagnosis["advertiser_id"] == ADVERTISER_ID
        assert diagnosis["item_id"] == created["item_id"]
        assert diagnosis["identity_type"] == "AUTH_CODE"
        assert diagnosis["authorization_status"] == "active"
        assert datetime.fromisoformat(diagnosis["checked_at"]) <= utcnow()
        assert [check["check"] for check in diagnosis["checks"]] == [*ORDER, "ad"]
        for check in diagnosis["checks"]:
            assert set(check) == {"check", "status", "detail", "action", "ad_id", "tiktok"}
            assert check["status"] == "ok", check
            assert check["action"] is None, check
            assert check["tiktok"] is None
            assert check["detail"]
        assert _ads(diagnosis)["1800000000000000001"]["ad_id"] == "1800000000000000001"
        assert _checks(diagnosis)["code"]["detail"].count(created["item_id"]) == 1
        # The ad account's access first; then the code read back and the post as bound (at once): nothing else.
        asked = world.tiktok.paths[calls:]
        assert asked[0] == "/open_api/v1.3/tt_video/list/"
        assert sorted(asked[1:]) == ["/open_api/v1.3/tt_video/info/", "/open_api/v1.3/tt_video/list/"]
        assert world.tiktok.count("authorize") == 1  # the apply's own: nothing is applied by a diagnosis

    async def test_an_authorization_without_ads_has_no_ad_items(self, world: World) -> None:
        created = await _authorized(world.client, ANA_30D)
        diagnosis = await _diagnose(world.client, created["id"])
        assert [check["check"] for check in diagnosis["checks"]] == ORDER
        assert diagnosis["status"] == "ok"

    async def test_the_brands_own_post_has_no_code_and_no_window(self, world: World) -> None:
        own = await _own_post(world.client, OWN_VIDEO_ITEM_ID)
        await _link(world.client, own["id"], "1800000000000000002", ends_at=utcnow() + timedelta(days=400))
        calls = len(world.tiktok.paths)

        diagnosis = await _diagnose(world.client, own["id"])

        assert diagnosis["status"] == "ok", diagnosis
        assert diagnosis["identity_type"] == "TT_USER"
        checks = _checks(diagnosis)
        assert "no code" in checks["code"]["detail"]
        assert "no window" in checks["window"]["detail"]
        assert checks["window"]["action"] is None
        assert _ads(diagnosis)["1800000000000000002"]["status"] == "ok"  # no window for it to outlive
        # The ad account's access, then the post under its identity; no code to read back.
        assert world.tiktok.paths[calls:] == ["/open_api/v1.3/tt_video/list/", "/open_api/v1.3/identity/video/info/"]


class TestAdAccountAccess:
    @pytest.mark.parametrize(("token", "code"), [(EXPIRED_TOKEN, 40102), (INVALID_TOKEN, 40105)])
    async def test_a_token_tiktok_refuses_fails_and_says_to_reconnect(
        self, world: World, db: AsyncEngine, token: str, code: int
    ) -> None:
        created = await _authorized(world.client, ANA_30D)
        # The token stops working after it was stored (it expired, or was revoked in TikTok).
        await _execute(
            db,
            "UPDATE advertisers SET access_token_encrypted = :token",
            token=world.app.state.secret_box.encrypt(token),
        )
        calls = len(world.tiktok.paths)

        diagnosis = await _diagnose(world.client, created["id"])

        assert diagnosis["status"] == "failing"
        access = _checks(diagnosis)["ad_account_access"]
        assert access["status"] == "failing"
        assert f"PUT /v1/advertisers/{ADVERTISER_ID}/access-token" in access["action"]
        assert access["tiktok"]["code"] == code
        assert access["tiktok"]["request_id"]
        assert token not in str(diagnosis)
        # What needs the token is not asked: one call, and those items are unknown, pointing at the access.
        assert len(world.tiktok.paths) - calls == 1
        for name in ("code", "post"):
            assert _checks(diagnosis)[name]["status"] == "unknown"
            assert "ad_account_access" in _checks(diagnosis)[name]["detail"]
        assert "HESITATE_RECOMMEND" in _checks(diagnosis)["post"]["detail"]  # the status as last reported
        assert _statuses(diagnosis)["window"] == "ok"
        assert _statuses(diagnosis)["spark_ads_limit"] == "ok"

    async def test_no_permission_for_the_ad_account_fails_with_tiktoks_words(self, world: World) -> None:
        created = await _authorized(world.client, ANA_30D)
        world.tiktok.fault = _no_permission

        diagnosis = await _diagnose(world.client, created["id"])

        access = _checks(diagnosis)["ad_account_access"]
        assert access["status"] == "failing"
        assert access["tiktok"] == {
            "code": 40001,
            "message": "No permission to operate advertiser 7000000000000000001.",
            "request_id": "20260101000000ABCDEF",
        }
        assert "No permission" in access["detail"]
        assert "permission" in access["action"]
        assert diagnosis["status"] == "failing"


class TestCodeAndWindow:
    async def test_an_expired_window_fails_both_as_stored_and_as_tiktok_reports_it(self, world: World) -> None:
        created = await _authorized(world.client, ANA_7D)
        with time_machine.travel(_end(created) + timedelta(days=1), tick=False):
            diagnosis = await _diagnose(world.client, created["id"])
        assert diagnosis["status"] == "failing"
        assert diagnosis["authorization_status"] == "expired"
        window = _checks(diagnosis)["window"]
        assert window["status"] == "failing"
        assert _end(created).isoformat() in window["detail"]
        assert "new code" in window["action"] and "extend" in window["action"]
        code = _checks(diagnosis)["code"]
        assert code["status"] == "failing"  # TikTok reads the code back as EXPIRED
        assert "EXPIRED" in code["detail"]
        assert _statuses(diagnosis)["post"] == "ok"  # still bound, still public

    async def test_a_window_ending_within_three_days_is_ok_with_an_action(self, world: World) -> None:
        created = await _authorized(world.client, ANA_7D)
        with time_machine.travel(_end(created) - timedelta(days=2), tick=False):
            diagnosis = await _diagnose(world.client, created["id"])
        window = _checks(diagnosis)["window"]
        assert window["status"] == "ok"
        assert "extend" in window["action"]
        assert diagnosis["status"] == "ok"
        with time_machine.travel(_end(created) - timedelta(days=4), tick=False):
            assert _checks(await _diagnose(world.client, created["id"]))["window"]["action"] is None

    async def test_a_code_tiktok_no_longer_knows_fails_with_its_refusal(self, world: World, db: AsyncEngine) -> None:
        created = await _authorized(world.client, ANA_30D)
        # The creator deleted the code: TikTok answers 40007 auth_code_not_found for it now.
        await _execute(
            db,
            "UPDATE authorizations SET auth_code_encrypted = :code",
            code=world.app.state.secret_box.encrypt("#SBX+code/deleted="),
        )
        diagnosis = await _diagnose(world.client, created["id"])
        code = _checks(diagnosis)["code"]
        assert code["status"] == "failing"
        assert code["tiktok"]["code"] == 40007
        assert "new code" in code["action"]
        assert "#SBX" not in str(diagnosis)

    async def test_a_window_the_creator_extended_after_it_ended_here_says_to_apply_the_code_again(
        self, world: World
    ) -> None:
        created = await _authorized(world.client, ANA_7D)
        world.sandbox.extend(created["item_id"], 30)
        before = _checks(await _diagnose(world.client, created["id"]))["code"]
        assert (before["status"], before["action"]) == ("ok", None)  # the stored window is still open
        assert "The end stored here" in before["detail"]
        with time_machine.travel(_end(created) + timedelta(days=1), tick=False):
            ended = await _diagnose(world.client, created["id"])
            assert _checks(ended)["window"]["status"] == "failing"
            assert _checks(ended)["code"]["status"] == "ok"
            assert "apply the code again" in _checks(ended)["code"]["action"]
            # Doing what it says records TikTok's window: the diagnosis is all well again.
            assert (await apply(world.client, ANA_7D)).status_code == 200
            assert (await _diagnose(world.client, created["id"]))["status"] == "ok"

    async def test_a_revoked_authorization_fails(self, world: World, db: AsyncEngine) -> None:
        created = await _authorized(world.client, ANA_30D)
        world.sandbox.revoke(created["item_id"])
        await _execute(db, "UPDATE authorizations SET revoked_at = now()")  # as reconciliation records it

        diagnosis = await _diagnose(world.client, created["id"])

        assert diagnosis["authorization_status"] == "revoked"
        assert _checks(diagnosis)["window"]["status"] == "failing"
        assert "revoked" in _checks(diagnosis)["window"]["detail"]
        post = _checks(diagnosis)["post"]
        assert post["status"] == "failing"
        assert "no longer lists" in post["detail"]

    async def test_an_unauthorized_one_fails_and_says_how_to_authorize_again(self, world: World) -> None:
        created = await _authorized(world.client, ANA_30D)
        unbound = await world.client.post(f"/v1/authorizations/{created['id']}/unauthorize")
        assert unbound.status_code == 200, unbound.text

        diagnosis = await _diagnose(world.client, created["id"])

        assert diagnosis["authorization_status"] == "unauthorized"
        assert _checks(diagnosis)["window"]["status"] == "failing"
        assert "new code" in _checks(diagnosis)["window"]["action"]
        assert _checks(diagnosis)["post"]["status"] == "failing"
        assert "un-authorized here" in _checks(diagnosis)["post"]["detail"]

    async def test_a_duet_reads_the_window_both_codes_cover(self, world: World) -> None:
        created = await _authorized(world.client, *PAIR)
        window = _checks(await _diagnose(world.client, created["id"]))["window"]
        assert window["status"] == "ok"
        assert "both codes" in window["detail"]


class TestPost:
    @pytest.mark.parametrize(
        ("status", "said"),
        [
            ("AUDIT_DELETE", "removed by TikTok"),
            ("ITEM_STATUS_ONLY_USER_PASS", "removed by TikTok"),
            ("USER_DELETE", "deleted by its creator"),
        ],
    )
    async def test_a_post_banned_or_deleted_since_fails(self, world: World, status: str, said: str) -> None:
        created = await _authorized(world.client, ANA_30D)
        await _link(world.client, created["id"], "1800000000000000003")
        world.sandbox.set_post_status(created["item_id"], status)

        diagnosis = await _diagnose(world.client, created["id"])

        post = _checks(diagnosis)["post"]
        assert post["status"] == "failing"
        assert said in post["detail"]
        assert "HESITATE_RECOMMEND" in post["detail"]  # what was stored, as last reported
        assert "remove its ads" in post["action"]
        assert diagnosis["status"] == "failing"

    async def test_a_post_no_longer_bound_fails(self, world: World) -> None:
        created = await _authorized(world.client, ANA_30D)
        world.sandbox.revoke(created["item_id"])
        post = _checks(await _diagnose(world.client, created["id"]))["post"]
        assert post["status"] == "failing"
        assert "revoked" in post["detail"]
        assert "new code" in post["action"]

    @pytest.mark.parametrize("code", [ANA_PRIVATE, BRUNO_FRIENDS_ONLY])
    async def test_a_private_post_fails_while_an_ad_would_make_it_public(self, world: World, code: str) -> None:
        created = await _authorized(world.client, code)
        await _link(world.client, created["id"], "1800000000000000004", only_show_as_ad=True)
        shown_as_ad = _checks(await _diagnose(world.client, created["id"]))["post"]
        assert shown_as_ad["status"] == "ok"
        assert "stays private" in shown_as_ad["detail"]

        await _link(world.client, created["id"], "1800000000000000005", only_show_as_ad=False)
        diagnosis = await _diagnose(world.client, created["id"])
        post = _checks(diagnosis)["post"]
        assert post["status"] == "failing"
        assert "1800000000000000005" in post["detail"]
        assert "1800000000000000004" not in post["detail"]
        assert "only show as ad" in post["action"]

    async def test_a_private_post_without_ads_is_ok_with_a_reminder(self, world: World) -> None:
        created = await _authorized(world.client, ANA_PRIVATE)
        post = _checks(await _diagnose(world.client, created["id"]))["post"]
        assert post["status"] == "ok"
        assert "only show as ad" in post["detail"]

    async def test_an_own_private_post_with_a_public_ad_fails(self, world: World) -> None:
        own = await _own_post(world.client, OWN_PRIVATE_ITEM_ID)
        await _link(world.client, own["id"], "1800000000000000006", only_show_as_ad=False)
        post = _checks(await _diagnose(world.client, own["id"]))["post"]
        assert post["status"] == "failing"
        assert "1800000000000000006" in post["detail"]


class TestLimitAndAds:
    async def test_an_ad_account_at_its_limit_fails(self, world: World) -> None:
        created = await _authorized(world.client, ANA_30D)
        await _link(world.client, created["id"], "1800000000000000007")
        assert _checks(await _diagnose(world.client, created["id"]))["spark_ads_limit"]["status"] == "ok"

        lowered = await world.client.patch(f"/v1/advertisers/{ADVERTISER_ID}", json={"spark_ads_limit": 1})
        assert lowered.status_code == 200, lowered.text
        diagnosis = await _diagnose(world.client, created["id"])
        limit = _checks(diagnosis)["spark_ads_limit"]
        assert limit["status"] == "failing"
        assert "1 Spark Ads" in limit["detail"] and "limit is 1" in limit["detail"]
        assert "until ads are removed" in limit["action"] and "limit is raised" in limit["action"]
        assert diagnosis["status"] == "failing"

    async def test_a_limit_of_zero_fails_with_no_ads_at_all(self, world: World) -> None:
        created = await _authorized(world.client, ANA_30D)
        lowered = await world.client.patch(f"/v1/advertisers/{ADVERTISER_ID}", json={"spark_ads_limit": 0})
        assert lowered.status_code == 200, lowered.text
        assert _checks(await _diagnose(world.client, created["id"]))["spark_ads_limit"]["status"] == "failing"

    async def test_an_ad_ending_after_the_window_fails_and_smart_plus_is_noted(self, world: World) -> None:
        created = await _authorized(world.client, ANA_30D)
        end = _end(created)
        await _link(world.client, created["id"], "1800000000000000008", ends_at=end + timedelta(days=1))
        await _link(
            world.client,
            created["id"],
            "1800000000000000009",
            campaign_type="SMART_PLUS",
            ends_at=end - timedelta(days=1),
        )
        await _link(world.client, created["id"], "1800000000000000010")  # no end

        diagnosis = await _diagnose(world.client, created["id"])

        assert [check["check"] for check in diagnosis["checks"]] == [*ORDER, "ad", "ad", "ad"]
        ads = _ads(diagnosis)
        outliving = ads["1800000000000000008"]
        assert outliving["status"] == "failing"
        assert "stops delivering at the window's end" in outliving["detail"]
        assert "Shorten" in outliving["action"] and "extend" in outliving["action"]
        smart = ads["1800000000000000009"]
        assert (smart["status"], smart["action"]) == ("ok", None)
        assert "Smart+" in smart["detail"] and "D15" in smart["detail"]
        assert ads["1800000000000000010"]["status"] == "ok"
        assert "no scheduled end" in ads["1800000000000000010"]["detail"]
        assert diagnosis["status"] == "failing"
        assert {name: check["status"] for name, check in _checks(diagnosis).items()} == dict.fromkeys(ORDER, "ok")

    async def test_an_ad_whose_schedule_is_over_fails(self, world: World) -> None:
        created = await _authorized(world.client, ANA_30D)
        await _link(world.client, created["id"], "1800000000000000011", ends_at=utcnow() + timedelta(days=1))
        with time_machine.travel(utcnow() + timedelta(days=2), tick=False):
            ad = _ads(await _diagnose(world.client, created["id"]))["1800000000000000011"]
        assert ad["status"] == "failing"
        assert "removeAd" in ad["action"]

    async def test_removed_ads_are_not_checked(self, world: World) -> None:
        created = await _authorized(world.client, ANA_30D)
        await _link(world.client, created["id"], "1800000000000000012", ends_at=_end(created) + timedelta(days=1))
        removed = await world.client.delete(f"/v1/authorizations/{created['id']}/ads/1800000000000000012")
        assert removed.status_code == 204, removed.text
        diagnosis = await _diagnose(world.client, created["id"])
        assert _ads(diagnosis) == {}
        assert diagnosis["status"] == "ok"


class TestTikTokFailing:
    @pytest.mark.parametrize("fault", [_refused_connection, _http_503, _read_timeout])
    async def test_tiktok_unreachable_makes_only_its_items_unknown(self, world: World, fault: Fault) -> None:
        created = await _authorized(world.client, ANA_PRIVATE)
        await _link(world.client, created["id"], "1800000000000000013")
        world.tiktok.fault = fault
        calls = len(world.tiktok.paths)

        diagnosis = await _diagnose(world.client, created["id"])

        assert diagnosis["status"] == "unknown"
        assert _statuses(diagnosis) == {
            "ad_account_access": "unknown",
            "code": "unknown",
            "window": "ok",
            "post": "unknown",
            "spark_ads_limit": "ok",
        }
        assert _ads(diagnosis)["1800000000000000013"]["status"] == "ok"
        assert "TikTok could not be asked" in _checks(diagnosis)["ad_account_access"]["detail"]
        assert "ONLY_AUTHOR_SEE" in _checks(diagnosis)["post"]["detail"]  # the stored status
        for name in ("ad_account_access", "code", "post"):
            assert _checks(diagnosis)[name]["action"]
        # One call to TikTok (with its retries), not one per item.
        assert set(world.tiktok.paths[calls:]) == {"/open_api/v1.3/tt_video/list/"}

    async def test_a_failure_after_the_access_check_makes_only_that_item_unknown(self, world: World) -> None:
        created = await _authorized(world.client, ANA_30D)
        inner = world.tiktok.inner

        async def info_fails(request: httpx.Request) -> httpx.Response:
            if request.url.path.endswith("/tt_video/info/"):
                return await _http_503(request)
            return await inner.handle_async_request(request)

        world.tiktok.fault = info_fails
        diagnosis = await _diagnose(world.client, created["id"])
        assert _statuses(diagnosis) == {
            "ad_account_access": "ok",
            "code": "unknown",
            "window": "ok",
            "post": "ok",
            "spark_ads_limit": "ok",
        }
        assert diagnosis["status"] == "unknown"

    async def test_no_connection_is_held_while_tiktok_answers(self, service: Any) -> None:
        gate = GatedTransport(httpx.ASGITransport(app=create_sandbox_app()), "list", held=False)
        started = await service(gate)
        created = await _authorized(started.client, ANA_30D)
        gate.hold()
        asked = asyncio.create_task(started.client.get(f"/v1/authorizations/{created['id']}/diagnosis"))
        await gate.wait_for(1)
        assert started.app.state.engine.pool.checkedout() == 0
        gate.open()
        response = await asked
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "ok"


class TestWhoMayAsk:
    async def test_a_key_that_may_not_touch_the_ad_account_gets_404(self, world: World) -> None:
        created = await _authorized(world.client, ANA_30D)
        made = await world.client.post("/v1/api-keys", json={"name": "elsewhere", "advertiser_ids": []})
        assert made.status_code == 201, made.text
        calls = len(world.tiktok.paths)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=world.app),
            base_url="http://service.test",
            headers={"Authorization": f"Bearer {made.json()['key']}"},
        ) as other:
            hidden = await other.get(f"/v1/authorizations/{created['id']}/diagnosis")
            unknown = await other.get("/v1/authorizations/00000000-0000-0000-0000-000000000000/diagnosis")
        # The same answer as for an authorization that does not exist: existence does not leak.
        assert (
            assert_problem(hidden, 404, "authorization_not_found")["detail"]
            == f"Authorization {created['id']} does not exist."
        )
        assert_problem(unknown, 404, "authorization_not_found")
        assert len(world.tiktok.paths) == calls  # TikTok is not asked for what the key may not see

    async def test_an_unknown_authorization_is_404(self, world: World) -> None:
        response = await world.client.get("/v1/authorizations/00000000-0000-0000-0000-000000000000/diagnosis")
        assert_problem(response, 404, "authorization_not_found")


class TestContract:
    def test_documented_as_calling_tiktok_with_its_404(self) -> None:
        operation = create_app().openapi()["paths"]["/v1/authorizations/{authorization_id}/diagnosis"]["get"]
        assert operation["operationId"] == "diagnoseAuthorization"
        assert "**Calls TikTok**" in operation["description"]
        assert "`authorization_not_found`" in operation["responses"]["404"]["description"]
        assert "503" in operation["responses"]  # database_unavailable, as everywhere
        assert not {"502", "504"} & set(operation["responses"])  # TikTok failing is never the answer
        schema = operation["responses"]["200"]["content"]["application/json"]["schema"]
        assert schema == {"$ref": "#/components/schemas/Diagnosis"}
