"""Ads that use authorized posts (D6), the limits on how many there may be (D10, and one identity's cap), the
warnings a link carries (D5), and un-authorizing under running ads (D16), as a caller sees them: over HTTP, on
the real database, against the sandbox; the races on real Postgres, with the app's own pool of connections."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx
import pytest
import time_machine
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.kit.settings import Settings
from dev.sandbox.app import create_sandbox_app
from tests.api.helpers import (
    CountingTransport,
    GatedTransport,
    apply,
    assert_problem,
    count_rows,
    losing_first_authorize_answer,
)
from tests.conftest import ADVERTISER_ID, ADVERTISER_TOKEN, Running, running

# Creator sbx.ana.creates (AUTH_CODE 7301000000000000001): three public videos and a private one.
ANA_7D = "#SBX+video/7d="
ANA_30D = "#SBX+video/30d="
ANA_365D = "#SBX+video/365d="
ANA_PRIVATE = "#SBX+visibility/private="
ANA = ("AUTH_CODE", "7301000000000000001")
# Creator sbx.bruno.films (AUTH_CODE 7301000000000000002).
BRUNO_30D = "#SBX+video/30d-b="
BRUNO_60D = "#SBX+video/60d="
BRUNO_CAROUSEL = "#SBX+carousel/30d="
BRUNO = ("AUTH_CODE", "7301000000000000002")
OTHER_ADVERTISER_ID = "7000000000000000002"
# The brand's own account (D1): a public video and a private one, no code needed.
OWN_IDENTITY = ("TT_USER", "7302000000000000001")
OWN_POST = "7380112233445567001"
OWN_PRIVATE_POST = "7380112233445567003"

AD_FIELDS = {
    "ad_id",
    "authorization_id",
    "advertiser_id",
    "item_id",
    "campaign_type",
    "only_show_as_ad",
    "ends_at",
    "state",
    "removed_at",
    "source",
    "warnings",
    "created_by_api_key_id",
    "updated_by_api_key_id",
    "created_at",
    "updated_at",
}


# --- how a caller speaks to the service -----------------------------------------------------------------------


async def _link(
    client: httpx.AsyncClient,
    authorization_id: str,
    ad_id: str,
    *,
    campaign_type: str = "STANDARD",
    only_show_as_ad: bool = True,
    ends_at: str | None = None,
) -> httpx.Response:
    body: dict[str, Any] = {"ad_id": ad_id, "campaign_type": campaign_type, "only_show_as_ad": only_show_as_ad}
    if ends_at is not None:
        body["ends_at"] = ends_at
    return await client.post(f"/v1/authorizations/{authorization_id}/ads", json=body)


async def _remove(client: httpx.AsyncClient, authorization_id: str, ad_id: str) -> httpx.Response:
    return await client.delete(f"/v1/authorizations/{authorization_id}/ads/{ad_id}")


async def _unauthorize(client: httpx.AsyncClient, authorization_id: str) -> httpx.Response:
    return await client.post(f"/v1/authorizations/{authorization_id}/unauthorize")


async def _quota(client: httpx.AsyncClient, advertiser_id: str = ADVERTISER_ID) -> dict[str, Any]:
    response = await client.get(f"/v1/advertisers/{advertiser_id}/spark-ads-quota")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def _register(
    client: httpx.AsyncClient, advertiser_id: str = ADVERTISER_ID, spark_ads_limit: int | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {"tiktok_advertiser_id": advertiser_id, "access_token": ADVERTISER_TOKEN}
    if spark_ads_limit is not None:
        body["spark_ads_limit"] = spark_ads_limit
    response = await client.post("/v1/advertisers", json=body)
    assert response.status_code == 201, response.text
    registered: dict[str, Any] = response.json()
    return registered


async def _authorized(client: httpx.AsyncClient, code: str, advertiser_id: str = ADVERTISER_ID) -> str:
    """Apply the code; the authorization's id."""
    response = await apply(client, code, advertiser_id=advertiser_id)
    assert response.status_code in (200, 201), response.text
    authorization_id: str = response.json()["id"]
    return authorization_id


async def _active_ads(client: httpx.AsyncClient, authorization_id: str) -> int:
    response = await client.get(f"/v1/authorizations/{authorization_id}")
    assert response.status_code == 200, response.text
    count: int = response.json()["active_ads"]
    return count


def _later(value: str, delta: timedelta) -> str:
    return (datetime.fromisoformat(value) + delta).isoformat()


# --- what the database holds ------------------------------------------------------------------------------------


async def _scalar(db: AsyncEngine, sql: str, **params: Any) -> Any:
    async with db.connect() as connection:
        return (await connection.execute(text(sql), params)).scalar_one()


async def _active_ads_in_database(db: AsyncEngine, advertiser_id: str = ADVERTISER_ID) -> int:
    return int(
        await _scalar(
            db,
            "SELECT count(*) FROM ads JOIN advertisers v ON v.id = ads.advertiser_id "
            "WHERE ads.state = 'active' AND v.tiktok_advertiser_id = :advertiser_id",
            advertiser_id=advertiser_id,
        )
    )


async def _identity_used(db: AsyncEngine, identity: tuple[str, str]) -> int:
    async with db.connect() as connection:
        used = (
            await connection.execute(
                text("SELECT ads_used FROM identity_usage WHERE identity_type = :t AND identity_id = :i"),
                {"t": identity[0], "i": identity[1]},
            )
        ).scalar_one_or_none()
    return int(used or 0)


async def _counter_drift(db: AsyncEngine) -> list[str]:
    """Every counter that differs from the count of active ads it stands for (none: they all agree)."""
    checks = {
        "advertisers.spark_ads_used": """
            SELECT v.tiktok_advertiser_id, v.spark_ads_used, count(ads.id) FILTER (WHERE ads.state = 'active')
            FROM advertisers v LEFT JOIN ads ON ads.advertiser_id = v.id
            GROUP BY v.id""",
        "authorizations.active_ads": """
            SELECT a.id::text, a.active_ads, count(ads.id) FILTER (WHERE ads.state = 'active')
            FROM authorizations a LEFT JOIN ads ON ads.authorization_id = a.id
            GROUP BY a.id""",
        "identity_usage.ads_used": """
            WITH counted AS (
                SELECT a.identity_type, a.identity_id, count(*) AS n
                FROM ads JOIN authorizations a ON a.id = ads.authorization_id
                WHERE ads.state = 'active' AND a.identity_id IS NOT NULL
                GROUP BY a.identity_type, a.identity_id)
            SELECT coalesce(u.identity_type, c.identity_type) || ':' || coalesce(u.identity_id, c.identity_id),
                   coalesce(u.ads_used, 0), coalesce(c.n, 0)
            FROM identity_usage u FULL JOIN counted c
              ON c.identity_type = u.identity_type AND c.identity_id = u.identity_id""",
    }
    drift = []
    async with db.connect() as connection:
        for counter, sql in checks.items():
            for key, kept, counted in (await connection.execute(text(sql))).all():
                if kept != counted:
                    drift.append(f"{counter} of {key}: {kept}, but {counted} active ads")
    return drift


