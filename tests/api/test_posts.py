"""May the creator delete this post? (D7) Answered across every ad account, with every blocker and its action."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
import time_machine
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.api.helpers import apply, assert_problem
from tests.conftest import ADVERTISER_ID

OTHER_ADVERTISER_ID = "7000000000000000002"
VIDEO_7D = "#SBX+video/7d="
VIDEO_30D = "#SBX+video/30d="
DUET = "#SBX+duet/secondary="
DUET_ORIGINAL = "#SBX+duet/original="


def _verdict(client: httpx.AsyncClient, item_id: str) -> Any:
    return client.get(f"/v1/posts/{item_id}/deletion-safety")


def _link(client: httpx.AsyncClient, authorization_id: str, ad_id: str) -> Any:
    return client.post(
        f"/v1/authorizations/{authorization_id}/ads",
        json={"ad_id": ad_id, "campaign_type": "STANDARD", "only_show_as_ad": True},
    )


def _blockers(verdict: dict[str, Any]) -> list[tuple[str, str, str, str | None]]:
    return [
        (blocker["kind"], blocker["action"], blocker["advertiser_id"], blocker["ad_id"])
        for blocker in verdict["blockers"]
    ]


@pytest.fixture
async def two_ad_accounts(client: httpx.AsyncClient, advertiser: dict[str, Any]) -> None:
    response = await client.post(
        "/v1/advertisers", json={"tiktok_advertiser_id": OTHER_ADVERTISER_ID, "access_token": "sandbox-token"}
    )
    assert response.status_code == 201, response.text


class TestDeletionSafety:
    async def test_a_post_never_seen_is_safe_and_unknown(self, client: httpx.AsyncClient) -> None:
        verdict = (await _verdict(client, "7380000000000000000")).json()
        assert (verdict["safe"], verdict["known"], verdict["blockers"]) == (True, False, [])

    async def test_an_authorized_post_is_blocked_until_unauthorized(
        self, client: httpx.AsyncClient, advertiser: dict[str, Any]
    ) -> None:
        created = (await apply(client, VIDEO_30D)).json()
        verdict = (await _verdict(client, created["item_id"])).json()
        assert (verdict["safe"], verdict["known"]) == (False, True)
        assert _blockers(verdict) == [("authorization", "unauthorize", ADVERTISER_ID, None)]
        assert verdict["blockers"][0]["authorization_id"] == created["id"]
        assert verdict["blockers"][0]["relation"] == "post"

        await client.post(f"/v1/authorizations/{created['id']}/unauthorize")
        verdict = (await _verdict(client, created["item_id"])).json()
        assert (verdict["safe"], verdict["known"], verdict["blockers"]) == (True, True, [])

    async def test_an_authorizations_active_ads_come_first_oldest_first_and_removed_ones_not_at_all(
        self, client: httpx.AsyncClient, advertiser: dict[str, Any]
    ) -> None:
        """Ad ids chosen so that their order is not the order they were linked in."""
        created = (await apply(client, VIDEO_30D)).json()
        for ad_id in ("1800000000000000009", "1800000000000000001", "1800000000000000005", "1800000000000000003"):
            assert (await _link(client, created["id"], ad_id)).status_code == 201
        removed = await client.delete(f"/v1/authorizations/{created['id']}/ads/1800000000000000005")
        assert removed.status_code == 204
        verdict = (await _verdict(client, created["item_id"])).json()
        assert _blockers(verdict) == [
            ("ad", "remove_ad", ADVERTISER_ID, "1800000000000000009"),
            ("ad", "remove_ad", ADVERTISER_ID, "1800000000000000001"),
            ("ad", "remove_ad", ADVERTISER_ID, "1800000000000000003"),
            ("authorization", "unauthorize", ADVERTISER_ID, None),
        ]

    async def test_every_ad_and_authorization_in_every_ad_account(
        self, client: httpx.AsyncClient, two_ad_accounts: None
    ) -> None:
        here = (await apply(client, VIDEO_30D)).json()
        there = (await apply(client, VIDEO_30D, advertiser_id=OTHER_ADVERTISER_ID)).json()
        await _link(client, here["id"], "1800000000000000001")
        await _link(client, there["id"], "1800000000000000002")
        await _link(client, there["id"], "1800000000000000003")

        verdict = (await _verdict(client, here["item_id"])).json()
        assert verdict["safe"] is False
        assert sorted(_blockers(verdict), key=str) == sorted(
            [
                ("ad", "remove_ad", ADVERTISER_ID, "1800000000000000001"),
                ("authorization", "unauthorize", ADVERTISER_ID, None),
                ("ad", "remove_ad", OTHER_ADVERTISER_ID, "1800000000000000002"),
                ("ad", "remove_ad", OTHER_ADVERTISER_ID, "1800000000000000003"),
                ("authorization", "unauthorize", OTHER_ADVERTISER_ID, None),
            ],
            key=str,
        )

        # Clearing every blocker, as the actions say, makes it safe.
        for blocker in verdict["blockers"]:
            if blocker["action"] == "remove_ad":
                path = f"/v1/authorizations/{blocker['authorization_id']}/ads/{blocker['ad_id']}"
                assert (await client.delete(path)).status_code == 204
        for blocker in verdict["blockers"]:
            if blocker["action"] == "unauthorize":
                path = f"/v1/authorizations/{blocker['authorization_id']}/unauthorize"
                assert (await client.post(path)).status_code == 200
        assert (await _verdict(client, here["item_id"])).json()["safe"] is True

    async def test_an_expired_authorization_never_unbound_still_blocks(
        self, client: httpx.AsyncClient, advertiser: dict[str, Any]
    ) -> None:
        """TikTok documents unbind for expired authorizations: until then, the post is bound."""
        created = (await apply(client, VIDEO_7D)).json()
        with time_machine.travel(datetime.fromisoformat(created["auth_end_at"]) + timedelta(days=1), tick=False):
            verdict = (await _verdict(client, created["item_id"])).json()
        assert verdict["safe"] is False
        assert [(b["authorization_status"], b["action"]) for b in verdict["blockers"]] == [("expired", "unauthorize")]

    async def test_the_original_of_a_duet_is_blocked_by_the_duet(
        self, client: httpx.AsyncClient, advertiser: dict[str, Any]
    ) -> None:
        """D12: a Duet/Stitch counts for both posts."""
        pair = (await apply(client, DUET, DUET_ORIGINAL)).json()
        original_item_id = pair["original_post"]["item_id"]
        await _link(client, pair["id"], "1800000000000000004")
        verdict = (await _verdict(client, original_item_id)).json()
        assert verdict["safe"] is False
        relations = sorted((b["relation"], b["kind"], b["item_id"]) for b in verdict["blockers"])
        assert relations == [
            ("duet", "ad", pair["item_id"]),
            ("duet", "authorization", pair["item_id"]),
            ("post", "authorization", original_item_id),
        ]

    async def test_the_posts_own_blockers_come_before_those_of_the_duets_made_from_it(
        self, client: httpx.AsyncClient, two_ad_accounts: None
    ) -> None:
        """The answer lists the post's own authorizations first, then the Duets/Stitches made from it, each oldest
        first: here the original's authorization in the other ad account comes after the Duet, yet before it."""
        pair = (await apply(client, DUET, DUET_ORIGINAL)).json()
        original_item_id = pair["original_post"]["item_id"]
        alone = await apply(client, DUET_ORIGINAL, advertiser_id=OTHER_ADVERTISER_ID)
        assert alone.status_code == 201, alone.text
        verdict = (await _verdict(client, original_item_id)).json()
        assert [(b["relation"], b["advertiser_id"]) for b in verdict["blockers"]] == [
            ("post", ADVERTISER_ID),
            ("post", OTHER_ADVERTISER_ID),
            ("duet", ADVERTISER_ID),
        ]

    async def test_an_apply_whose_outcome_is_unknown_blocks_with_settle(
        self, client: httpx.AsyncClient, advertiser: dict[str, Any], db: AsyncEngine
    ) -> None:
        created = (await apply(client, VIDEO_30D)).json()
        async with db.begin() as connection:
            await connection.execute(text("UPDATE authorizations SET state = 'pending'"))
        verdict = (await _verdict(client, created["item_id"])).json()
        assert [(b["authorization_status"], b["action"]) for b in verdict["blockers"]] == [("pending", "settle")]

    @pytest.mark.parametrize("item_id", ["abc", "1" * 33, "-1"])
    async def test_an_item_id_that_is_not_one_is_422(self, client: httpx.AsyncClient, item_id: str) -> None:
        assert_problem(await _verdict(client, item_id), 422, "request_invalid")

    async def test_a_posts_rows_are_found_by_index_not_by_reading_every_authorization(self, db: AsyncEngine) -> None:
        """The verdict and the post's read look for the post's rows and its Duets'/Stitches' (migration 0010)."""
        async with db.connect() as connection:
            await connection.execute(text("SET enable_seqscan = off"))
            rows = await connection.execute(
                text("EXPLAIN SELECT id FROM authorizations WHERE item_id = '7' OR original_item_id = '7'")
            )
            plan = "\n".join(row[0] for row in rows)
        assert "ix_authorizations_item_id" in plan
        assert "ix_authorizations_original_item_id" in plan, plan


