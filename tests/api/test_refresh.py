"""Asking TikTok now (refreshAuthorization), and a deletion verdict confirmed with TikTok (getDeletionSafety with
`?confirm=true`): what changed on TikTok is recorded before answering, and a verdict TikTok could not confirm is
never safe."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.api.helpers import apply, assert_problem
from tests.api.test_scoped_keys import OTHER_ADVERTISER_ID, MakeKey
from tests.conftest import ADVERTISER_ID, ADVERTISER_TOKEN

CODE = "#SBX+video/30d="
AD = {"campaign_type": "STANDARD", "only_show_as_ad": True}


async def _applied(client: httpx.AsyncClient, code: str = CODE) -> dict[str, Any]:
    response = await apply(client, code)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def _event_types(client: httpx.AsyncClient) -> list[str]:
    response = await client.get("/v1/events", params={"limit": 100})
    assert response.status_code == 200, response.text
    return [event["type"] for event in response.json()["items"]]


class _Switchable(httpx.AsyncBaseTransport):
    """The sandbox, until `down` is set: then TikTok cannot be reached."""

    def __init__(self, sandbox: Any) -> None:
        self.inner = httpx.ASGITransport(app=sandbox)
        self.down = False

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self.down:
            raise httpx.ConnectError("TikTok is down", request=request)
        return await self.inner.handle_async_request(request)


class TestRefresh:
    async def test_a_revoked_code(self, client: httpx.AsyncClient, advertiser: dict[str, Any], sandbox: Any) -> None:
        authorization = await _applied(client)
        sandbox.state.sandbox.revoke(authorization["item_id"])
        response = await client.post(f"/v1/authorizations/{authorization['id']}/refresh")
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["status"] == "revoked" and body["revoked_at"] is not None
        assert body["tiktok_checked_at"] is not None
        assert await _event_types(client) == ["authorization.applied", "authorization.revoked"]
        again = await client.post(f"/v1/authorizations/{authorization['id']}/refresh")
        assert again.json()["status"] == "revoked"
        assert await _event_types(client) == ["authorization.applied", "authorization.revoked"]

    async def test_a_banned_post(self, client: httpx.AsyncClient, advertiser: dict[str, Any], sandbox: Any) -> None:
        """D8: the post banned since it was authorized: its status, and no new ad may use it."""
        authorization = await _applied(client)
        sandbox.state.sandbox.set_post_status(authorization["item_id"], "AUDIT_DELETE")
        response = await client.post(f"/v1/authorizations/{authorization['id']}/refresh")
        assert response.status_code == 200, response.text
        assert response.json()["post_status"] == "AUDIT_DELETE"
        assert await _event_types(client) == ["authorization.applied", "authorization.post_banned"]
        refused = await client.post(
            f"/v1/authorizations/{authorization['id']}/ads", json={**AD, "ad_id": "1790000000000000001"}
        )
        assert_problem(refused, 409, "authorization_not_active")

    async def test_nothing_changed(self, client: httpx.AsyncClient, advertiser: dict[str, Any]) -> None:
        authorization = await _applied(client)
        response = await client.post(f"/v1/authorizations/{authorization['id']}/refresh")
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "active"
        assert await _event_types(client) == ["authorization.applied"]

    async def test_an_own_post(self, client: httpx.AsyncClient, advertiser: dict[str, Any], sandbox: Any) -> None:
        """D1: an own post is read with identity/video/info; its caption changed there is reported (D4)."""
        own = {"item_id": "7380112233445567001", "identity_type": "TT_USER", "identity_id": "7302000000000000001"}
        registered = await client.post(f"/v1/advertisers/{ADVERTISER_ID}/own-posts", json=own)
        assert registered.status_code == 201, registered.text
        sandbox.state.sandbox.set_caption(own["item_id"], "edited")
        response = await client.post(f"/v1/authorizations/{registered.json()['id']}/refresh")
        assert response.status_code == 200, response.text
        assert response.json()["tiktok_caption"] == "edited"
        assert response.json()["caption"] == registered.json()["caption"]

    async def test_another_key_s_authorization_is_not_found(
        self, client: httpx.AsyncClient, advertiser: dict[str, Any], make_key: MakeKey
    ) -> None:
        authorization = await _applied(client)
        registered = await client.post(
            "/v1/advertisers", json={"tiktok_advertiser_id": OTHER_ADVERTISER_ID, "access_token": ADVERTISER_TOKEN}
        )
        assert registered.status_code == 201, registered.text
        outsider = await make_key("billing", advertiser_ids=[OTHER_ADVERTISER_ID], scopes=["read", "write"])
        response = await outsider.client.post(f"/v1/authorizations/{authorization['id']}/refresh")
        assert_problem(response, 404, "authorization_not_found")

    async def test_tiktok_unreachable(self, service: Callable[..., Any], sandbox: Any, db: AsyncEngine) -> None:
        transport = _Switchable(sandbox)
        running = await service(transport)
        authorization = await _applied(running.client)
        transport.down = True
        response = await running.client.post(f"/v1/authorizations/{authorization['id']}/refresh")
        body = assert_problem(response, 503, "tiktok_unavailable")
        assert body["retryable"] is True


class TestConfirmedVerdict:
    async def test_the_verdict_says_when_ads_were_last_read(
        self, client: httpx.AsyncClient, advertiser: dict[str, Any]
    ) -> None:
        authorization = await _applied(client)
        response = await client.get(f"/v1/posts/{authorization['item_id']}/deletion-safety")
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["confirmed"] is None and body["unconfirmed_ad_accounts"] == 0
        assert body["ad_accounts"] == [{"advertiser_id": ADVERTISER_ID, "ads_reconciled_at": None, "confirmed": None}]

    async def test_an_ad_made_outside_blocks_once_confirmed(
        self, client: httpx.AsyncClient, advertiser: dict[str, Any], sandbox: Any
    ) -> None:
        """D7: an ad made in Ads Manager, unknown to the service until TikTok is read, blocks the deletion."""
        authorization = await _applied(client)
        ad_id = sandbox.state.sandbox.create_ad(ADVERTISER_ID, authorization["item_id"])
        path = f"/v1/posts/{authorization['item_id']}/deletion-safety"
        unconfirmed = (await client.get(path)).json()
        assert [blocker["kind"] for blocker in unconfirmed["blockers"]] == ["authorization"]
        response = await client.get(path, params={"confirm": "true"})
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["safe"] is False and body["confirmed"] is True
        assert [(b["kind"], b["ad_id"]) for b in body["blockers"]] == [("ad", ad_id), ("authorization", None)]
        (account,) = body["ad_accounts"]
        assert account["confirmed"] is True and account["ads_reconciled_at"] is not None
        assert "ad.linked" in await _event_types(client)

    async def test_tiktok_unreachable_is_never_safe(
        self, service: Callable[..., Any], sandbox: Any, db: AsyncEngine
    ) -> None:
        """Even a post whose blockers would all be gone is not safe when its ad account could not be confirmed."""
        transport = _Switchable(sandbox)
        running = await service(transport)
        authorization = await _applied(running.client)
        transport.down = True
        response = await running.client.get(
            f"/v1/posts/{authorization['item_id']}/deletion-safety", params={"confirm": "true"}
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["safe"] is False and body["confirmed"] is False and body["unconfirmed_ad_accounts"] == 1
        assert body["ad_accounts"][0]["confirmed"] is False

    async def test_a_hidden_ad_account_that_cannot_be_confirmed_is_counted(
        self, service: Callable[..., Any], sandbox: Any, db: AsyncEngine
    ) -> None:
        transport = _Switchable(sandbox)
        running = await service(transport)
        authorization = await _applied(running.client)
        # Pretend the post is bound nowhere visible: the key sees no ad account, and TikTok is down.
        async with db.begin() as connection:
            await connection.execute(text("UPDATE advertisers SET ads_reconciled_at = now()"))
        created = await running.client.post("/v1/api-keys", json={"name": "portal", "advertiser_ids": []})
        assert created.status_code == 201, created.text
        transport.down = True
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=running.app),
            base_url="http://service.test",
            headers={"Authorization": f"Bearer {created.json()['key']}"},
        ) as stranger:
            response = await stranger.get(
                f"/v1/posts/{authorization['item_id']}/deletion-safety", params={"confirm": "true"}
            )
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["safe"] is False and body["confirmed"] is False
        assert body["unconfirmed_ad_accounts"] == 1 and body["other_ad_accounts"] == 1
        assert body["ad_accounts"] == [] and body["blockers"] == []