async def _until_waiting_on_locks(db: AsyncEngine, count: int) -> None:
    """Until `count` sessions of the test database wait for a lock (fails the test after 10 s)."""
    async with asyncio.timeout(10):
        while True:
            waiting = await _scalar(
                db,
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'",
            )
            if waiting >= count:
                return
            await asyncio.sleep(0.01)


async def _after(delay: float, request: Awaitable[httpx.Response]) -> httpx.Response:
    await asyncio.sleep(delay)
    return await request


async def _active_ads_on_unbound_authorizations(db: AsyncEngine) -> int:
    """D16's invariant: no active ad on an authorization that is un-authorized (or being un-authorized)."""
    return int(
        await _scalar(
            db,
            "SELECT count(*) FROM ads JOIN authorizations a ON a.id = ads.authorization_id "
            "WHERE ads.state = 'active' AND a.state IN ('unauthorized', 'unauthorizing')",
        )
    )


# --- apps of the tests' own --------------------------------------------------------------------------------------


@pytest.fixture
async def started(settings: Settings, db: AsyncEngine, fast_retries: None) -> AsyncIterator[Callable[..., Any]]:
    """`await started(transport, settings=...)`: another app (a replica), on the test database, with that TikTok."""
    async with AsyncExitStack() as stack:

        async def start(transport: httpx.AsyncBaseTransport, app_settings: Settings = settings) -> Running:
            return await stack.enter_async_context(running(app_settings, transport))

        yield start


# --- linking ---------------------------------------------------------------------------------------------------


class TestLinkAd:
    """D6: an ad that uses an authorized post is tracked, one link per TikTok ad id for ever."""

    async def test_linked_with_every_field_and_counted_on_the_authorization(
        self, client: httpx.AsyncClient, advertiser: dict[str, Any]
    ) -> None:
        created = (await apply(client, ANA_30D)).json()
        ends_at = _later(created["auth_end_at"], -timedelta(days=1))
        response = await _link(client, created["id"], "1800000000000000001", ends_at=ends_at)
        assert response.status_code == 201, response.text
        link = response.json()
        assert set(link) == AD_FIELDS
        assert link["ad_id"] == "1800000000000000001"
        assert link["authorization_id"] == created["id"]
        assert link["advertiser_id"] == ADVERTISER_ID
        assert link["item_id"] == created["item_id"]
        assert (link["campaign_type"], link["only_show_as_ad"]) == ("STANDARD", True)
        assert datetime.fromisoformat(link["ends_at"]) == datetime.fromisoformat(ends_at)
        assert (link["state"], link["removed_at"], link["warnings"]) == ("active", None, [])
        assert link["created_at"] and link["updated_at"]
        assert await _active_ads(client, created["id"]) == 1

    async def test_smart_plus_campaign_is_recorded_and_no_end_is_allowed(
        self, client: httpx.AsyncClient, advertiser: dict[str, Any]
    ) -> None:
        """D15: each ad records which kind of campaign it is in."""
        authorization_id = await _authorized(client, ANA_30D)
        link = (await _link(client, authorization_id, "42", campaign_type="SMART_PLUS", only_show_as_ad=False)).json()
        assert (link["campaign_type"], link["only_show_as_ad"], link["ends_at"]) == ("SMART_PLUS", False, None)

    async def test_the_same_ad_again_is_the_same_link(
        self, client: httpx.AsyncClient, advertiser: dict[str, Any], db: AsyncEngine
    ) -> None:
        authorization_id = await _authorized(client, ANA_30D)
        first = await _link(client, authorization_id, "1800000000000000001")
        again = await _link(client, authorization_id, "1800000000000000001")
        assert (first.status_code, again.status_code) == (201, 200)
        assert again.json() == first.json()
        assert await count_rows(db, "ads") == 1
        assert (await _quota(client))["used"] == 1
        assert await _active_ads(client, authorization_id) == 1

    async def test_concurrent_links_of_one_ad_make_one_link(
        self, client: httpx.AsyncClient, advertiser: dict[str, Any], db: AsyncEngine
    ) -> None:
        authorization_id = await _authorized(client, ANA_30D)
        responses = await asyncio.gather(*(_link(client, authorization_id, "77") for _ in range(10)))
        assert sorted(r.status_code for r in responses) == [200] * 9 + [201], [r.text for r in responses]
        assert await count_rows(db, "ads") == 1
        assert (await _quota(client))["used"] == 1
        assert await _counter_drift(db) == []

    async def test_an_ad_linked_to_another_authorization_is_a_conflict(
        self, client: httpx.AsyncClient, advertiser: dict[str, Any], db: AsyncEngine
    ) -> None:
        """TikTok never gives an ad id to another ad: one ad, one post."""
        first = await _authorized(client, ANA_30D)
        second = await _authorized(client, BRUNO_30D)
        assert (await _link(client, first, "55")).status_code == 201
        problem = assert_problem(await _link(client, second, "55"), 409, "ad_linked_elsewhere")
        assert problem["authorization_id"] == first
        assert await count_rows(db, "ads") == 1
        assert (await _quota(client))["used"] == 1
        assert (await _active_ads(client, first), await _active_ads(client, second)) == (1, 0)

    async def test_an_ad_of_another_ad_account_is_a_conflict(
        self, client: httpx.AsyncClient, advertiser: dict[str, Any]
    ) -> None:
        await _register(client, OTHER_ADVERTISER_ID)
        ours = await _authorized(client, ANA_30D)
        theirs = await _authorized(client, ANA_30D, advertiser_id=OTHER_ADVERTISER_ID)
        assert (await _link(client, theirs, "56")).status_code == 201
        assert_problem(await _link(client, ours, "56"), 409, "ad_linked_elsewhere")
        assert (await _quota(client))["used"] == 0

    async def test_a_removed_ad_is_never_linked_again(
        self, client: httpx.AsyncClient, advertiser: dict[str, Any], db: AsyncEngine
    ) -> None:
        """TikTok never brings a deleted ad back: the same id again is a mistake, not a new ad."""
        authorization_id = await _authorized(client, ANA_30D)
        assert (await _link(client, authorization_id, "57")).status_code == 201
        assert (await _remove(client, authorization_id, "57")).status_code == 204
        assert_problem(await _link(client, authorization_id, "57"), 409, "ad_removed")
        assert (await _quota(client))["used"] == 0
        assert await _active_ads(client, authorization_id) == 0
        assert await count_rows(db, "ads") == 1

    async def test_unknown_authorization_is_404(self, client: httpx.AsyncClient, advertiser: dict[str, Any]) -> None:
        response = await _link(client, "00000000-0000-0000-0000-000000000000", "58")
        assert_problem(response, 404, "authorization_not_found")

    async def test_the_brands_own_post_takes_ads_counted_under_its_own_identity(
        self, client: httpx.AsyncClient, advertiser: dict[str, Any]
    ) -> None:
        """D1: an own post has no window, so no ad outlives it; a private one still warns (D5)."""
        own = {"identity_type": "TT_USER", "identity_id": OWN_IDENTITY[1]}
        public = (
            await client.post(f"/v1/advertisers/{ADVERTISER_ID}/own-posts", json={**own, "item_id": OWN_POST})
        ).json()
        private = (
            await client.post(f"/v1/advertisers/{ADVERTISER_ID}/own-posts", json={**own, "item_id": OWN_PRIVATE_POST})
        ).json()
        far = await _link(client, public["id"], "59", ends_at="2999-01-01T00:00:00+00:00")
        assert far.status_code == 201, far.text
        assert far.json()["warnings"] == []
        shown = await _link(client, private["id"], "60", only_show_as_ad=False)
        assert [w["reason"] for w in shown.json()["warnings"]] == ["post_will_become_public"]
        quota = await _quota(client)
        assert quota["used"] == 2
        assert [(i["identity_type"], i["identity_id"], i["used"]) for i in quota["identities"]] == [(*OWN_IDENTITY, 2)]

    @pytest.mark.parametrize(
        "ends_at",
        [
            "9999-12-31T23:59:59.999999+00:00",  # +infinity to asyncpg
            "0001-01-01T00:00:00+00:00",  # -infinity to asyncpg
            "9999-12-31T23:00:00-05:00",  # year 10000 in UTC
            "0001-01-01T00:00:00+14:00",  # year 0 in UTC
        ],
    )
    async def test_an_end_at_the_edge_of_the_calendar_is_linked_or_refused_never_a_500(
        self, client: httpx.AsyncClient, advertiser: dict[str, Any], db: AsyncEngine, ends_at: str
    ) -> None:
        authorization_id = await _authorized(client, ANA_30D)
        response = await _link(client, authorization_id, "69", ends_at=ends_at)
        if response.status_code == 201:
            assert datetime.fromisoformat(response.json()["ends_at"]) == datetime.fromisoformat(ends_at)
            assert (await client.get(f"/v1/authorizations/{authorization_id}/ads")).status_code == 200
        else:
            assert_problem(response, 422, "request_invalid")
            assert await count_rows(db, "ads") == 0


