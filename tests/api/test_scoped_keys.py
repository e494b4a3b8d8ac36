"""Scoped API keys, as the calling systems see them: a key touches only the ad accounts it was granted, and
outside them everything answers exactly as if it did not exist; a key without `write` cannot write; every write
records the key that made it; keys made before hashes were keyed keep working and are re-hashed on first use."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.kit.crypto import KeyHasher, hash_api_key
from tests.api.helpers import apply, assert_problem
from tests.conftest import ADVERTISER_ID, ADVERTISER_TOKEN, API_KEY_SECRET, MakeKey

OTHER_ADVERTISER_ID = "7000000000000000002"
THIRD_ADVERTISER_ID = "7000000000000000003"
ANA_30D = "#SBX+video/30d="
BRUNO_30D = "#SBX+video/30d-b="
AD = {"campaign_type": "STANDARD", "only_show_as_ad": True}
# The brand's own public video (D1): no code needed.
OWN_POST = {"item_id": "7380112233445567001", "identity_type": "TT_USER", "identity_id": "7302000000000000001"}


async def _register(client: httpx.AsyncClient, advertiser_id: str) -> httpx.Response:
    return await client.post(
        "/v1/advertisers", json={"tiktok_advertiser_id": advertiser_id, "access_token": ADVERTISER_TOKEN}
    )


@pytest.fixture
async def two_accounts(client: httpx.AsyncClient) -> dict[str, Any]:
    """Two registered ad accounts (by the admin); in the first, an authorization with an ad."""
    for advertiser_id in (ADVERTISER_ID, OTHER_ADVERTISER_ID):
        assert (await _register(client, advertiser_id)).status_code == 201
    applied = await apply(client, ANA_30D)
    assert applied.status_code == 201, applied.text
    authorization = applied.json()
    linked = await client.post(
        f"/v1/authorizations/{authorization['id']}/ads", json={**AD, "ad_id": "1800000000000000001"}
    )
    assert linked.status_code == 201, linked.text
    return authorization


def _without_instance(response: httpx.Response) -> dict[str, Any]:
    body: dict[str, Any] = response.json()
    body.pop("instance", None)
    return body


def _every_request_under_an_account(advertiser_id: str, authorization_id: str) -> list[tuple[str, str, Any]]:
    """Every operation on an ad account or on something under it, with a body it would accept."""
    under = f"/v1/advertisers/{advertiser_id}"
    of_authorization = f"/v1/authorizations/{authorization_id}"
    return [
        ("GET", under, None),
        ("PATCH", under, {"name": "renamed"}),
        ("PUT", f"{under}/access-token", {"access_token": ADVERTISER_TOKEN}),
        ("GET", f"{under}/authorizations", None),
        ("POST", f"{under}/authorizations", {"auth_code": BRUNO_30D}),
        ("POST", f"{under}/authorizations/batch", {"items": [{"auth_code": BRUNO_30D}]}),
        ("POST", f"{under}/own-posts", OWN_POST),
        ("GET", f"{under}/spark-ads-quota", None),
        ("GET", of_authorization, None),
        ("POST", f"{of_authorization}/unauthorize", None),
        ("GET", f"{of_authorization}/ads", None),
        ("POST", f"{of_authorization}/ads", {**AD, "ad_id": "1800000000000000002"}),
        ("DELETE", f"{of_authorization}/ads/1800000000000000001", None),
    ]


class TestOutsideItsAdAccounts:
    async def test_everything_under_an_account_it_may_not_touch_is_404_like_what_does_not_exist(
        self, client: httpx.AsyncClient, make_key: MakeKey, two_accounts: dict[str, Any], db: AsyncEngine
    ) -> None:
        outsider = await make_key("billing", advertiser_ids=[OTHER_ADVERTISER_ID])
        before = await _rows(db)
        real = _every_request_under_an_account(ADVERTISER_ID, two_accounts["id"])
        # The same requests on an ad account and an authorization that do not exist at all.
        absent = _every_request_under_an_account(THIRD_ADVERTISER_ID, str(uuid.uuid4()))
        for (method, path, body), (_, absent_path, _) in zip(real, absent, strict=True):
            hidden = await outsider.client.request(method, path, json=body)
            missing = await outsider.client.request(method, absent_path, json=body)
            reason = "advertiser_not_found" if path.startswith("/v1/advertisers") else "authorization_not_found"
            assert_problem(hidden, 404, reason)
            # Nothing tells the two apart but the ids in the text.
            assert _without_instance(hidden).keys() == _without_instance(missing).keys(), (method, path)
            assert hidden.json()["title"] == missing.json()["title"]
        assert await _rows(db) == before  # and nothing changed

    async def test_the_same_requests_work_for_a_key_granted_the_account(
        self, make_key: MakeKey, two_accounts: dict[str, Any]
    ) -> None:
        insider = await make_key("campaign-tool", advertiser_ids=[ADVERTISER_ID])
        for method, path, body in _every_request_under_an_account(ADVERTISER_ID, two_accounts["id"]):
            if path.endswith("/unauthorize"):
                continue  # refused while an ad is active (D16): that it is refused for D16 is checked below
            response = await insider.client.request(method, path, json=body)
            assert response.status_code < 300, (method, path, response.text)
        refused = await insider.client.post(f"/v1/authorizations/{two_accounts['id']}/unauthorize")
        assert refused.status_code == 409, refused.text

    async def test_a_post_shows_only_the_accounts_the_key_may_see(
        self, make_key: MakeKey, two_accounts: dict[str, Any]
    ) -> None:
        outsider = await make_key("billing", advertiser_ids=[OTHER_ADVERTISER_ID])
        post = await outsider.client.get(f"/v1/posts/{two_accounts['item_id']}")
        assert post.status_code == 200
        assert (post.json()["known"], post.json()["authorizations"], post.json()["pairs"]) == (False, [], [])

    async def test_the_deletion_verdict_counts_every_account_and_names_only_visible_ones(
        self, client: httpx.AsyncClient, make_key: MakeKey, two_accounts: dict[str, Any]
    ) -> None:
        """D7 across every ad account: the point of the verdict. A key that cannot see the blocking account still
        learns the post is not safe, and how many accounts block it, but not which."""
        assert (await apply(client, ANA_30D, advertiser_id=OTHER_ADVERTISER_ID)).status_code == 201
        item_id = two_accounts["item_id"]

        outsider = await make_key("billing", advertiser_ids=[OTHER_ADVERTISER_ID])
        verdict = (await outsider.client.get(f"/v1/posts/{item_id}/deletion-safety")).json()
        assert (verdict["safe"], verdict["other_ad_accounts"]) == (False, 1)
        assert {blocker["advertiser_id"] for blocker in verdict["blockers"]} == {OTHER_ADVERTISER_ID}
        assert all(blocker["ad_id"] is None for blocker in verdict["blockers"])  # the ad is in the hidden account

        stranger = await make_key("portal", advertiser_ids=[])
        verdict = (await stranger.client.get(f"/v1/posts/{item_id}/deletion-safety")).json()
        assert (verdict["safe"], verdict["blockers"], verdict["other_ad_accounts"]) == (False, [], 2)
        assert ADVERTISER_ID not in str(verdict) and OTHER_ADVERTISER_ID not in str(verdict)

        admin = (await client.get(f"/v1/posts/{item_id}/deletion-safety")).json()
        assert admin["other_ad_accounts"] == 0
        assert {blocker["advertiser_id"] for blocker in admin["blockers"]} == {ADVERTISER_ID, OTHER_ADVERTISER_ID}

    async def test_lists_show_only_what_the_key_may_see(
        self, client: httpx.AsyncClient, make_key: MakeKey, two_accounts: dict[str, Any]
    ) -> None:
        assert (await apply(client, BRUNO_30D, advertiser_id=OTHER_ADVERTISER_ID)).status_code == 201
        key = await make_key("billing", advertiser_ids=[OTHER_ADVERTISER_ID])
        listed = await key.client.get("/v1/advertisers")
        assert [account["tiktok_advertiser_id"] for account in listed.json()["items"]] == [OTHER_ADVERTISER_ID]
        authorizations = await key.client.get(f"/v1/advertisers/{OTHER_ADVERTISER_ID}/authorizations")
        assert {row["advertiser_id"] for row in authorizations.json()["items"]} == {OTHER_ADVERTISER_ID}
        everything = await client.get("/v1/advertisers")
        assert {account["tiktok_advertiser_id"] for account in everything.json()["items"]} == {
            ADVERTISER_ID,
            OTHER_ADVERTISER_ID,
        }


class TestGrants:
    async def test_a_grant_takes_effect_at_the_next_request_and_so_does_taking_it_away(
        self, client: httpx.AsyncClient, make_key: MakeKey, two_accounts: dict[str, Any]
    ) -> None:
        key = await make_key("billing", advertiser_ids=[OTHER_ADVERTISER_ID])
        path = f"/v1/authorizations/{two_accounts['id']}"
        assert (await key.client.get(path)).status_code == 404

        granted = await client.patch(f"/v1/api-keys/{key.id}", json={"advertiser_ids": [ADVERTISER_ID]})
        assert granted.status_code == 200, granted.text
        assert granted.json()["advertiser_ids"] == [ADVERTISER_ID]
        assert (await key.client.get(path)).status_code == 200
        assert (await key.client.get(f"/v1/advertisers/{OTHER_ADVERTISER_ID}")).status_code == 404  # replaced

        assert (await client.patch(f"/v1/api-keys/{key.id}", json={"advertiser_ids": []})).status_code == 200
        assert_problem(await key.client.get(path), 404, "authorization_not_found")

    async def test_the_key_that_registers_an_account_may_touch_it(
        self, client: httpx.AsyncClient, make_key: MakeKey
    ) -> None:
        key = await make_key("campaign-tool", advertiser_ids=[])
        registered = await _register(key.client, THIRD_ADVERTISER_ID)
        assert registered.status_code == 201, registered.text
        assert (await key.client.get(f"/v1/advertisers/{THIRD_ADVERTISER_ID}")).status_code == 200
        assert (await apply(key.client, ANA_30D, advertiser_id=THIRD_ADVERTISER_ID)).status_code == 201
        shown = await client.get(f"/v1/api-keys/{key.id}")
        assert shown.json()["advertiser_ids"] == [THIRD_ADVERTISER_ID]

    async def test_registering_an_account_someone_else_registered_grants_nothing(
        self, client: httpx.AsyncClient, make_key: MakeKey, two_accounts: dict[str, Any]
    ) -> None:
        """Holding a token TikTok accepts for the account proves access, so it may learn that the account is
        registered; it still gets no grant: that is an admin's decision."""
        key = await make_key("campaign-tool", advertiser_ids=[])
        assert_problem(await _register(key.client, ADVERTISER_ID), 409, "advertiser_already_exists")
        assert (await key.client.get(f"/v1/advertisers/{ADVERTISER_ID}")).status_code == 404

    async def test_a_token_tiktok_refuses_learns_nothing_about_a_registered_account(
        self, make_key: MakeKey, two_accounts: dict[str, Any]
    ) -> None:
        key = await make_key("campaign-tool", advertiser_ids=[])
        refused = await key.client.post(
            "/v1/advertisers", json={"tiktok_advertiser_id": ADVERTISER_ID, "access_token": "invalid-token"}
        )
        unknown = await key.client.post(
            "/v1/advertisers", json={"tiktok_advertiser_id": THIRD_ADVERTISER_ID, "access_token": "invalid-token"}
        )
        assert refused.status_code == unknown.status_code != 409
        assert refused.json()["reason"] == unknown.json()["reason"]

    async def test_an_admin_key_touches_every_account_without_grants(
        self, make_key: MakeKey, two_accounts: dict[str, Any]
    ) -> None:
        admin = await make_key("ops", scopes=["admin"])
        for advertiser_id in (ADVERTISER_ID, OTHER_ADVERTISER_ID):
            assert (await admin.client.get(f"/v1/advertisers/{advertiser_id}")).status_code == 200


