"""Every /v1 path needs `Authorization: Bearer <api key>`; keys are stored only as keyed hashes (HMAC)."""

from __future__ import annotations

import uuid

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.kit.crypto import KeyHasher
from tests.conftest import API_KEY, API_KEY_SECRET


def _v1_operations() -> list[tuple[str, str]]:
    """Every /v1 operation the app documents, with its path parameters filled in."""
    from app.main import create_app

    operations = []
    for path, methods in create_app().openapi()["paths"].items():
        if path.startswith("/v1"):
            concrete = path.replace("{tiktok_advertiser_id}", "7000000000000000001")
            concrete = concrete.replace("{authorization_id}", str(uuid.uuid4()))
            concrete = concrete.replace("{api_key_id}", str(uuid.uuid4()))
            concrete = concrete.replace("{webhook_id}", str(uuid.uuid4()))
            concrete = concrete.replace("{ad_id}", "1800000000000000001").replace("{item_id}", "7380112233445566002")
            assert "{" not in concrete, f"fill in the parameters of {path}"
            operations.extend((method.upper(), concrete) for method in methods)
    return operations


V1_OPERATIONS = _v1_operations()


class TestAuthentication:
    def test_there_are_v1_operations_to_check(self) -> None:
        assert len(V1_OPERATIONS) >= 5

    @pytest.mark.parametrize(("method", "path"), V1_OPERATIONS)
    @pytest.mark.parametrize(
        "headers",
        [
            {},
            {"Authorization": "Bearer wrong-key"},
            {"Authorization": f"Basic {API_KEY}"},
            {"Authorization": "Bearer"},
        ],
        ids=["none", "unknown-key", "not-bearer", "empty-bearer"],
    )
    async def test_refused_without_a_valid_key(
        self, anonymous: httpx.AsyncClient, method: str, path: str, headers: dict[str, str]
    ) -> None:
        response = await anonymous.request(method, path, headers=headers, json={})
        assert response.status_code == 401
        assert response.headers["content-type"] == "application/problem+json"
        assert response.headers["www-authenticate"] == "Bearer"
        assert response.json()["reason"] == "not_authenticated"

    async def test_bootstrap_key_is_accepted(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/v1/advertisers/7000000000000000001")
        assert response.status_code == 404  # authenticated; the ad account just is not registered

    async def test_keys_are_stored_only_as_hashes(self, app: FastAPI, db: AsyncEngine) -> None:
        async with db.connect() as connection:
            rows = (await connection.execute(text("SELECT name, key_hash FROM api_keys"))).all()
            dump = (await connection.execute(text("SELECT api_keys::text FROM api_keys"))).scalars().all()
        assert [(name, bytes(key_hash)) for name, key_hash in rows] == [
            ("bootstrap", KeyHasher(API_KEY_SECRET).hash(API_KEY))
        ]
        assert all(API_KEY not in row for row in dump)

    async def test_bootstrap_twice_keeps_one_key(self, app: FastAPI, db: AsyncEngine) -> None:
        # A second replica starting with the same BOOTSTRAP_API_KEY.
        async with app.router.lifespan_context(app):
            pass
        async with db.connect() as connection:
            assert (await connection.execute(text("SELECT count(*) FROM api_keys"))).scalar_one() == 1