class TestLinkRefusedWhenTheAuthorizationCannotBeUsed:
    """D3, D6, D16: only an active authorization, in its window, takes a new ad; a refusal writes nothing."""

    async def test_expired_by_its_window(
        self, client: httpx.AsyncClient, advertiser: dict[str, Any], db: AsyncEngine
    ) -> None:
        created = (await apply(client, ANA_7D)).json()
        assert (await _link(client, created["id"], "61")).status_code == 201
        end = datetime.fromisoformat(created["auth_end_at"])
        with time_machine.travel(end - timedelta(seconds=1), tick=False):
            assert (await _link(client, created["id"], "62")).status_code == 201
        with time_machine.travel(end + timedelta(seconds=1), tick=False):
            problem = assert_problem(await _link(client, created["id"], "63"), 409, "authorization_not_active")
            assert problem["authorization_status"] == "expired"
            # The ad already linked is the same link still, and may be removed.
            assert (await _link(client, created["id"], "61")).status_code == 200
        assert await count_rows(db, "ads") == 2
        assert (await _quota(client))["used"] == 2
        assert await _identity_used(db, ANA) == 2
        assert await _active_ads(client, created["id"]) == 2

    async def test_unauthorized(self, client: httpx.AsyncClient, advertiser: dict[str, Any], db: AsyncEngine) -> None:
        authorization_id = await _authorized(client, ANA_30D)
        unauthorized = await _unauthorize(client, authorization_id)
        assert unauthorized.status_code == 200, unauthorized.text
        assert unauthorized.json()["status"] == "unauthorized"
        problem = assert_problem(await _link(client, authorization_id, "64"), 409, "authorization_not_active")
        assert problem["authorization_status"] == "unauthorized"
        assert await count_rows(db, "ads") == 0
        assert (await _quota(client))["used"] == 0
        assert await _identity_used(db, ANA) == 0

    async def test_pending_while_tiktoks_answer_is_unknown(self, started: Any, db: AsyncEngine) -> None:
        client = (await started(losing_first_authorize_answer(create_sandbox_app(slow_seconds=30.0)))).client
        await _register(client)
        assert_problem(await apply(client, ANA_30D), 504, "tiktok_timeout")
        listed = await client.get(f"/v1/advertisers/{ADVERTISER_ID}/authorizations", params={"status": "pending"})
        (pending,) = listed.json()["items"]
        problem = assert_problem(await _link(client, pending["id"], "65"), 409, "authorization_not_active")
        assert problem["authorization_status"] == "pending"
        assert await count_rows(db, "ads") == 0
        assert (await _quota(client))["used"] == 0
        assert await _identity_used(db, ANA) == 0
        assert await _active_ads(client, pending["id"]) == 0


class TestUnauthorizeUnderRunningAds:
    """D16: un-authorizing is refused while the ad account runs ads on the post; removed ads do not count."""

    async def test_refused_while_an_ad_is_active_then_allowed_once_it_is_removed(
        self, client: httpx.AsyncClient, advertiser: dict[str, Any]
    ) -> None:
        authorization_id = await _authorized(client, ANA_30D)
        assert (await _link(client, authorization_id, "66")).status_code == 201
        problem = assert_problem(await _unauthorize(client, authorization_id), 409, "ads_still_active")
        assert problem["ads"] == [{"ad_id": "66", "authorization_id": authorization_id}]
        assert (await client.get(f"/v1/authorizations/{authorization_id}")).json()["status"] == "active"

        assert (await _remove(client, authorization_id, "66")).status_code == 204
        assert (await _unauthorize(client, authorization_id)).json()["status"] == "unauthorized"
        # The removed ad stays in the history of the authorization it used.
        history = (await client.get(f"/v1/authorizations/{authorization_id}/ads", params={"state": "all"})).json()
        assert [(ad["ad_id"], ad["state"]) for ad in history["items"]] == [("66", "removed")]

    async def test_the_post_authorized_again_is_a_new_authorization_that_takes_ads(
        self, client: httpx.AsyncClient, advertiser: dict[str, Any]
    ) -> None:
        old = await _authorized(client, ANA_30D)
        assert (await _unauthorize(client, old)).status_code == 200
        reapplied = await apply(client, ANA_30D)
        assert reapplied.status_code == 201, reapplied.text
        new = reapplied.json()["id"]
        assert new != old
        assert (await _link(client, new, "67")).status_code == 201
        assert_problem(await _link(client, old, "68"), 409, "authorization_not_active")