class TestScopes:
    async def test_a_read_only_key_reads_and_cannot_write(
        self, make_key: MakeKey, two_accounts: dict[str, Any], db: AsyncEngine
    ) -> None:
        reader = await make_key("billing", scopes=["read"], advertiser_ids=[ADVERTISER_ID])
        before = await _rows(db)
        for method, path, body in _every_request_under_an_account(ADVERTISER_ID, two_accounts["id"]):
            response = await reader.client.request(method, path, json=body)
            if method == "GET":
                assert response.status_code == 200, (path, response.text)
            else:
                problem = assert_problem(response, 403, "scope_required")
                assert problem["scope"] == "write"
        assert_problem(await _register(reader.client, THIRD_ADVERTISER_ID), 403, "scope_required")
        assert await _rows(db) == before

    async def test_a_write_only_key_cannot_read(self, make_key: MakeKey, two_accounts: dict[str, Any]) -> None:
        writer = await make_key("importer", scopes=["write"], advertiser_ids=[ADVERTISER_ID])
        assert_problem(await writer.client.get(f"/v1/advertisers/{ADVERTISER_ID}"), 403, "scope_required")
        assert (await apply(writer.client, BRUNO_30D)).status_code == 201

    async def test_only_admin_keys_manage_keys(self, make_key: MakeKey) -> None:
        writer = await make_key("campaign-tool", advertiser_ids=[ADVERTISER_ID])
        assert_problem(await writer.client.get("/v1/api-keys"), 403, "admin_required")
        assert_problem(
            await writer.client.patch(f"/v1/api-keys/{writer.id}", json={"scopes": ["admin"]}), 403, "admin_required"
        )

    async def test_admin_true_is_the_admin_scope(self, client: httpx.AsyncClient) -> None:
        made = await client.post("/v1/api-keys", json={"name": "ops", "admin": True})
        assert (made.json()["admin"], made.json()["scopes"]) == (True, ["read", "write", "admin"])

    @pytest.mark.parametrize("admin", ["yes", "true", 1, "1", None])
    async def test_admin_must_be_a_real_boolean(self, client: httpx.AsyncClient, admin: Any) -> None:
        """A string or a number that looks like true once made an admin key."""
        assert_problem(await client.post("/v1/api-keys", json={"name": "x", "admin": admin}), 422, "request_invalid")
        listed = await client.get("/v1/api-keys")
        assert [key["name"] for key in listed.json()["items"]] == ["bootstrap"]

    async def test_unknown_scope_is_refused(self, client: httpx.AsyncClient) -> None:
        response = await client.post("/v1/api-keys", json={"name": "x", "scopes": ["superuser"]})
        assert_problem(response, 422, "request_invalid")