class TestPost:
    async def test_every_authorization_and_ad_across_ad_accounts_with_the_history(
        self, client: httpx.AsyncClient, two_ad_accounts: None
    ) -> None:
        first = (await apply(client, VIDEO_30D)).json()
        await _link(client, first["id"], "1800000000000000011")
        await client.delete(f"/v1/authorizations/{first['id']}/ads/1800000000000000011")
        await client.post(f"/v1/authorizations/{first['id']}/unauthorize")
        again = (await apply(client, VIDEO_30D)).json()
        there = (await apply(client, VIDEO_30D, advertiser_id=OTHER_ADVERTISER_ID)).json()
        await _link(client, there["id"], "1800000000000000012")

        post = (await client.get(f"/v1/posts/{first['item_id']}")).json()
        assert post["known"] is True
        by_id = {authorization["id"]: authorization for authorization in post["authorizations"]}
        assert set(by_id) == {first["id"], again["id"], there["id"]}
        assert by_id[first["id"]]["status"] == "unauthorized"
        assert [(ad["ad_id"], ad["state"]) for ad in by_id[first["id"]]["ads"]] == [("1800000000000000011", "removed")]
        assert [(ad["ad_id"], ad["state"]) for ad in by_id[there["id"]]["ads"]] == [("1800000000000000012", "active")]
        assert post["pairs"] == []

    async def test_a_post_never_seen(self, client: httpx.AsyncClient) -> None:
        post = (await client.get("/v1/posts/7380000000000000000")).json()
        assert post == {"item_id": "7380000000000000000", "known": False, "authorizations": [], "pairs": []}

    async def test_the_duets_made_from_it(self, client: httpx.AsyncClient, advertiser: dict[str, Any]) -> None:
        pair = (await apply(client, DUET, DUET_ORIGINAL)).json()
        post = (await client.get(f"/v1/posts/{pair['original_post']['item_id']}")).json()
        assert [a["id"] for a in post["authorizations"]] == [pair["original_post"]["authorization_id"]]
        assert [a["id"] for a in post["pairs"]] == [pair["id"]]