# --- limits ----------------------------------------------------------------------------------------------------


class TestSparkAdsLimit:
    """D10: an ad account uses at most its limit of Spark Ads, exactly; the limit is the ad account's setting."""

    async def test_the_limit_is_set_at_registration_and_defaults_to_tiktoks(
        self, client: httpx.AsyncClient, db: AsyncEngine
    ) -> None:
        assert (await _register(client))["spark_ads_limit"] == 10_000
        registered = await _register(client, OTHER_ADVERTISER_ID, spark_ads_limit=2)
        assert registered["spark_ads_limit"] == 2
        read = (await client.get(f"/v1/advertisers/{OTHER_ADVERTISER_ID}")).json()
        assert read["spark_ads_limit"] == 2
        quota = await _quota(client, OTHER_ADVERTISER_ID)
        assert quota == {"advertiser_id": OTHER_ADVERTISER_ID, "limit": 2, "used": 0, "remaining": 2, "identities": []}

    async def test_patch_changes_the_limit_or_the_name_and_leaves_the_rest(
        self, client: httpx.AsyncClient, advertiser: dict[str, Any]
    ) -> None:
        path = f"/v1/advertisers/{ADVERTISER_ID}"
        patched = await client.patch(path, json={"spark_ads_limit": 5})
        assert patched.status_code == 200, patched.text
        assert (patched.json()["spark_ads_limit"], patched.json()["name"]) == (5, "Test brand")
        renamed = (await client.patch(path, json={"name": "Renamed"})).json()
        assert (renamed["spark_ads_limit"], renamed["name"]) == (5, "Renamed")
        unchanged = (await client.patch(path, json={"spark_ads_limit": None})).json()
        assert (unchanged["spark_ads_limit"], unchanged["name"]) == (5, "Renamed")
        assert (await client.get(path)).json()["spark_ads_limit"] == 5
        assert (await _quota(client))["limit"] == 5

    async def test_patch_of_an_unknown_ad_account_is_404(self, client: httpx.AsyncClient) -> None:
        response = await client.patch("/v1/advertisers/7999999999999999999", json={"spark_ads_limit": 1})
        assert_problem(response, 404, "advertiser_not_found")

    async def test_the_ad_over_the_limit_is_refused_and_a_removal_frees_a_slot(
        self, client: httpx.AsyncClient, db: AsyncEngine
    ) -> None:
        await _register(client, spark_ads_limit=2)
        first = await _authorized(client, ANA_30D)
        second = await _authorized(client, BRUNO_30D)
        assert (await _link(client, first, "71")).status_code == 201
        assert (await _link(client, second, "72")).status_code == 201
        problem = assert_problem(await _link(client, second, "73"), 409, "spark_ads_limit_reached")
        assert (problem["used"], problem["limit"]) == (2, 2)
        assert await count_rows(db, "ads") == 2
        assert await _identity_used(db, BRUNO) == 1  # the refused link took nothing
        assert (await _active_ads(client, second)) == 1
        # The same ad again is no new ad: answered even at the limit.
        assert (await _link(client, first, "71")).status_code == 200

        assert (await _remove(client, first, "71")).status_code == 204
        assert (await _quota(client))["remaining"] == 1
        assert (await _link(client, second, "73")).status_code == 201
        assert await _counter_drift(db) == []

    async def test_a_limit_lowered_below_what_is_used_holds_new_links_until_enough_are_removed(
        self, client: httpx.AsyncClient, db: AsyncEngine
    ) -> None:
        await _register(client, spark_ads_limit=3)
        authorization_id = await _authorized(client, ANA_30D)
        for ad_id in ("81", "82", "83"):
            assert (await _link(client, authorization_id, ad_id)).status_code == 201
        lowered = await client.patch(f"/v1/advertisers/{ADVERTISER_ID}", json={"spark_ads_limit": 1})
        assert lowered.status_code == 200, lowered.text
        quota = await _quota(client)
        assert (quota["limit"], quota["used"], quota["remaining"]) == (1, 3, 0)  # never negative

        problem = assert_problem(await _link(client, authorization_id, "84"), 409, "spark_ads_limit_reached")
        assert (problem["used"], problem["limit"]) == (3, 1)
        assert (await _remove(client, authorization_id, "81")).status_code == 204
        assert_problem(await _link(client, authorization_id, "84"), 409, "spark_ads_limit_reached")
        assert (await _remove(client, authorization_id, "82")).status_code == 204
        assert_problem(await _link(client, authorization_id, "84"), 409, "spark_ads_limit_reached")  # 1 of 1
        assert (await _remove(client, authorization_id, "83")).status_code == 204
        assert (await _link(client, authorization_id, "84")).status_code == 201
        quota = await _quota(client)
        assert (quota["limit"], quota["used"], quota["remaining"]) == (1, 1, 0)
        assert await _counter_drift(db) == []

    async def test_a_limit_of_zero_links_nothing(self, client: httpx.AsyncClient, db: AsyncEngine) -> None:
        await _register(client, spark_ads_limit=0)
        authorization_id = await _authorized(client, ANA_30D)
        problem = assert_problem(await _link(client, authorization_id, "85"), 409, "spark_ads_limit_reached")
        assert (problem["used"], problem["limit"]) == (0, 0)
        assert await count_rows(db, "ads") == 0
        assert await _identity_used(db, ANA) == 0