class TestWhoWroteWhat:
    async def test_every_write_records_its_key_and_reads_show_it(
        self, client: httpx.AsyncClient, make_key: MakeKey, two_accounts: dict[str, Any]
    ) -> None:
        tool = await make_key("campaign-tool", advertiser_ids=[ADVERTISER_ID])
        portal = await make_key("portal", advertiser_ids=[ADVERTISER_ID])
        admin_id = next(k["id"] for k in (await client.get("/v1/api-keys")).json()["items"] if k["name"] == "bootstrap")

        applied = (await apply(tool.client, BRUNO_30D)).json()
        assert (applied["created_by_api_key_id"], applied["updated_by_api_key_id"]) == (tool.id, tool.id)

        renamed = await portal.client.patch(f"/v1/advertisers/{ADVERTISER_ID}", json={"name": "Renamed"})
        assert (renamed.json()["created_by_api_key_id"], renamed.json()["updated_by_api_key_id"]) == (
            admin_id,
            portal.id,
        )
        ad = await portal.client.post(
            f"/v1/authorizations/{applied['id']}/ads", json={**AD, "ad_id": "1800000000000000009"}
        )
        assert ad.json()["created_by_api_key_id"] == portal.id
        removed = await tool.client.delete(f"/v1/authorizations/{applied['id']}/ads/1800000000000000009")
        assert removed.status_code == 204
        history = await portal.client.get(f"/v1/authorizations/{applied['id']}/ads", params={"state": "all"})
        (ad_after,) = history.json()["items"]
        assert (ad_after["created_by_api_key_id"], ad_after["updated_by_api_key_id"]) == (portal.id, tool.id)
        unauthorized = await portal.client.post(f"/v1/authorizations/{applied['id']}/unauthorize")
        assert unauthorized.status_code == 200, unauthorized.text
        assert unauthorized.json()["updated_by_api_key_id"] == portal.id
        assert (await tool.client.get(f"/v1/authorizations/{applied['id']}")).json()["updated_by_api_key_id"] == (
            portal.id
        )


