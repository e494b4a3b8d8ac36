"""Registering ad accounts: TikTok must accept the token first; the token is stored encrypted, never returned."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.kit.crypto import SecretBox
from app.kit.settings import Settings
from dev.sandbox.app import create_sandbox_app
from tests.api.helpers import GatedTransport, apply, assert_problem, count_rows, dump_database
from tests.conftest import ADVERTISER_ID, ADVERTISER_TOKEN, register_advertiser, serving


class TestRegisterAdvertiser:
    async def test_registered_and_readable_without_its_token(
        self, client: httpx.AsyncClient, advertiser: dict[str, Any], db: AsyncEngine
    ) -> None:
        assert advertiser["tiktok_advertiser_id"] == ADVERTISER_ID
        assert advertiser["name"] == "Test brand"
        assert "access_token" not in advertiser
        response = await client.get(f"/v1/advertisers/{ADVERTISER_ID}")
        assert response.status_code == 200
        assert response.json() == advertiser
        assert ADVERTISER_TOKEN not in response.text
        assert ADVERTISER_TOKEN not in await dump_database(db)

    async def test_registering_twice_is_a_conflict(self, client: httpx.AsyncClient, advertiser: dict[str, Any]) -> None:
        response = await client.post(
            "/v1/advertisers", json={"tiktok_advertiser_id": ADVERTISER_ID, "access_token": "another-token"}
        )
        assert_problem(response, 409, "advertiser_already_exists")

    async def test_concurrent_registrations_make_one_ad_account(
        self, client: httpx.AsyncClient, db: AsyncEngine
    ) -> None:
        body = {"tiktok_advertiser_id": ADVERTISER_ID, "access_token": ADVERTISER_TOKEN}
        responses = await asyncio.gather(*(client.post("/v1/advertisers", json=body) for _ in range(5)))
        assert sorted(r.status_code for r in responses) == [201, 409, 409, 409, 409]
        assert await count_rows(db, "advertisers") == 1

    @pytest.mark.parametrize(
        ("token", "reason"),
        [("expired-token", "access_token_invalid"), ("invalid-token", "access_token_invalid")],
    )
    async def test_token_tiktok_rejects_is_refused_and_nothing_stored(
        self, client: httpx.AsyncClient, db: AsyncEngine, token: str, reason: str
    ) -> None:
        response = await client.post(
            "/v1/advertisers", json={"tiktok_advertiser_id": ADVERTISER_ID, "access_token": token}
        )
        body = assert_problem(response, 422, reason)
        assert body["tiktok"]["code"] in (40102, 40105)
        assert body["tiktok"]["request_id"]
        assert await count_rows(db, "advertisers") == 0

    async def test_advertiser_tiktok_does_not_know_is_refused(self, client: httpx.AsyncClient, db: AsyncEngine) -> None:
        response = await client.post(
            "/v1/advertisers",
            json={"tiktok_advertiser_id": "4030000000000000000", "access_token": ADVERTISER_TOKEN},
        )
        assert_problem(response, 422, "advertiser_permission_denied")
        assert await count_rows(db, "advertisers") == 0

    @pytest.mark.parametrize(
        "body",
        [
            {},
            {"tiktok_advertiser_id": "ad-123", "access_token": "t"},
            {"tiktok_advertiser_id": "", "access_token": "t"},
            {"tiktok_advertiser_id": ADVERTISER_ID, "access_token": ""},
            {"tiktok_advertiser_id": 7000000000000000001, "access_token": "t"},
            {"tiktok_advertiser_id": ADVERTISER_ID, "access_token": "t", "extra": 1},
            {"tiktok_advertiser_id": ADVERTISER_ID, "access_token": "t", "name": "n" * 201},
            {"tiktok_advertiser_id": ADVERTISER_ID, "access_token": "t", "name": "nul\u0000byte"},
            [],
            "text",
        ],
    )
    async def test_malformed_bodies_are_422_and_never_echo_the_token(
        self, client: httpx.AsyncClient, body: Any
    ) -> None:
        response = await client.post("/v1/advertisers", json=body)
        problem = assert_problem(response, 422, "request_invalid")
        assert problem["errors"]
        assert all(set(error) == {"loc", "msg", "type"} for error in problem["errors"])

    @pytest.mark.parametrize("content", [b"{not json", b"\xff\xfe\x00", b""])
    async def test_body_that_is_not_json_is_422(self, client: httpx.AsyncClient, content: bytes) -> None:
        response = await client.post("/v1/advertisers", content=content, headers={"Content-Type": "application/json"})
        assert_problem(response, 422, "request_invalid")

    async def test_token_that_cannot_travel_in_a_header_is_422(self, client: httpx.AsyncClient) -> None:
        body = {"tiktok_advertiser_id": ADVERTISER_ID, "access_token": "tök\nen"}
        assert_problem(await client.post("/v1/advertisers", json=body), 422, "request_invalid")


class TestGetAdvertiser:
    async def test_unknown_ad_account_is_404(self, client: httpx.AsyncClient) -> None:
        assert_problem(await client.get("/v1/advertisers/123"), 404, "advertiser_not_found")

    async def test_id_that_is_not_digits_is_422(self, client: httpx.AsyncClient) -> None:
        assert_problem(await client.get("/v1/advertisers/abc"), 422, "request_invalid")


class TestUnknownRoutes:
    async def test_unknown_path_is_a_problem(self, client: httpx.AsyncClient) -> None:
        assert_problem(await client.get("/v1/nothing-here"), 404, "not_found")

    async def test_wrong_method_is_a_problem(self, client: httpx.AsyncClient) -> None:
        assert_problem(await client.delete("/v1/advertisers"), 405, "method_not_allowed")


class TestReconnectAdvertiser:
    """After `access_token_invalid`, the ad account is re-connected with a new token, which TikTok must accept."""

    async def test_new_token_replaces_the_rejected_one(
        self, app: FastAPI, client: httpx.AsyncClient, advertiser: dict[str, Any], db: AsyncEngine
    ) -> None:
        box: SecretBox = app.state.secret_box
        async with db.begin() as connection:  # TikTok stops accepting the stored token
            await connection.execute(
                text("UPDATE advertisers SET access_token_encrypted = :t"), {"t": box.encrypt("expired-token")}
            )
        apply_path = f"/v1/advertisers/{ADVERTISER_ID}/authorizations"
        assert_problem(
            await client.post(apply_path, json={"auth_code": "#SBX+video/30d="}), 422, "access_token_invalid"
        )

        response = await client.put(f"/v1/advertisers/{ADVERTISER_ID}/access-token", json={"access_token": "fresh-1"})
        assert response.status_code == 200
        assert response.json()["tiktok_advertiser_id"] == ADVERTISER_ID
        assert "fresh-1" not in response.text
        assert "fresh-1" not in await dump_database(db)
        assert (await client.post(apply_path, json={"auth_code": "#SBX+video/30d="})).status_code == 201

    async def test_token_tiktok_rejects_is_refused_and_the_old_one_kept(
        self, app: FastAPI, client: httpx.AsyncClient, advertiser: dict[str, Any], db: AsyncEngine
    ) -> None:
        response = await client.put(
            f"/v1/advertisers/{ADVERTISER_ID}/access-token", json={"access_token": "invalid-token"}
        )
        assert_problem(response, 422, "access_token_invalid")
        async with db.connect() as connection:
            stored = (await connection.execute(text("SELECT access_token_encrypted FROM advertisers"))).scalar_one()
        assert app.state.secret_box.decrypt(bytes(stored)) == ADVERTISER_TOKEN

    async def test_applies_go_on_while_tiktok_checks_the_new_token(
        self, settings: Settings, db: AsyncEngine, fast_retries: None
    ) -> None:
        """Finding 5: the ad account's row was locked (FOR UPDATE) across TikTok's check of the new token, which
        held up every authorization stored for it (their foreign key takes a share lock on that row)."""
        gate = GatedTransport(httpx.ASGITransport(app=create_sandbox_app()), "list", held=False)
        async with serving(settings, gate) as client:
            await register_advertiser(client)
            gate.hold()  # TikTok takes its time checking the new token
            reconnecting = asyncio.create_task(
                client.put(f"/v1/advertisers/{ADVERTISER_ID}/access-token", json={"access_token": "fresh-2"})
            )
            await gate.wait_for(1)
            async with asyncio.timeout(20):  # blocked for as long as TikTok takes, before
                applied = await apply(client, "#SBX+video/30d=")
            assert applied.status_code == 201, applied.text
            gate.open()
            assert (await reconnecting).status_code == 200

    async def test_unknown_ad_account_is_404(self, client: httpx.AsyncClient) -> None:
        response = await client.put("/v1/advertisers/123/access-token", json={"access_token": "t"})
        assert_problem(response, 404, "advertiser_not_found")

    @pytest.mark.parametrize("body", [{}, {"access_token": ""}, {"access_token": "with space"}, {"token": "t"}])
    async def test_malformed_body_is_422(
        self, client: httpx.AsyncClient, advertiser: dict[str, Any], body: dict[str, Any]
    ) -> None:
        response = await client.put(f"/v1/advertisers/{ADVERTISER_ID}/access-token", json=body)
        assert_problem(response, 422, "request_invalid")