class TestIdentityAdsLimit:
    """TikTok caps the ads one identity (a creator) may be used in, across every ad account."""

    async def test_the_cap_counts_every_ad_account_and_a_refusal_gives_back_the_ad_accounts_slot(
        self, started: Any, settings: Settings, db: AsyncEngine
    ) -> None:
        capped = settings.model_copy(update={"identity_ads_limit": 2})
        client = (await started(httpx.ASGITransport(app=create_sandbox_app()), capped)).client
        await _register(client)
        await _register(client, OTHER_ADVERTISER_ID)
        ours = await _authorized(client, ANA_7D)
        ours_too = await _authorized(client, ANA_365D)
        theirs = await _authorized(client, ANA_30D, advertiser_id=OTHER_ADVERTISER_ID)
        bruno = await _authorized(client, BRUNO_30D)

        assert (await _link(client, ours, "91")).status_code == 201
        assert (await _link(client, theirs, "92")).status_code == 201
        for authorization_id in (ours_too, ours, theirs):  # the third ad of Ana's, anywhere
            problem = assert_problem(await _link(client, authorization_id, "93"), 409, "identity_ads_limit_reached")
            assert (problem["used"], problem["limit"]) == (2, 2)
            assert (problem["identity_type"], problem["identity_id"]) == ANA
        # Each ad account took a slot of its own for the refused link, and gave it back.
        assert ((await _quota(client))["used"], (await _quota(client, OTHER_ADVERTISER_ID))["used"]) == (1, 1)
        assert await count_rows(db, "ads") == 2
        assert await _active_ads(client, ours_too) == 0
        # Another creator's posts are not held up.
        assert (await _link(client, bruno, "94")).status_code == 201

        quota = await _quota(client)
        assert quota["identities"] == [
            {"identity_type": "AUTH_CODE", "identity_id": ANA[1], "limit": 2, "used": 2, "remaining": 0},
            {"identity_type": "AUTH_CODE", "identity_id": BRUNO[1], "limit": 2, "used": 1, "remaining": 1},
        ]
        assert (quota["used"], quota["remaining"]) == (2, 9_998)
        # A removal anywhere frees the identity for every ad account.
        assert (await _remove(client, theirs, "92")).status_code == 204
        assert (await _link(client, ours_too, "93")).status_code == 201
        assert await _counter_drift(db) == []

    async def test_the_quota_lists_each_identity_of_the_ad_accounts_posts_once(
        self, client: httpx.AsyncClient, advertiser: dict[str, Any], settings: Settings
    ) -> None:
        ana = [await _authorized(client, code) for code in (ANA_7D, ANA_30D)]
        await _authorized(client, BRUNO_60D)
        await _register(client, OTHER_ADVERTISER_ID)
        elsewhere = await _authorized(client, ANA_365D, advertiser_id=OTHER_ADVERTISER_ID)
        for index, authorization_id in enumerate([*ana, elsewhere]):
            assert (await _link(client, authorization_id, f"95{index}")).status_code == 201
        quota = await _quota(client)
        limit = settings.identity_ads_limit
        assert quota["identities"] == [
            {"identity_type": "AUTH_CODE", "identity_id": ANA[1], "limit": limit, "used": 3, "remaining": limit - 3},
            {"identity_type": "AUTH_CODE", "identity_id": BRUNO[1], "limit": limit, "used": 0, "remaining": limit},
        ]
        assert (quota["used"], quota["remaining"]) == (2, 10_000 - 2)
        assert (await _quota(client, OTHER_ADVERTISER_ID))["identities"] == [
            {"identity_type": "AUTH_CODE", "identity_id": ANA[1], "limit": limit, "used": 3, "remaining": limit - 3}
        ]

    async def test_quota_of_an_unknown_ad_account_is_404(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/v1/advertisers/7999999999999999999/spark-ads-quota")
        assert_problem(response, 404, "advertiser_not_found")


# --- warnings --------------------------------------------------------------------------------------------------


class TestLinkWarnings:
    """What a caller should know about a link; never a refusal."""

    async def test_an_ad_that_outlives_the_authorization_is_linked_with_a_warning(
        self, client: httpx.AsyncClient, advertiser: dict[str, Any]
    ) -> None:
        created = (await apply(client, ANA_30D)).json()
        late = await _link(client, created["id"], "101", ends_at=_later(created["auth_end_at"], timedelta(days=3)))
        assert late.status_code == 201, late.text
        assert [w["reason"] for w in late.json()["warnings"]] == ["ad_outlives_authorization"]
        assert all(w["detail"] for w in late.json()["warnings"])
        # The warning is part of the link: the same ad again says it again.
        assert (await _link(client, created["id"], "101")).json()["warnings"] == late.json()["warnings"]
        at_the_end = await _link(client, created["id"], "102", ends_at=created["auth_end_at"])
        assert at_the_end.json()["warnings"] == []
        # One second after the end, written in another time zone.
        end = datetime.fromisoformat(created["auth_end_at"]) + timedelta(seconds=1)
        in_another_zone = end.astimezone(timezone(timedelta(hours=-5))).isoformat()
        warned = (await _link(client, created["id"], "103", ends_at=in_another_zone)).json()["warnings"]
        assert [w["reason"] for w in warned] == ["ad_outlives_authorization"]
        assert (await _quota(client))["used"] == 3

    async def test_a_private_post_not_shown_only_as_an_ad_will_become_public(
        self, client: httpx.AsyncClient, advertiser: dict[str, Any]
    ) -> None:
        """D5: the post becomes public while the ad runs, unless the ad only shows as an ad."""
        authorization_id = await _authorized(client, ANA_PRIVATE)
        public = await _link(client, authorization_id, "104", only_show_as_ad=False)
        assert public.status_code == 201, public.text
        assert [w["reason"] for w in public.json()["warnings"]] == ["post_will_become_public"]
        dark = await _link(client, authorization_id, "105", only_show_as_ad=True)
        assert dark.status_code == 201, dark.text
        assert dark.json()["warnings"] == []

    async def test_a_public_post_warns_of_nothing(self, client: httpx.AsyncClient, advertiser: dict[str, Any]) -> None:
        authorization_id = await _authorized(client, ANA_30D)
        assert (await _link(client, authorization_id, "106", only_show_as_ad=False)).json()["warnings"] == []

    async def test_both_warnings_at_once(self, client: httpx.AsyncClient, advertiser: dict[str, Any]) -> None:
        created = (await apply(client, ANA_PRIVATE)).json()
        ends_at = _later(created["auth_end_at"], timedelta(days=1))
        link = (await _link(client, created["id"], "107", only_show_as_ad=False, ends_at=ends_at)).json()
        assert [w["reason"] for w in link["warnings"]] == ["ad_outlives_authorization", "post_will_become_public"]


# --- removing, and the history -----------------------------------------------------------------------------------


class TestRemoveAd:
    """Removing an ad records it as removed: it no longer counts, and it stays as history."""

    async def test_removed_is_204_and_frees_every_counter(
        self, client: httpx.AsyncClient, advertiser: dict[str, Any], db: AsyncEngine
    ) -> None:
        authorization_id = await _authorized(client, ANA_30D)
        assert (await _link(client, authorization_id, "111")).status_code == 201
        response = await _remove(client, authorization_id, "111")
        assert response.status_code == 204
        assert response.content == b""
        assert (await _quota(client))["used"] == 0
        assert await _active_ads(client, authorization_id) == 0
        assert await _identity_used(db, ANA) == 0
        assert await count_rows(db, "ads") == 1

    async def test_removing_twice_is_the_same_and_counts_once(
        self, client: httpx.AsyncClient, advertiser: dict[str, Any], db: AsyncEngine
    ) -> None:
        authorization_id = await _authorized(client, ANA_30D)
        for ad_id in ("112", "113"):
            assert (await _link(client, authorization_id, ad_id)).status_code == 201
        assert (await _remove(client, authorization_id, "112")).status_code == 204
        assert (await _remove(client, authorization_id, "112")).status_code == 204
        assert (await _quota(client))["used"] == 1
        assert await _active_ads(client, authorization_id) == 1
        assert await _identity_used(db, ANA) == 1

    async def test_unknown_ad_is_404(self, client: httpx.AsyncClient, advertiser: dict[str, Any]) -> None:
        authorization_id = await _authorized(client, ANA_30D)
        assert_problem(await _remove(client, authorization_id, "114"), 404, "ad_not_found")

    async def test_an_ad_of_another_authorization_is_404_and_stays_active(
        self, client: httpx.AsyncClient, advertiser: dict[str, Any]
    ) -> None:
        first = await _authorized(client, ANA_30D)
        second = await _authorized(client, BRUNO_30D)
        assert (await _link(client, first, "115")).status_code == 201
        assert_problem(await _remove(client, second, "115"), 404, "ad_not_found")
        assert (await _quota(client))["used"] == 1
        assert await _active_ads(client, first) == 1

    async def test_unknown_authorization_is_404(self, client: httpx.AsyncClient, advertiser: dict[str, Any]) -> None:
        response = await _remove(client, "00000000-0000-0000-0000-000000000000", "116")
        assert_problem(response, 404, "authorization_not_found")

    async def test_an_ad_of_an_expired_authorization_may_be_removed(
        self, client: httpx.AsyncClient, advertiser: dict[str, Any]
    ) -> None:
        created = (await apply(client, ANA_7D)).json()
        assert (await _link(client, created["id"], "117")).status_code == 201
        with time_machine.travel(_later(created["auth_end_at"], timedelta(days=1)), tick=False):
            assert (await _remove(client, created["id"], "117")).status_code == 204
        assert (await _quota(client))["used"] == 0


class TestListAds:
    async def test_active_by_default_and_removed_ones_too_with_state_all(
        self, client: httpx.AsyncClient, advertiser: dict[str, Any]
    ) -> None:
        authorization_id = await _authorized(client, ANA_30D)
        for ad_id in ("121", "122", "123"):
            assert (await _link(client, authorization_id, ad_id)).status_code == 201
        assert (await _remove(client, authorization_id, "122")).status_code == 204
        path = f"/v1/authorizations/{authorization_id}/ads"

        active = (await client.get(path)).json()
        assert [ad["ad_id"] for ad in active["items"]] == ["123", "121"]  # newest first
        assert active["next_cursor"] is None
        assert (await client.get(path, params={"state": "active"})).json() == active

        everything = (await client.get(path, params={"state": "all"})).json()["items"]
        assert [(ad["ad_id"], ad["state"]) for ad in everything] == [
            ("123", "active"),
            ("122", "removed"),
            ("121", "active"),
        ]
        removed = everything[1]
        assert removed["removed_at"] is not None
        assert removed["warnings"] == []
        assert all(ad["removed_at"] is None for ad in everything if ad["state"] == "active")
        assert all(set(ad) == AD_FIELDS for ad in everything)

    async def test_pages_follow_the_cursor_until_the_end(
        self, client: httpx.AsyncClient, advertiser: dict[str, Any]
    ) -> None:
        authorization_id = await _authorized(client, ANA_30D)
        other = await _authorized(client, BRUNO_30D)
        linked = [f"13{i}" for i in range(5)]
        for ad_id in linked:
            assert (await _link(client, authorization_id, ad_id)).status_code == 201
        assert (await _link(client, other, "139")).status_code == 201  # another authorization's: never listed
        assert (await _remove(client, authorization_id, "132")).status_code == 204

        for state, expected in (("active", ["134", "133", "131", "130"]), ("all", list(reversed(linked)))):
            seen: list[str] = []
            cursor = None
            while True:
                params: dict[str, Any] = {"limit": 1, "state": state}
                if cursor is not None:
                    params["cursor"] = cursor
                page = await client.get(f"/v1/authorizations/{authorization_id}/ads", params=params)
                assert page.status_code == 200, page.text
                assert len(page.json()["items"]) <= 1
                seen.extend(ad["ad_id"] for ad in page.json()["items"])
                cursor = page.json()["next_cursor"]
                if cursor is None:
                    break
            assert seen == expected

    @pytest.mark.parametrize("cursor", ["garbage", "e30", "WyJub3QgYSBkYXRlIiwgIngiXQ"])
    async def test_a_cursor_not_issued_by_the_service_is_422(
        self, client: httpx.AsyncClient, advertiser: dict[str, Any], cursor: str
    ) -> None:
        authorization_id = await _authorized(client, ANA_30D)
        response = await client.get(f"/v1/authorizations/{authorization_id}/ads", params={"cursor": cursor})
        assert_problem(response, 422, "cursor_invalid")

    @pytest.mark.parametrize("params", [{"state": "removed"}, {"limit": 0}, {"limit": 201}])
    async def test_bad_query_is_422(
        self, client: httpx.AsyncClient, advertiser: dict[str, Any], params: dict[str, Any]
    ) -> None:
        authorization_id = await _authorized(client, ANA_30D)
        response = await client.get(f"/v1/authorizations/{authorization_id}/ads", params=params)
        assert_problem(response, 422, "request_invalid")

    async def test_unknown_authorization_is_404(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/v1/authorizations/00000000-0000-0000-0000-000000000000/ads")
        assert_problem(response, 404, "authorization_not_found")


# --- bad input -------------------------------------------------------------------------------------------------


_VALID_LINK = {"ad_id": "1800000000000000001", "campaign_type": "STANDARD", "only_show_as_ad": True}


class TestBadInput:
    @pytest.mark.parametrize(
        "body",
        [
            {**_VALID_LINK, "ad_id": "18000a"},
            {**_VALID_LINK, "ad_id": "-1"},
            {**_VALID_LINK, "ad_id": " 1"},
            {**_VALID_LINK, "ad_id": ""},
            {**_VALID_LINK, "ad_id": "1" * 33},
            {**_VALID_LINK, "ad_id": 1800000000000000001},
            {**_VALID_LINK, "ends_at": "2030-01-01T00:00:00"},
            {**_VALID_LINK, "ends_at": "tomorrow"},
            {**_VALID_LINK, "campaign_type": "SMART"},
            {**_VALID_LINK, "campaign_type": "standard"},
            {**_VALID_LINK, "only_show_as_ad": "maybe"},
            {**_VALID_LINK, "identity_id": "7301000000000000001"},
            {"campaign_type": "STANDARD", "only_show_as_ad": True},
            {"ad_id": "1", "only_show_as_ad": True},
            {"ad_id": "1", "campaign_type": "STANDARD"},
            {},
        ],
    )
    async def test_malformed_link_is_422_and_writes_nothing(
        self, client: httpx.AsyncClient, advertiser: dict[str, Any], db: AsyncEngine, body: dict[str, Any]
    ) -> None:
        authorization_id = await _authorized(client, ANA_30D)
        response = await client.post(f"/v1/authorizations/{authorization_id}/ads", json=body)
        problem = assert_problem(response, 422, "request_invalid")
        assert problem["errors"]
        assert await count_rows(db, "ads") == 0

    async def test_an_ad_id_of_32_digits_is_accepted(
        self, client: httpx.AsyncClient, advertiser: dict[str, Any]
    ) -> None:
        authorization_id = await _authorized(client, ANA_30D)
        assert (await _link(client, authorization_id, "9" * 32)).status_code == 201

    @pytest.mark.parametrize("ad_id", ["abc", "1" * 33])
    async def test_a_removal_of_a_malformed_ad_id_is_422(
        self, client: httpx.AsyncClient, advertiser: dict[str, Any], ad_id: str
    ) -> None:
        authorization_id = await _authorized(client, ANA_30D)
        assert_problem(await _remove(client, authorization_id, ad_id), 422, "request_invalid")

    async def test_an_authorization_id_that_is_no_uuid_is_422(self, client: httpx.AsyncClient) -> None:
        assert_problem(await _link(client, "not-a-uuid", "1"), 422, "request_invalid")

    @pytest.mark.parametrize("limit", [-1, 1_000_001, 1.5, None])
    async def test_a_spark_ads_limit_out_of_range_is_422_at_registration(
        self, client: httpx.AsyncClient, db: AsyncEngine, limit: Any
    ) -> None:
        response = await client.post(
            "/v1/advertisers",
            json={"tiktok_advertiser_id": ADVERTISER_ID, "access_token": ADVERTISER_TOKEN, "spark_ads_limit": limit},
        )
        assert_problem(response, 422, "request_invalid")
        assert await count_rows(db, "advertisers") == 0

    @pytest.mark.parametrize(
        "body", [{"spark_ads_limit": -1}, {"spark_ads_limit": 1_000_001}, {"spark_ads_used": 0}, {"name": "a\nb"}]
    )
    async def test_a_bad_patch_is_422_and_changes_nothing(
        self, client: httpx.AsyncClient, advertiser: dict[str, Any], body: dict[str, Any]
    ) -> None:
        response = await client.patch(f"/v1/advertisers/{ADVERTISER_ID}", json=body)
        assert_problem(response, 422, "request_invalid")
        assert (await client.get(f"/v1/advertisers/{ADVERTISER_ID}")).json() == advertiser


# --- races, on real Postgres ----------------------------------------------------------------------------------


class TestRaces:
    """Concurrent requests, each on a connection of its own from the app's pool (or from two replicas' pools)."""

    ROUNDS = 3
    LINKS = 200
    LIMIT = 10
    CODES = (ANA_7D, ANA_30D, BRUNO_30D, BRUNO_60D)

    async def _race_to_the_limit(self, clients: list[httpx.AsyncClient], db: AsyncEngine, round_: int) -> None:
        advertiser_id = f"70000000000000{round_:05d}"
        await _register(clients[0], advertiser_id, spark_ads_limit=self.LIMIT)
        authorizations = [await _authorized(clients[0], code, advertiser_id) for code in self.CODES]
        responses = await asyncio.gather(
            *(
                _link(clients[i % len(clients)], authorizations[i % len(authorizations)], f"2{round_:03d}{i:05d}")
                for i in range(self.LINKS)
            )
        )
        statuses = [r.status_code for r in responses]
        assert statuses.count(201) == self.LIMIT, [r.text for r in responses if r.status_code not in (201, 409)]
        for refused in (r for r in responses if r.status_code != 201):
            problem = assert_problem(refused, 409, "spark_ads_limit_reached")
            assert problem["limit"] == self.LIMIT
        quota = await _quota(clients[0], advertiser_id)
        assert (quota["used"], quota["remaining"]) == (self.LIMIT, 0)
        assert await _active_ads_in_database(db, advertiser_id) == self.LIMIT
        assert sum([await _active_ads(clients[0], a) for a in authorizations]) == self.LIMIT
        assert await _counter_drift(db) == []

    async def test_concurrent_links_stop_exactly_at_the_limit(self, client: httpx.AsyncClient, db: AsyncEngine) -> None:
        """D10: 200 links at once of different ads, to one ad account with room for 10: exactly 10."""
        for round_ in range(self.ROUNDS):
            await self._race_to_the_limit([client], db, round_)

    async def test_two_replicas_stop_exactly_at_the_limit(self, started: Any, db: AsyncEngine) -> None:
        """Two processes on one database (two engines, two pools), one TikTok: the limit is kept in Postgres."""
        transport = httpx.ASGITransport(app=create_sandbox_app())
        replicas = [(await started(transport)).client, (await started(transport)).client]
        for round_ in range(self.ROUNDS):
            await self._race_to_the_limit(replicas, db, 100 + round_)

    async def _link_against_unauthorize(
        self, client: httpx.AsyncClient, db: AsyncEngine, ad_id: str, *, queued_first: str | None = None
    ) -> str:
        """One round: a fresh authorization of one post, then a link and an un-authorize of it at once. Which
        won, after checking that the loser was refused and that D16 holds in the database. With `queued_first`,
        the test holds the authorization's row lock until both wait for it, the one named first."""
        authorization_id = await _authorized(client, ANA_30D)
        requests = {
            "link": _link(client, authorization_id, ad_id),
            "unauthorize": _unauthorize(client, authorization_id),
        }
        if queued_first is None:
            # Either may start up to 10 ms before the other: the interleaving varies from round to round.
            head_start = random.Random(ad_id).uniform(-0.01, 0.01)
            linked, unauthorized = await asyncio.gather(
                _after(max(-head_start, 0), requests["link"]), _after(max(head_start, 0), requests["unauthorize"])
            )
        else:
            async with db.connect() as holder:
                await holder.execute(
                    text("SELECT 1 FROM authorizations WHERE id = :id FOR UPDATE"), {"id": authorization_id}
                )
                first = asyncio.create_task(requests[queued_first])
                await _until_waiting_on_locks(db, 1)
                second = asyncio.create_task(requests["unauthorize" if queued_first == "link" else "link"])
                await _until_waiting_on_locks(db, 2)
                await holder.rollback()
            done = {queued_first: await first}
            done["unauthorize" if queued_first == "link" else "link"] = await second
            linked, unauthorized = done["link"], done["unauthorize"]

        assert await _active_ads_on_unbound_authorizations(db) == 0
        if linked.status_code == 201:
            assert_problem(unauthorized, 409, "ads_still_active")
            assert await _active_ads(client, authorization_id) == 1
            # Clear the way for the next round: the ad goes, then the post.
            assert (await _remove(client, authorization_id, ad_id)).status_code == 204
            assert (await _unauthorize(client, authorization_id)).status_code == 200
            winner = "link"
        else:
            assert unauthorized.status_code == 200, unauthorized.text
            assert unauthorized.json()["status"] == "unauthorized"
            problem = assert_problem(linked, 409, "authorization_not_active")
            assert problem["authorization_status"] in ("unauthorizing", "unauthorized")
            winner = "unauthorize"
        assert await _active_ads_on_unbound_authorizations(db) == 0
        return winner

    async def test_a_link_racing_an_unauthorize_never_leaves_an_ad_on_an_unbound_post(
        self, client: httpx.AsyncClient, advertiser: dict[str, Any], db: AsyncEngine
    ) -> None:
        """D16: whichever commits first wins; the other is refused. Never an active ad on an un-authorized post."""
        for round_ in range(16):
            await self._link_against_unauthorize(client, db, f"3{round_:04d}")
        assert await _counter_drift(db) == []
        assert (await _quota(client))["used"] == 0

    @pytest.mark.parametrize("queued_first", ["link", "unauthorize"])
    async def test_both_queued_on_the_authorizations_lock_the_first_in_line_wins(
        self, client: httpx.AsyncClient, advertiser: dict[str, Any], db: AsyncEngine, queued_first: str
    ) -> None:
        """Both requests wait on the same row lock at once; each order is decided one way, the loser refused."""
        for round_ in range(4):
            winner = await self._link_against_unauthorize(client, db, f"31{round_:03d}", queued_first=queued_first)
            assert winner == queued_first
        assert await _counter_drift(db) == []

    async def test_a_link_while_tiktok_unbinds_is_refused(self, started: Any, db: AsyncEngine) -> None:
        """Between the decision to un-authorize and TikTok's answer, the post takes no new ad."""
        gate = GatedTransport(httpx.ASGITransport(app=create_sandbox_app()), "unbind", held=False)
        client = (await started(gate)).client
        await _register(client)
        authorization_id = await _authorized(client, ANA_30D)
        gate.hold()
        unbinding = asyncio.create_task(_unauthorize(client, authorization_id))
        await gate.wait_for(1)
        problem = assert_problem(await _link(client, authorization_id, "32"), 409, "authorization_not_active")
        assert problem["authorization_status"] == "unauthorizing"
        gate.open()
        assert (await unbinding).json()["status"] == "unauthorized"
        assert await count_rows(db, "ads") == 0
        assert await _counter_drift(db) == []

    async def test_two_unauthorizes_queued_on_the_lock_make_one_unbind_call(
        self, started: Any, db: AsyncEngine
    ) -> None:
        transport = CountingTransport(httpx.ASGITransport(app=create_sandbox_app()))
        client = (await started(transport)).client
        await _register(client)
        authorization_id = await _authorized(client, ANA_30D)
        async with db.connect() as holder:
            await holder.execute(
                text("SELECT 1 FROM authorizations WHERE id = :id FOR UPDATE"), {"id": authorization_id}
            )
            first = asyncio.create_task(_unauthorize(client, authorization_id))
            await _until_waiting_on_locks(db, 1)
            second = asyncio.create_task(_unauthorize(client, authorization_id))
            await _until_waiting_on_locks(db, 2)
            await holder.rollback()
        responses = [await first, await second]
        assert responses[0].status_code == 200, responses[0].text
        # The second finds the post claimed (409, retryable) or already un-authorized (200): never a second unbind.
        if responses[1].status_code != 200:
            assert_problem(responses[1], 409, "authorization_in_progress")
        assert transport.count("unbind") == 1

    async def test_concurrent_links_and_removals_keep_every_counter_exact(
        self, client: httpx.AsyncClient, db: AsyncEngine
    ) -> None:
        """Counters never go negative nor drift from the ads they count, whatever runs at once."""
        await _register(client, spark_ads_limit=4)
        await _register(client, OTHER_ADVERTISER_ID, spark_ads_limit=3)
        authorizations = [
            await _authorized(client, ANA_7D),
            await _authorized(client, BRUNO_30D),
            await _authorized(client, BRUNO_CAROUSEL),
            await _authorized(client, ANA_30D, advertiser_id=OTHER_ADVERTISER_ID),
            await _authorized(client, BRUNO_60D, advertiser_id=OTHER_ADVERTISER_ID),
        ]
        allowed = {
            "link": {(200, None), (201, None)}
            | {(409, reason) for reason in ("spark_ads_limit_reached", "ad_linked_elsewhere", "ad_removed")},
            "remove": {(204, None), (404, "ad_not_found")},
        }
        for round_ in range(6):
            chance = random.Random(round_)  # reproducible: a failure names its round
            pool = [f"4{round_:02d}{i:02d}" for i in range(8)]
            operations = [
                (chance.choice(["link", "link", "remove"]), chance.choice(authorizations), chance.choice(pool))
                for _ in range(60)
            ]
            responses = await asyncio.gather(
                *(
                    (_link if kind == "link" else _remove)(client, authorization_id, ad_id)
                    for kind, authorization_id, ad_id in operations
                )
            )
            for (kind, _, _), response in zip(operations, responses, strict=True):
                reason = response.json()["reason"] if response.status_code >= 400 else None
                assert (response.status_code, reason) in allowed[kind], f"round {round_}: {response.text}"
            assert await _counter_drift(db) == [], f"round {round_}"
            for advertiser_id in (ADVERTISER_ID, OTHER_ADVERTISER_ID):
                quota = await _quota(client, advertiser_id)
                assert 0 <= quota["used"] == await _active_ads_in_database(db, advertiser_id) <= quota["limit"]

            # Everything still active goes, concurrently too: every counter back to zero.
            async with db.connect() as connection:
                active = (
                    await connection.execute(
                        text("SELECT authorization_id::text, ad_id FROM ads WHERE state = 'active'")
                    )
                ).all()
            removals = await asyncio.gather(
                *(_remove(client, a, ad) for a, ad in active for _ in range(2))  # each twice at once
            )
            assert {r.status_code for r in removals} <= {204}
            assert await _counter_drift(db) == [], f"round {round_}"
            assert await _scalar(db, "SELECT coalesce(sum(spark_ads_used), 0) FROM advertisers") == 0
            assert await _scalar(db, "SELECT coalesce(sum(ads_used), 0) FROM identity_usage") == 0

    async def test_a_limit_lowered_while_links_run_keeps_every_counter_exact_and_holds_after(
        self, client: httpx.AsyncClient, db: AsyncEngine
    ) -> None:
        """The limit and the links are decided one after the other: no deadlock, no 500, counters exact."""
        await _register(client, spark_ads_limit=100)
        authorizations = [await _authorized(client, code) for code in self.CODES]
        links = [_link(client, authorizations[i % 4], f"5{i:04d}") for i in range(60)]
        lowered = client.patch(f"/v1/advertisers/{ADVERTISER_ID}", json={"spark_ads_limit": 5})
        responses = await asyncio.gather(*links[:30], lowered, *links[30:])
        assert {r.status_code for r in responses} <= {200, 201, 409}, [
            r.text for r in responses if r.status_code >= 500
        ]
        assert await _counter_drift(db) == []
        quota = await _quota(client)
        assert (quota["limit"], quota["used"]) == (5, [r.status_code for r in responses].count(201))
        assert_problem(await _link(client, authorizations[0], "59999"), 409, "spark_ads_limit_reached")