class TestKeyedHashes:
    async def test_a_key_stored_before_hashes_were_keyed_works_and_is_rehashed_on_first_use(
        self, anonymous: httpx.AsyncClient, client: httpx.AsyncClient, db: AsyncEngine
    ) -> None:
        value = "sa_legacy-" + "x" * 30
        async with db.begin() as connection:
            await connection.execute(
                text(
                    "INSERT INTO api_keys (id, name, key_hash, hash_scheme, scopes) "
                    "VALUES (gen_random_uuid(), 'legacy', :hash, 'sha256', ARRAY['read', 'write'])"
                ),
                {"hash": hash_api_key(value)},
            )
        response = await anonymous.get("/v1/posts/1/deletion-safety", headers={"Authorization": f"Bearer {value}"})
        assert response.status_code == 200, response.text
        async with db.connect() as connection:
            row = (
                await connection.execute(text("SELECT key_hash, hash_scheme FROM api_keys WHERE name = 'legacy'"))
            ).one()
        assert (bytes(row.key_hash), row.hash_scheme) == (KeyHasher(API_KEY_SECRET).hash(value), "hmac")
        again = await anonymous.get("/v1/posts/1/deletion-safety", headers={"Authorization": f"Bearer {value}"})
        assert again.status_code == 200

    async def test_the_hash_depends_on_the_secret(self) -> None:
        """Without API_KEY_SECRET a stolen hash cannot be tested against guesses."""
        assert KeyHasher("one secret " + "x" * 30).hash("sa_same") != KeyHasher("another " + "x" * 30).hash("sa_same")


