"""Own posts (D1): the brand's own TikTok account's posts need no code; TikTok must show them under the identity."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from dev.sandbox.seed import (
    OWN_BANNED_ITEM_ID,
    OWN_BC_ID,
    OWN_BC_IDENTITY_ID,
    OWN_BC_VIDEO_ITEM_ID,
    OWN_CAROUSEL_ITEM_ID,
    OWN_DELETED_ITEM_ID,
    OWN_PRIVATE_ITEM_ID,
    OWN_TT_USER_IDENTITY_ID,
    OWN_VIDEO_ITEM_ID,
)
from tests.api.helpers import assert_problem, count_rows
from tests.conftest import ADVERTISER_ID

OWN_POSTS = f"/v1/advertisers/{ADVERTISER_ID}/own-posts"


def _tt_user(item_id: str) -> dict[str, Any]:
    return {"item_id": item_id, "identity_type": "TT_USER", "identity_id": OWN_TT_USER_IDENTITY_ID}


class TestRegisterOwnPost:
    async def test_registered_with_its_identity_no_code_and_no_window(
        self, client: httpx.AsyncClient, advertiser: dict[str, Any]
    ) -> None:
        response = await client.post(OWN_POSTS, json=_tt_user(OWN_VIDEO_ITEM_ID))
        assert response.status_code == 201, response.text
        body = response.json()
        assert body["item_id"] == OWN_VIDEO_ITEM_ID
        assert body["creator"] == {
            "identity_type": "TT_USER",
            "identity_id": OWN_TT_USER_IDENTITY_ID,
            "tiktok_name": None,
        }
        assert (body["code_hint"], body["auth_start_at"], body["auth_end_at"]) == (None, None, None)
        assert body["status"] == "active"
        assert body["video_duration_seconds"] > 0
        assert (await client.get(f"/v1/authorizations/{body['id']}")).json() == body

    async def test_registering_it_again_is_the_same_one(
        self, client: httpx.AsyncClient, advertiser: dict[str, Any], db: AsyncEngine
    ) -> None:
        first = await client.post(OWN_POSTS, json=_tt_user(OWN_VIDEO_ITEM_ID))
        again = await client.post(OWN_POSTS, json=_tt_user(OWN_VIDEO_ITEM_ID))
        assert (first.status_code, again.status_code) == (201, 200)
        assert again.json()["id"] == first.json()["id"]
        assert await count_rows(db, "authorizations") == 1

    async def test_through_a_business_center(self, client: httpx.AsyncClient, advertiser: dict[str, Any]) -> None:
        body = {
            "item_id": OWN_BC_VIDEO_ITEM_ID,
            "identity_type": "BC_AUTH_TT",
            "identity_id": OWN_BC_IDENTITY_ID,
            "identity_authorized_bc_id": OWN_BC_ID,
        }
        response = await client.post(OWN_POSTS, json=body)
        assert response.status_code == 201, response.text
        assert response.json()["creator"]["identity_type"] == "BC_AUTH_TT"

    async def test_a_carousel_and_a_private_post(self, client: httpx.AsyncClient, advertiser: dict[str, Any]) -> None:
        carousel = (await client.post(OWN_POSTS, json=_tt_user(OWN_CAROUSEL_ITEM_ID))).json()
        assert (carousel["item_type"], carousel["video_duration_seconds"]) == ("CAROUSEL", None)
        private = (await client.post(OWN_POSTS, json=_tt_user(OWN_PRIVATE_ITEM_ID))).json()
        assert [w["reason"] for w in private["warnings"]] == ["post_will_become_public"]  # D5

    @pytest.mark.parametrize(
        ("body", "reason"),
        [
            ({**_tt_user(OWN_VIDEO_ITEM_ID), "identity_id": "7302000000000000999"}, "own_post_not_found"),
            ({**_tt_user(OWN_BC_VIDEO_ITEM_ID)}, "own_post_not_found"),  # another identity's post
            ({**_tt_user("7380000000000000000")}, "own_post_not_found"),
            (
                {
                    "item_id": OWN_BC_VIDEO_ITEM_ID,
                    "identity_type": "BC_AUTH_TT",
                    "identity_id": OWN_BC_IDENTITY_ID,
                    "identity_authorized_bc_id": "7303000000000000999",
                },
                "own_post_not_found",
            ),
            (_tt_user(OWN_DELETED_ITEM_ID), "post_deleted"),
            (_tt_user(OWN_BANNED_ITEM_ID), "post_banned"),  # D8
        ],
    )
    async def test_refused_with_a_precise_reason(
        self, client: httpx.AsyncClient, advertiser: dict[str, Any], db: AsyncEngine, body: dict[str, Any], reason: str
    ) -> None:
        assert_problem(await client.post(OWN_POSTS, json=body), 422, reason)
        assert await count_rows(db, "authorizations") == 0

    @pytest.mark.parametrize(
        "body",
        [
            {"item_id": OWN_BC_VIDEO_ITEM_ID, "identity_type": "BC_AUTH_TT", "identity_id": OWN_BC_IDENTITY_ID},
            {**_tt_user(OWN_VIDEO_ITEM_ID), "identity_authorized_bc_id": OWN_BC_ID},
            {**_tt_user(OWN_VIDEO_ITEM_ID), "identity_type": "AUTH_CODE"},
            {**_tt_user("not digits")},
            {"item_id": OWN_VIDEO_ITEM_ID, "identity_type": "TT_USER"},
            {**_tt_user(OWN_VIDEO_ITEM_ID), "extra": 1},
        ],
    )
    async def test_malformed_bodies_are_422(
        self, client: httpx.AsyncClient, advertiser: dict[str, Any], body: dict[str, Any]
    ) -> None:
        assert_problem(await client.post(OWN_POSTS, json=body), 422, "request_invalid")

    async def test_unknown_ad_account_is_404(self, client: httpx.AsyncClient) -> None:
        response = await client.post("/v1/advertisers/123/own-posts", json=_tt_user(OWN_VIDEO_ITEM_ID))
        assert_problem(response, 404, "advertiser_not_found")

    async def test_tracked_like_any_authorization(self, client: httpx.AsyncClient, advertiser: dict[str, Any]) -> None:
        """Its ads count toward the limits, and it blocks the post's deletion (D7)."""
        own = (await client.post(OWN_POSTS, json=_tt_user(OWN_VIDEO_ITEM_ID))).json()
        linked = await client.post(
            f"/v1/authorizations/{own['id']}/ads",
            json={"ad_id": "1800000000000000100", "campaign_type": "SMART_PLUS", "only_show_as_ad": True},
        )
        assert linked.status_code == 201, linked.text
        quota = (await client.get(f"/v1/advertisers/{ADVERTISER_ID}/spark-ads-quota")).json()
        assert quota["used"] == 1
        assert quota["identities"] == [
            {
                "identity_type": "TT_USER",
                "identity_id": OWN_TT_USER_IDENTITY_ID,
                "limit": 10000,
                "used": 1,
                "remaining": 9999,
            }
        ]
        verdict = (await client.get(f"/v1/posts/{OWN_VIDEO_ITEM_ID}/deletion-safety")).json()
        assert (verdict["safe"], [b["action"] for b in verdict["blockers"]]) == (False, ["remove_ad", "unauthorize"])
