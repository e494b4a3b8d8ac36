"""Un-authorizing (D16), as a caller sees it: `tt_video/unbind`, never under a running ad, never guessed."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.authorizations import intake
from app.kit.settings import Settings
from dev.sandbox.app import create_sandbox_app
from dev.sandbox.seed import OWN_TT_USER_IDENTITY_ID, OWN_VIDEO_ITEM_ID
from tests.api.helpers import CountingTransport, apply, assert_problem, count_rows
from tests.conftest import ADVERTISER_ID

VIDEO_30D = "#SBX+video/30d="
DUET = "#SBX+duet/secondary="
DUET_ORIGINAL = "#SBX+duet/original="
STITCH = "#SBX+stitch/secondary="
STITCH_ORIGINAL = "#SBX+stitch/original="


def _link(client: httpx.AsyncClient, authorization_id: str, ad_id: str) -> Any:
    return client.post(
        f"/v1/authorizations/{authorization_id}/ads",
        json={"ad_id": ad_id, "campaign_type": "STANDARD", "only_show_as_ad": True},
    )


def _unauthorize(client: httpx.AsyncClient, authorization_id: str) -> Any:
    return client.post(f"/v1/authorizations/{authorization_id}/unauthorize")


async def _bound_on_tiktok(sandbox: Any) -> set[str]:
    state = sandbox.state.sandbox
    return set(state.bindings.get(ADVERTISER_ID, {}))


def _failing_unbind(sandbox: Any, answer: Callable[[httpx.Request], httpx.Response | None]) -> httpx.MockTransport:
    inner = httpx.ASGITransport(app=sandbox)

    async def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/tt_video/unbind/"):
            response = answer(request)
            if response is not None:
                return response
        return await inner.handle_async_request(request)

    return httpx.MockTransport(handle)


class TestUnauthorize:
    async def test_unbinds_the_post_and_records_when(self, service: Any) -> None:
        sandbox = create_sandbox_app()
        transport = CountingTransport(httpx.ASGITransport(app=sandbox))
        client = (await service(transport)).client
        created = (await apply(client, VIDEO_30D)).json()
        assert created["item_id"] in await _bound_on_tiktok(sandbox)

        response = await _unauthorize(client, created["id"])
        assert response.status_code == 200, response.text
        body = response.json()
        assert (body["status"], body["unauthorized_at"] is not None) == ("unauthorized", True)
        assert created["item_id"] not in await _bound_on_tiktok(sandbox)
        assert transport.count("unbind") == 1
        assert (await client.get(f"/v1/authorizations/{created['id']}")).json()["status"] == "unauthorized"

    async def test_twice_is_the_same_result_without_calling_tiktok_again(self, service: Any) -> None:
        transport = CountingTransport(httpx.ASGITransport(app=create_sandbox_app()))
        client = (await service(transport)).client
        created = (await apply(client, VIDEO_30D)).json()
        first = await _unauthorize(client, created["id"])
        second = await _unauthorize(client, created["id"])
        assert (first.status_code, second.status_code) == (200, 200)
        assert first.json() == second.json()
        assert transport.count("unbind") == 1

    async def test_refused_while_ads_are_active_and_tiktok_is_not_called(self, service: Any) -> None:
        """D16: the ad account still runs ads on the post."""
        transport = CountingTransport(httpx.ASGITransport(app=create_sandbox_app()))
        client = (await service(transport)).client
        created = (await apply(client, VIDEO_30D)).json()
        assert (await _link(client, created["id"], "1800000000000000001")).status_code == 201
        assert (await _link(client, created["id"], "1800000000000000002")).status_code == 201

        problem = assert_problem(await _unauthorize(client, created["id"]), 409, "ads_still_active")
        assert {ad["ad_id"] for ad in problem["ads"]} == {"1800000000000000001", "1800000000000000002"}
        assert transport.count("unbind") == 0
        assert (await client.get(f"/v1/authorizations/{created['id']}")).json()["status"] == "active"

        for ad_id in ("1800000000000000001", "1800000000000000002"):
            removed = await client.delete(f"/v1/authorizations/{created['id']}/ads/{ad_id}")
            assert removed.status_code == 204
        assert (await _unauthorize(client, created["id"])).status_code == 200

    async def test_unknown_authorization_is_404(self, client: httpx.AsyncClient) -> None:
        response = await _unauthorize(client, "00000000-0000-0000-0000-000000000000")
        assert_problem(response, 404, "authorization_not_found")

    async def test_the_post_can_be_authorized_again_and_the_history_stays(self, service: Any) -> None:
        client = (await service(httpx.ASGITransport(app=create_sandbox_app()))).client
        first = (await apply(client, VIDEO_30D)).json()
        await _unauthorize(client, first["id"])

        again = await apply(client, VIDEO_30D)
        assert again.status_code == 201, again.text
        assert again.json()["id"] != first["id"]
        assert again.json()["status"] == "active"
        listed = (await client.get(f"/v1/advertisers/{ADVERTISER_ID}/authorizations")).json()["items"]
        assert {(item["id"], item["status"]) for item in listed} == {
            (first["id"], "unauthorized"),
            (again.json()["id"], "active"),
        }
        only_history = await client.get(
            f"/v1/advertisers/{ADVERTISER_ID}/authorizations", params={"status": "unauthorized"}
        )
        assert [item["id"] for item in only_history.json()["items"]] == [first["id"]]

    async def test_a_post_tiktok_no_longer_binds_is_unauthorized_all_the_same(self, service: Any) -> None:
        """Unbound on TikTok's side already (in Ads Manager): TikTok refuses the unbind; the post is not bound."""
        sandbox = create_sandbox_app()
        client = (await service(httpx.ASGITransport(app=sandbox))).client
        created = (await apply(client, VIDEO_30D)).json()
        sandbox.state.sandbox.bindings[ADVERTISER_ID].pop(created["item_id"])
        response = await _unauthorize(client, created["id"])
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "unauthorized"

    async def test_an_apply_not_settled_yet_is_in_progress(self, service: Any, db: AsyncEngine) -> None:
        client = (await service(httpx.ASGITransport(app=create_sandbox_app()))).client
        created = (await apply(client, VIDEO_30D)).json()
        async with db.begin() as connection:
            await connection.execute(text("UPDATE authorizations SET state = 'pending'"))
        assert_problem(await _unauthorize(client, created["id"]), 409, "authorization_in_progress")