async def _rows(db: AsyncEngine) -> list[Any]:
    """Every row the API can change, ignoring which API keys exist: to prove a refusal changed nothing."""
    async with db.connect() as connection:
        rows = []
        for table in ("advertisers", "authorizations", "ads", "identity_usage", "api_key_grants"):
            result = await connection.execute(text(f"SELECT t::text FROM {table} t ORDER BY 1"))  # noqa: S608
            rows.append(result.scalars().all())
    return rows


class TestRaces:
    async def test_two_keys_registering_one_account_at_once_one_wins_and_only_it_is_granted(
        self, client: httpx.AsyncClient, make_key: MakeKey
    ) -> None:
        keys = [await make_key(f"tool-{n}", advertiser_ids=[]) for n in range(4)]
        answers = await asyncio.gather(*(_register(key.client, THIRD_ADVERTISER_ID) for key in keys))
        assert sorted(answer.status_code for answer in answers) == [201, 409, 409, 409]
        winner = next(key for key, answer in zip(keys, answers, strict=True) if answer.status_code == 201)
        for key in keys:
            shown = (await client.get(f"/v1/api-keys/{key.id}")).json()
            assert shown["advertiser_ids"] == ([THIRD_ADVERTISER_ID] if key is winner else [])
            seen = await key.client.get(f"/v1/advertisers/{THIRD_ADVERTISER_ID}")
            assert seen.status_code == (200 if key is winner else 404)

    async def test_once_a_grant_is_taken_away_no_later_request_gets_through(
        self, client: httpx.AsyncClient, make_key: MakeKey, two_accounts: dict[str, Any]
    ) -> None:
        key = await make_key("billing", advertiser_ids=[ADVERTISER_ID])
        path = f"/v1/authorizations/{two_accounts['id']}"

        async def keep_reading() -> list[int]:
            statuses = []
            for _ in range(30):
                statuses.append((await key.client.get(path)).status_code)
            return statuses

        readers = [asyncio.create_task(keep_reading()) for _ in range(3)]
        await asyncio.sleep(0.05)
        taken = await client.patch(f"/v1/api-keys/{key.id}", json={"advertiser_ids": []})
        assert taken.status_code == 200
        after = await asyncio.gather(*(key.client.get(path) for _ in range(10)))
        statuses = [status for reader in await asyncio.gather(*readers) for status in reader]
        assert set(statuses) <= {200, 404}  # each request saw the grants before or after, never half of it
        assert {response.status_code for response in after} == {404}
