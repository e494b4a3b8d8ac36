"""API keys: admin keys make and revoke keys for other systems; a key's value is shown once, stored as a hash."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.kit.crypto import KeyHasher
from tests.api.helpers import assert_problem, dump_database
from tests.conftest import API_KEY_SECRET


async def _create(client: httpx.AsyncClient, name: str = "campaign-tool", admin: bool = False) -> dict[str, Any]:
    response = await client.post("/v1/api-keys", json={"name": name, "admin": admin})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def _as(anonymous: httpx.AsyncClient, key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


class TestCreateApiKey:
    async def test_new_key_works_and_is_stored_only_as_a_hash(
        self, client: httpx.AsyncClient, anonymous: httpx.AsyncClient, db: AsyncEngine
    ) -> None:
        created = await _create(client)
        assert created["key"].startswith("sa_")
        assert (created["name"], created["admin"], created["revoked_at"]) == ("campaign-tool", False, None)
        response = await anonymous.get("/v1/advertisers/1", headers=_as(anonymous, created["key"]))
        assert response.status_code == 404  # authenticated: the ad account just is not there
        assert created["key"] not in await dump_database(db)
        async with db.connect() as connection:
            stored = await connection.execute(text("SELECT key_hash FROM api_keys WHERE name = 'campaign-tool'"))
            assert bytes(stored.scalar_one()) == KeyHasher(API_KEY_SECRET).hash(created["key"])

    async def test_listing_never_shows_values(self, client: httpx.AsyncClient) -> None:
        created = await _create(client)
        listing = await client.get("/v1/api-keys")
        assert listing.status_code == 200
        assert [key["name"] for key in listing.json()["items"]] == ["bootstrap", "campaign-tool"]
        assert all("key" not in key for key in listing.json()["items"])
        assert created["key"] not in listing.text

    async def test_a_key_that_is_not_admin_cannot_manage_keys(
        self, client: httpx.AsyncClient, anonymous: httpx.AsyncClient
    ) -> None:
        created = await _create(client)
        headers = _as(anonymous, created["key"])
        assert_problem(await anonymous.get("/v1/api-keys", headers=headers), 403, "admin_required")
        response = await anonymous.post("/v1/api-keys", json={"name": "sneaky", "admin": True}, headers=headers)
        assert_problem(response, 403, "admin_required")
        response = await anonymous.delete(f"/v1/api-keys/{created['id']}", headers=headers)
        assert_problem(response, 403, "admin_required")

    async def test_an_admin_key_made_through_the_api_can_manage_keys(
        self, client: httpx.AsyncClient, anonymous: httpx.AsyncClient
    ) -> None:
        admin = await _create(client, name="ops", admin=True)
        response = await anonymous.post("/v1/api-keys", json={"name": "billing"}, headers=_as(anonymous, admin["key"]))
        assert response.status_code == 201


class TestRevokeApiKey:
    async def test_revoked_key_stops_working_at_once(
        self, client: httpx.AsyncClient, anonymous: httpx.AsyncClient
    ) -> None:
        created = await _create(client)
        revoked = await client.delete(f"/v1/api-keys/{created['id']}")
        assert revoked.status_code == 200
        assert revoked.json()["revoked_at"] is not None
        response = await anonymous.get("/v1/advertisers/1", headers=_as(anonymous, created["key"]))
        assert_problem(response, 401, "not_authenticated")
        again = await client.delete(f"/v1/api-keys/{created['id']}")
        assert (again.status_code, again.json()["revoked_at"]) == (200, revoked.json()["revoked_at"])

    async def test_concurrent_revocations_agree(self, client: httpx.AsyncClient) -> None:
        created = await _create(client)
        answers = await asyncio.gather(*(client.delete(f"/v1/api-keys/{created['id']}") for _ in range(4)))
        assert {answer.status_code for answer in answers} == {200}
        assert len({answer.json()["revoked_at"] for answer in answers}) == 1

    async def test_a_key_cannot_revoke_itself(self, client: httpx.AsyncClient) -> None:
        keys = (await client.get("/v1/api-keys")).json()["items"]
        bootstrap = next(key for key in keys if key["name"] == "bootstrap")
        assert_problem(await client.delete(f"/v1/api-keys/{bootstrap['id']}"), 409, "cannot_revoke_own_key")

    async def test_unknown_key_is_404(self, client: httpx.AsyncClient) -> None:
        response = await client.delete("/v1/api-keys/00000000-0000-0000-0000-000000000000")
        assert_problem(response, 404, "api_key_not_found")