class TestPairs:
    """A Duet/Stitch binds two posts with one authorize: un-authorizing it ends both bindings (D12, D16)."""

    @pytest.mark.parametrize(("code", "original"), [(DUET, DUET_ORIGINAL), (STITCH, STITCH_ORIGINAL)])
    async def test_both_posts_are_unbound(self, service: Any, code: str, original: str) -> None:
        sandbox = create_sandbox_app()
        transport = CountingTransport(httpx.ASGITransport(app=sandbox))
        client = (await service(transport)).client
        pair = (await apply(client, code, original)).json()
        original_id = pair["original_post"]["authorization_id"]

        response = await _unauthorize(client, pair["id"])
        assert response.status_code == 200, response.text
        assert (await client.get(f"/v1/authorizations/{original_id}")).json()["status"] == "unauthorized"
        assert await _bound_on_tiktok(sandbox) == set()
        assert transport.count("unbind") == 2

    async def test_the_original_of_a_bound_pair_is_refused(self, service: Any) -> None:
        client = (await service(httpx.ASGITransport(app=create_sandbox_app()))).client
        pair = (await apply(client, DUET, DUET_ORIGINAL)).json()
        problem = assert_problem(
            await _unauthorize(client, pair["original_post"]["authorization_id"]), 409, "pair_still_bound"
        )
        assert problem["authorization_ids"] == [pair["id"]]

    async def test_ads_on_the_original_refuse_the_pair_too(self, service: Any) -> None:
        client = (await service(httpx.ASGITransport(app=create_sandbox_app()))).client
        pair = (await apply(client, DUET, DUET_ORIGINAL)).json()
        original_id = pair["original_post"]["authorization_id"]
        assert (await _link(client, original_id, "1800000000000000009")).status_code == 201
        problem = assert_problem(await _unauthorize(client, pair["id"]), 409, "ads_still_active")
        assert problem["ads"] == [{"ad_id": "1800000000000000009", "authorization_id": original_id}]