async def _poll_verdicts(client: httpx.AsyncClient, item_id: str, stop: asyncio.Event, into: list[bool]) -> None:
    while not stop.is_set():
        into.append((await _verdict(client, item_id)).json()["safe"])


class TestVerdictUnderConcurrency:
    async def test_never_safe_in_a_round_where_a_link_beat_the_unauthorize(
        self, client: httpx.AsyncClient, advertiser: dict[str, Any], db: AsyncEngine
    ) -> None:
        """A link and an un-authorize race, verdicts are read all along: a verdict may say `safe` only if the
        un-authorize won (then the post is safe from that moment on); never in a round the link won."""
        for round_number in range(15):
            authorization = (await apply(client, VIDEO_30D)).json()
            ad_id = f"18{round_number:017d}"
            item_id = authorization["item_id"]
            stop = asyncio.Event()
            verdicts: list[bool] = []
            poller = asyncio.create_task(_poll_verdicts(client, item_id, stop, verdicts))
            linked, unauthorized = await asyncio.gather(
                _link(client, authorization["id"], ad_id),
                client.post(f"/v1/authorizations/{authorization['id']}/unauthorize"),
            )
            stop.set()
            await poller
            verdicts.append((await _verdict(client, item_id)).json()["safe"])

            link_won = linked.status_code == 201
            assert link_won != (unauthorized.status_code == 200), (linked.text, unauthorized.text)
            if link_won:
                assert_problem(unauthorized, 409, "ads_still_active")
                assert not any(verdicts)
                await client.delete(f"/v1/authorizations/{authorization['id']}/ads/{ad_id}")
                assert (await client.post(f"/v1/authorizations/{authorization['id']}/unauthorize")).status_code == 200
            else:
                assert_problem(linked, 409, "authorization_not_active")
                assert verdicts[-1] is True
            async with db.connect() as connection:
                bad = await connection.execute(
                    text(
                        "SELECT count(*) FROM ads JOIN authorizations ON ads.authorization_id = authorizations.id "
                        "WHERE ads.state = 'active' AND authorizations.state = 'unauthorized'"
                    )
                )
                assert bad.scalar_one() == 0