class TestTikTokFailing:
    """If TikTok fails, the authorization stays as it was, or, when the outcome is unknown, is never guessed."""

    async def test_a_refusal_leaves_the_authorization_active(self, service: Any, db: AsyncEngine) -> None:
        sandbox = create_sandbox_app()
        started = await service(httpx.ASGITransport(app=sandbox))
        created = (await apply(started.client, VIDEO_30D)).json()
        box = started.app.state.secret_box
        async with db.begin() as connection:  # TikTok stops accepting the ad account's token
            await connection.execute(
                text("UPDATE advertisers SET access_token_encrypted = :t"), {"t": box.encrypt("invalid-token")}
            )
        problem = assert_problem(await _unauthorize(started.client, created["id"]), 422, "access_token_invalid")
        assert problem["retryable"] is False
        assert (await started.client.get(f"/v1/authorizations/{created['id']}")).json()["status"] == "active"

    async def test_a_lost_answer_is_unauthorizing_until_settled(self, service: Any, db: AsyncEngine) -> None:
        sandbox = create_sandbox_app()
        inner = httpx.ASGITransport(app=sandbox)

        async def lose_unbind_answers(request: httpx.Request) -> httpx.Response:
            response = await inner.handle_async_request(request)
            if request.url.path.endswith("/tt_video/unbind/"):
                raise httpx.ReadTimeout("lost", request=request)
            return response

        started = await service(httpx.MockTransport(lose_unbind_answers))
        created = (await apply(started.client, VIDEO_30D)).json()
        problem = assert_problem(await _unauthorize(started.client, created["id"]), 504, "tiktok_timeout")
        assert problem["retryable"] is True
        read = (await started.client.get(f"/v1/authorizations/{created['id']}")).json()
        assert read["status"] == "unauthorizing"
        # An unbind in doubt still blocks the post (D7), and no ad may use it meanwhile.
        verdict = (await started.client.get(f"/v1/posts/{created['item_id']}/deletion-safety")).json()
        assert verdict["safe"] is False
        assert [blocker["action"] for blocker in verdict["blockers"]] == ["settle"]
        assert_problem(
            await _link(started.client, created["id"], "1800000000000000003"), 409, "authorization_not_active"
        )

        report = await intake.settle(
            started.app.state.sessionmaker,
            started.app.state.tiktok,
            started.app.state.secret_box,
            intake.Policy.from_settings(started.app.state.settings),
        )
        assert report == intake.SettleReport(unbound=1)
        assert (await started.client.get(f"/v1/authorizations/{created['id']}")).json()["status"] == "unauthorized"

    async def test_a_system_error_is_retryable_and_the_retry_unbinds(self, service: Any, settings: Settings) -> None:
        sandbox = create_sandbox_app()
        # Failing every attempt of the first request (unbind is retried: a second unbind of an unbound post is
        # refused, and then read back as unbound).
        errors = [httpx.Response(200, json={"code": 50000, "message": "System error", "data": {}})]
        errors *= settings.tiktok_max_attempts
        client = (await service(_failing_unbind(sandbox, lambda _: errors.pop() if errors else None))).client
        created = (await apply(client, VIDEO_30D)).json()
        assert_problem(await _unauthorize(client, created["id"]), 503, "tiktok_unavailable")
        assert (await client.get(f"/v1/authorizations/{created['id']}")).json()["status"] == "unauthorizing"
        retried = await _unauthorize(client, created["id"])
        assert retried.status_code == 200, retried.text
        assert retried.json()["status"] == "unauthorized"

    async def test_settle_finds_an_unbind_that_did_not_happen(self, service: Any) -> None:
        sandbox = create_sandbox_app()
        system_error = httpx.Response(200, json={"code": 50000, "message": "System error", "data": {}})
        started = await service(_failing_unbind(sandbox, lambda _: system_error))
        created = (await apply(started.client, VIDEO_30D)).json()
        assert_problem(await _unauthorize(started.client, created["id"]), 503, "tiktok_unavailable")
        report = await intake.settle(
            started.app.state.sessionmaker,
            started.app.state.tiktok,
            started.app.state.secret_box,
            intake.Policy.from_settings(started.app.state.settings),
        )
        assert report == intake.SettleReport(still_bound=1)
        assert (await started.client.get(f"/v1/authorizations/{created['id']}")).json()["status"] == "active"


class TestOwnPosts:
    async def test_an_own_post_is_unauthorized_without_calling_tiktok(self, service: Any, db: AsyncEngine) -> None:
        """D1: nothing was bound with a code, so there is nothing to unbind."""
        transport = CountingTransport(httpx.ASGITransport(app=create_sandbox_app()))
        client = (await service(transport)).client
        own = await client.post(
            f"/v1/advertisers/{ADVERTISER_ID}/own-posts",
            json={"item_id": OWN_VIDEO_ITEM_ID, "identity_type": "TT_USER", "identity_id": OWN_TT_USER_IDENTITY_ID},
        )
        assert own.status_code == 201, own.text
        response = await _unauthorize(client, own.json()["id"])
        assert (response.status_code, response.json()["status"]) == (200, "unauthorized")
        assert transport.count("unbind") == 0
        assert await count_rows(db, "authorizations") == 1
