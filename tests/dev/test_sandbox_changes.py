"""The sandbox's `ad/get/` and its control endpoints (`/sandbox/...`): ads made in Ads Manager, and posts changed on
TikTok after they were authorized (revoked, banned, extended, re-captioned), all over HTTP, as a test or a developer
with curl would. TikTok's endpoints are driven raw (to see the protocol) or through the real client."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from app.tiktok.client import TikTokClient
from app.tiktok.errors import TikTokRefusal, TikTokRequestRejected
from app.tiktok.models import PostInfo, PostStatus
from dev.sandbox.app import (
    AD_FIELDS,
    AD_GET_PATH,
    IDENTITY_VIDEO_INFO_PATH,
    Sandbox,
    SandboxNotFound,
    create_sandbox_app,
)
from dev.sandbox.seed import (
    DUET_ORIGINAL_ITEM_ID,
    OWN_TT_USER_IDENTITY_ID,
    OWN_VIDEO_ITEM_ID,
    VIDEO_30D_ITEM_ID,
    VIDEO_60D_ITEM_ID,
    bulk_item_id,
    demo_code,
    own_post,
)
from tests.tiktok.conftest import ACCESS_TOKEN, ADVERTISER_ID, OTHER_ADVERTISER_ID, SANDBOX_EPOCH, Clock

HOST = "http://127.0.0.1:8001"
CONTROL = f"{HOST}/sandbox"
TT_VIDEO = f"{HOST}/open_api/v1.3/tt_video"
ANA = "7301000000000000001"  # the creator of VIDEO_30D_ITEM_ID
BRUNO = "7301000000000000002"  # the creator of VIDEO_60D_ITEM_ID
TIME = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d")
HEADERS = {"Access-Token": ACCESS_TOKEN}


def sandbox_of(app: Starlette) -> Sandbox:
    sandbox = app.state.sandbox
    assert isinstance(sandbox, Sandbox)
    return sandbox


def tiktok_time(delta: timedelta = timedelta()) -> str:
    return (SANDBOX_EPOCH + delta).strftime("%Y-%m-%d %H:%M:%S")


async def control(http: httpx.AsyncClient, path: str, body: Any = None) -> httpx.Response:
    if body is None:
        return await http.post(f"{CONTROL}{path}")
    return await http.post(f"{CONTROL}{path}", json=body)


async def make_ad(
    http: httpx.AsyncClient, item_id: str | None, *, advertiser: str = ADVERTISER_ID, **extra: Any
) -> dict[str, Any]:
    response = await control(http, f"/advertisers/{advertiser}/ads", {"tiktok_item_id": item_id, **extra})
    assert response.status_code == 201, response.text
    ad: dict[str, Any] = response.json()
    return ad


async def ad_get(
    http: httpx.AsyncClient, *, advertiser: str = ADVERTISER_ID, headers: dict[str, str] = HEADERS, **params: Any
) -> dict[str, Any]:
    """ad/get's envelope; list and dict parameters are JSON-encoded, as TikTok wants."""
    query = {"advertiser_id": advertiser}
    for name, value in params.items():
        query[name] = json.dumps(value) if isinstance(value, (list, dict)) else str(value)
    response = await http.get(f"{HOST}{AD_GET_PATH}", params=query, headers=headers)
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    assert set(body) == {"code", "message", "request_id", "data"}
    return body


async def ad_ids(http: httpx.AsyncClient, **params: Any) -> list[str]:
    body = await ad_get(http, page_size=1000, **params)
    assert body["code"] == 0, body
    return [entry["ad_id"] for entry in body["data"]["list"]]


async def authorize(tiktok: TikTokClient, code: str, original: str | None = None, **options: Any) -> None:
    options.setdefault("advertiser_id", ADVERTISER_ID)
    await tiktok.authorize(access_token=ACCESS_TOKEN, auth_code=code, original_post_auth_code=original, **options)


async def info(tiktok: TikTokClient, code: str) -> PostInfo:
    return await tiktok.post_info(advertiser_id=ADVERTISER_ID, access_token=ACCESS_TOKEN, auth_code=code)


async def listed(
    tiktok: TikTokClient, *, advertiser: str = ADVERTISER_ID, keyword: str | None = None
) -> list[PostInfo]:
    page = await tiktok.list_posts(advertiser_id=advertiser, access_token=ACCESS_TOKEN, keyword=keyword, page_size=50)
    return page.posts


async def creator_video_info(tiktok: TikTokClient, item_id: str, identity_id: str) -> PostInfo:
    return await tiktok.own_post_info(
        advertiser_id=ADVERTISER_ID,
        access_token=ACCESS_TOKEN,
        identity_type="AUTH_CODE",
        identity_id=identity_id,
        item_id=item_id,
    )


async def own_video_info(tiktok: TikTokClient, item_id: str = OWN_VIDEO_ITEM_ID) -> PostInfo:
    return await tiktok.own_post_info(
        advertiser_id=ADVERTISER_ID,
        access_token=ACCESS_TOKEN,
        identity_type="TT_USER",
        identity_id=OWN_TT_USER_IDENTITY_ID,
        item_id=item_id,
    )


class TestAdGetProtocol:
    """`ad/get/` speaks TikTok's protocol: the envelope, HTTP 200 with a non-zero code for errors."""

    async def test_an_account_without_ads_answers_an_empty_page(self, sandbox_http: httpx.AsyncClient) -> None:
        body = await ad_get(sandbox_http)
        assert body["code"] == 0
        assert body["data"] == {
            "list": [],
            "page_info": {"page": 1, "page_size": 10, "total_number": 0, "total_page": 0},
        }

    async def test_without_fields_every_field_comes_ids_as_strings_times_as_tiktoks_utc(
        self, sandbox_http: httpx.AsyncClient, clock: Clock
    ) -> None:
        clock.advance(timedelta(minutes=3, microseconds=400_000))
        made = await make_ad(sandbox_http, VIDEO_30D_ITEM_ID)
        (entry,) = (await ad_get(sandbox_http))["data"]["list"]
        assert entry == made
        assert list(entry) == list(AD_FIELDS)
        for name in ("advertiser_id", "campaign_id", "adgroup_id", "ad_id", "tiktok_item_id", "identity_id"):
            assert isinstance(entry[name], str) and entry[name].isdigit(), name
        assert entry["advertiser_id"] == ADVERTISER_ID
        assert (entry["tiktok_item_id"], entry["identity_type"], entry["identity_id"]) == (
            VIDEO_30D_ITEM_ID,
            "AUTH_CODE",
            ANA,
        )
        assert entry["create_time"] == entry["modify_time"] == tiktok_time(timedelta(minutes=3))
        assert (entry["operation_status"], entry["secondary_status"]) == ("ENABLE", "AD_STATUS_DELIVERY_OK")

    async def test_fields_picks_the_fields_of_each_entry_in_the_order_asked(
        self, sandbox_http: httpx.AsyncClient
    ) -> None:
        made = await make_ad(sandbox_http, VIDEO_30D_ITEM_ID)
        body = await ad_get(sandbox_http, fields=["tiktok_item_id", "ad_id", "modify_time"])
        (entry,) = body["data"]["list"]
        assert list(entry) == ["tiktok_item_id", "ad_id", "modify_time"]
        assert entry["ad_id"] == made["ad_id"]

    @pytest.mark.parametrize(
        ("name", "value"),
        [
            pytest.param("fields", '["ad_id"', id="fields-not-json"),
            pytest.param("fields", '"ad_id"', id="fields-not-a-list"),
            pytest.param("fields", '["ad_id", 1]', id="fields-not-names"),
            pytest.param("fields", '["ad_id", "budget"]', id="fields-unknown"),
            pytest.param("filtering", "primary_status=STATUS_ALL", id="filtering-not-json"),
            pytest.param("filtering", '["STATUS_ALL"]', id="filtering-not-an-object"),
            pytest.param("filtering", '{"primary_status": "STATUS_DELIVERY_OK"}', id="primary-status-unknown"),
            pytest.param("filtering", '{"modified_after": "2025-05-20T11:40:50Z"}', id="modified-after-iso"),
            pytest.param("filtering", '{"modified_after": "2025-05-20"}', id="modified-after-a-date"),
            pytest.param("filtering", '{"modified_after": 1747741250}', id="modified-after-a-number"),
            pytest.param("filtering", '{"ad_ids": "1800000000000000001"}', id="ad-ids-not-a-list"),
            pytest.param("filtering", '{"ad_ids": ["18000000000000000x1"]}', id="ad-ids-not-digits"),
            pytest.param("filtering", json.dumps({"ad_ids": [str(n) for n in range(101)]}), id="101-ad-ids"),
            pytest.param("page", "0", id="page-0"),
            pytest.param("page", "one", id="page-not-a-number"),
            pytest.param("page_size", "0", id="page-size-0"),
            pytest.param("page_size", "1001", id="page-size-1001"),
        ],
    )
    async def test_bad_parameters_are_40002(self, sandbox_http: httpx.AsyncClient, name: str, value: str) -> None:
        params: dict[str, Any] = {name: value}
        body = await ad_get(sandbox_http, **params)
        assert body["code"] == 40002
        assert name.split("_")[0] in body["message"]

    async def test_100_ad_ids_and_a_page_of_1000_are_accepted(self, sandbox_http: httpx.AsyncClient) -> None:
        ids = [str(1_800_000_000_000_000_000 + n) for n in range(100)]
        body = await ad_get(sandbox_http, filtering={"ad_ids": ids}, page_size=1000)
        assert body["code"] == 0

    @pytest.mark.parametrize(
        ("headers", "advertiser", "code"),
        [
            pytest.param({}, ADVERTISER_ID, 40104, id="no-token"),
            pytest.param({"Access-Token": "expired-token"}, ADVERTISER_ID, 40102, id="expired-token"),
            pytest.param({"Access-Token": "invalid-token"}, ADVERTISER_ID, 40105, id="invalid-token"),
            pytest.param(HEADERS, "act_123", 40002, id="advertiser-not-digits"),
            pytest.param(HEADERS, "4030000000000000000", 40300, id="advertiser-does-not-exist"),
        ],
    )
    async def test_token_and_advertiser_are_checked_like_everywhere(
        self, sandbox_http: httpx.AsyncClient, headers: dict[str, str], advertiser: str, code: int
    ) -> None:
        body = await ad_get(sandbox_http, advertiser=advertiser, headers=headers)
        assert body["code"] == code

    async def test_a_missing_advertiser_is_40002(self, sandbox_http: httpx.AsyncClient) -> None:
        response = await sandbox_http.get(f"{HOST}{AD_GET_PATH}", headers=HEADERS)
        assert response.json()["code"] == 40002

    async def test_without_its_trailing_slash_the_path_is_a_plain_404(self, sandbox_http: httpx.AsyncClient) -> None:
        response = await sandbox_http.get(f"{HOST}{AD_GET_PATH.rstrip('/')}", headers=HEADERS)
        assert response.status_code == 404

    async def test_pages(self, sandbox_http: httpx.AsyncClient, sandbox_app: Starlette) -> None:
        sandbox = sandbox_of(sandbox_app)
        made = [sandbox.create_ad(ADVERTISER_ID, bulk_item_id(n)) for n in range(25)]
        pages = [(await ad_get(sandbox_http, page=n))["data"] for n in (1, 2, 3, 4)]
        assert [[entry["ad_id"] for entry in page["list"]] for page in pages] == [made[:10], made[10:20], made[20:], []]
        assert [page["page_info"] for page in pages] == [
            {"page": n, "page_size": 10, "total_number": 25, "total_page": 3} for n in (1, 2, 3, 4)
        ]

    async def test_each_ad_account_sees_its_own_ads(self, sandbox_http: httpx.AsyncClient) -> None:
        mine = await make_ad(sandbox_http, VIDEO_30D_ITEM_ID)
        theirs = await make_ad(sandbox_http, VIDEO_30D_ITEM_ID, advertiser=OTHER_ADVERTISER_ID)
        assert await ad_ids(sandbox_http) == [mine["ad_id"]]
        assert await ad_ids(sandbox_http, advertiser=OTHER_ADVERTISER_ID) == [theirs["ad_id"]]
        assert mine["campaign_id"] != theirs["campaign_id"]


class TestAdGetFiltering:
    async def test_primary_status(self, sandbox_http: httpx.AsyncClient) -> None:
        kept = (await make_ad(sandbox_http, VIDEO_30D_ITEM_ID))["ad_id"]
        gone = (await make_ad(sandbox_http, VIDEO_60D_ITEM_ID))["ad_id"]
        assert (await control(sandbox_http, f"/advertisers/{ADVERTISER_ID}/ads/{gone}/delete")).status_code == 200
        assert await ad_ids(sandbox_http) == [kept]
        assert await ad_ids(sandbox_http, filtering={"primary_status": "STATUS_NOT_DELETE"}) == [kept]
        assert await ad_ids(sandbox_http, filtering={"primary_status": "STATUS_DELETE"}) == [gone]
        assert await ad_ids(sandbox_http, filtering={"primary_status": "STATUS_ALL"}) == [kept, gone]

    async def test_ad_ids_as_strings_or_numbers(self, sandbox_http: httpx.AsyncClient) -> None:
        made = [(await make_ad(sandbox_http, bulk_item_id(n)))["ad_id"] for n in range(4)]
        assert await ad_ids(sandbox_http, filtering={"ad_ids": [made[2], int(made[0])]}) == [made[0], made[2]]
        assert await ad_ids(sandbox_http, filtering={"ad_ids": ["1899999999999999999"]}) == []
        assert await ad_ids(sandbox_http, filtering={"ad_ids": []}) == made  # an empty list filters nothing

    async def test_campaign_and_adgroup_ids(self, sandbox_http: httpx.AsyncClient) -> None:
        made = await make_ad(sandbox_http, VIDEO_30D_ITEM_ID)
        assert await ad_ids(sandbox_http, filtering={"campaign_ids": [made["campaign_id"]]}) == [made["ad_id"]]
        assert await ad_ids(sandbox_http, filtering={"adgroup_ids": [made["adgroup_id"]]}) == [made["ad_id"]]
        assert await ad_ids(sandbox_http, filtering={"adgroup_ids": [made["campaign_id"]]}) == []

    async def test_modified_after_is_exclusive_at_whole_seconds(
        self, sandbox_http: httpx.AsyncClient, clock: Clock
    ) -> None:
        """The harsh reading of an unconfirmed point: an ad modified in the very second named is left out."""
        clock.advance(timedelta(microseconds=999_000))
        first = (await make_ad(sandbox_http, VIDEO_30D_ITEM_ID))["ad_id"]
        clock.advance(timedelta(seconds=1))
        second = (await make_ad(sandbox_http, VIDEO_60D_ITEM_ID))["ad_id"]

        async def since(delta: timedelta) -> list[str]:
            return await ad_ids(sandbox_http, filtering={"modified_after": tiktok_time(delta)})

        assert await since(timedelta(seconds=-1)) == [first, second]
        assert await since(timedelta()) == [second]
        assert await since(timedelta(seconds=1)) == []

    async def test_modified_after_sees_a_deletion(self, sandbox_http: httpx.AsyncClient, clock: Clock) -> None:
        ad_id = (await make_ad(sandbox_http, VIDEO_30D_ITEM_ID))["ad_id"]
        clock.advance(timedelta(hours=1))
        await control(sandbox_http, f"/advertisers/{ADVERTISER_ID}/ads/{ad_id}/delete")
        filtering = {"primary_status": "STATUS_ALL", "modified_after": tiktok_time(timedelta(minutes=30))}
        assert await ad_ids(sandbox_http, filtering=filtering) == [ad_id]


class TestCreateAd:
    """`POST /sandbox/advertisers/{advertiser_id}/ads`: an ad made in Ads Manager, outside the service."""

    async def test_answers_201_with_the_ad_as_ad_get_describes_it(self, sandbox_http: httpx.AsyncClient) -> None:
        response = await control(
            sandbox_http, f"/advertisers/{ADVERTISER_ID}/ads", {"tiktok_item_id": VIDEO_60D_ITEM_ID}
        )
        assert response.status_code == 201
        assert response.headers["content-type"] == "application/json"
        ad = response.json()
        assert set(ad) == set(AD_FIELDS)
        assert len(ad["ad_id"]) == 19 and ad["ad_id"].isdigit()
        assert (ad["identity_type"], ad["identity_id"]) == ("AUTH_CODE", BRUNO)  # the post's creator
        assert await ad_ids(sandbox_http) == [ad["ad_id"]]

    async def test_ad_ids_are_unique_across_ad_accounts(self, sandbox_http: httpx.AsyncClient) -> None:
        made = [
            (await make_ad(sandbox_http, VIDEO_30D_ITEM_ID, advertiser=advertiser))["ad_id"]
            for advertiser in (ADVERTISER_ID, OTHER_ADVERTISER_ID) * 5
        ]
        assert len(set(made)) == 10
        assert all(len(ad_id) == 19 and ad_id.isdigit() for ad_id in made)

    async def test_an_ad_id_an_identity_and_a_numeric_item_id_may_be_given(
        self, sandbox_http: httpx.AsyncClient
    ) -> None:
        ad = await make_ad(
            sandbox_http,
            int(VIDEO_30D_ITEM_ID),  # type: ignore[arg-type]
            ad_id="1855555555555555555",
            identity_type="BC_AUTH_TT",
            identity_id="7302000000000000002",
        )
        assert (ad["ad_id"], ad["tiktok_item_id"], ad["identity_type"], ad["identity_id"]) == (
            "1855555555555555555",
            VIDEO_30D_ITEM_ID,
            "BC_AUTH_TT",
            "7302000000000000002",
        )

    async def test_an_own_posts_ad_defaults_to_the_accounts_identity(self, sandbox_http: httpx.AsyncClient) -> None:
        ad = await make_ad(sandbox_http, OWN_VIDEO_ITEM_ID, identity_type="TT_USER")
        assert (ad["identity_type"], ad["identity_id"]) == ("TT_USER", OWN_TT_USER_IDENTITY_ID)

    async def test_an_ad_without_a_post_is_not_a_spark_ad(self, sandbox_http: httpx.AsyncClient) -> None:
        ad = await make_ad(sandbox_http, None, identity_type="CUSTOMIZED_USER", identity_id="7304000000000000001")
        assert (ad["tiktok_item_id"], ad["identity_type"]) == (None, "CUSTOMIZED_USER")
        assert await ad_ids(sandbox_http) == [ad["ad_id"]]

    async def test_an_ad_id_already_taken_is_409(self, sandbox_http: httpx.AsyncClient) -> None:
        taken = (await make_ad(sandbox_http, VIDEO_30D_ITEM_ID))["ad_id"]
        response = await control(
            sandbox_http,
            f"/advertisers/{OTHER_ADVERTISER_ID}/ads",
            {"tiktok_item_id": VIDEO_30D_ITEM_ID, "ad_id": taken},
        )
        assert response.status_code == 409
        assert response.json()["error"] == "conflict"

    async def test_an_unknown_post_is_404(self, sandbox_http: httpx.AsyncClient) -> None:
        response = await control(
            sandbox_http, f"/advertisers/{ADVERTISER_ID}/ads", {"tiktok_item_id": "7399999999999999999"}
        )
        assert response.status_code == 404
        assert response.json()["error"] == "not_found"
        assert await ad_ids(sandbox_http) == []

    @pytest.mark.parametrize(
        ("advertiser", "body"),
        [
            pytest.param("act_123", {"tiktok_item_id": VIDEO_30D_ITEM_ID}, id="advertiser-not-digits"),
            pytest.param(ADVERTISER_ID, {}, id="no-item-id"),
            pytest.param(ADVERTISER_ID, {"tiktok_item_id": "video-30d"}, id="item-id-not-digits"),
            pytest.param(ADVERTISER_ID, {"tiktok_item_id": VIDEO_30D_ITEM_ID, "ad_id": "ad-1"}, id="ad-id-not-digits"),
            pytest.param(ADVERTISER_ID, {"tiktok_item_id": VIDEO_30D_ITEM_ID, "identity_type": ""}, id="empty-type"),
            pytest.param(ADVERTISER_ID, {"tiktok_item_id": VIDEO_30D_ITEM_ID, "budget": 10}, id="unknown-field"),
            pytest.param(ADVERTISER_ID, [VIDEO_30D_ITEM_ID], id="not-an-object"),
        ],
    )
    async def test_a_bad_request_is_400(self, sandbox_http: httpx.AsyncClient, advertiser: str, body: Any) -> None:
        response = await control(sandbox_http, f"/advertisers/{advertiser}/ads", body)
        assert response.status_code == 400
        assert response.json()["error"] == "bad_request"
        assert await ad_ids(sandbox_http) == []

    async def test_a_body_that_is_not_json_is_400(self, sandbox_http: httpx.AsyncClient) -> None:
        response = await sandbox_http.post(f"{CONTROL}/advertisers/{ADVERTISER_ID}/ads", content=b"tiktok_item_id=1")
        assert response.status_code == 400

    async def test_the_python_method_returns_the_ad_id(self, sandbox_app: Starlette) -> None:
        sandbox = sandbox_of(sandbox_app)
        ad_id = sandbox.create_ad(ADVERTISER_ID, VIDEO_30D_ITEM_ID)
        assert len(ad_id) == 19
        assert sandbox.ads[ADVERTISER_ID][ad_id].identity_id == ANA
        with pytest.raises(SandboxNotFound):
            sandbox.create_ad(ADVERTISER_ID, "7399999999999999999")
        with pytest.raises(ValueError, match="advertiser_id"):
            sandbox.create_ad("act_1", VIDEO_30D_ITEM_ID)

    async def test_control_calls_are_not_calls_tiktok_sees(
        self, sandbox_http: httpx.AsyncClient, sandbox_app: Starlette
    ) -> None:
        await make_ad(sandbox_http, VIDEO_30D_ITEM_ID)
        await control(sandbox_http, f"/posts/{VIDEO_30D_ITEM_ID}/caption", {"text": "new"})
        assert sandbox_of(sandbox_app).calls == []
        await ad_get(sandbox_http)
        assert [path for _, path in sandbox_of(sandbox_app).calls] == [AD_GET_PATH]


class TestDeleteAd:
    """`POST /sandbox/advertisers/{advertiser_id}/ads/{ad_id}/delete`."""

    async def test_the_ad_is_deleted_and_modified_now(self, sandbox_http: httpx.AsyncClient, clock: Clock) -> None:
        made = await make_ad(sandbox_http, VIDEO_30D_ITEM_ID)
        clock.advance(timedelta(days=2))
        response = await control(sandbox_http, f"/advertisers/{ADVERTISER_ID}/ads/{made['ad_id']}/delete")
        assert response.status_code == 200
        deleted = response.json()
        assert (deleted["secondary_status"], deleted["operation_status"]) == ("AD_STATUS_DELETE", "DISABLE")
        assert (deleted["create_time"], deleted["modify_time"]) == (tiktok_time(), tiktok_time(timedelta(days=2)))
        (entry,) = (await ad_get(sandbox_http, filtering={"primary_status": "STATUS_DELETE"}))["data"]["list"]
        assert entry == deleted

    async def test_deleting_again_changes_nothing(self, sandbox_http: httpx.AsyncClient, clock: Clock) -> None:
        ad_id = (await make_ad(sandbox_http, VIDEO_30D_ITEM_ID))["ad_id"]
        first = await control(sandbox_http, f"/advertisers/{ADVERTISER_ID}/ads/{ad_id}/delete")
        clock.advance(timedelta(days=1))
        again = await control(sandbox_http, f"/advertisers/{ADVERTISER_ID}/ads/{ad_id}/delete")
        assert again.status_code == 200
        assert again.json() == first.json()

    @pytest.mark.parametrize("advertiser", [OTHER_ADVERTISER_ID, "7000000000000000009"])
    async def test_an_ad_not_in_that_ad_account_is_404(self, sandbox_http: httpx.AsyncClient, advertiser: str) -> None:
        ad_id = (await make_ad(sandbox_http, VIDEO_30D_ITEM_ID))["ad_id"]
        response = await control(sandbox_http, f"/advertisers/{advertiser}/ads/{ad_id}/delete")
        assert response.status_code == 404
        assert await ad_ids(sandbox_http) == [ad_id]

    async def test_an_unknown_ad_is_404(self, sandbox_http: httpx.AsyncClient) -> None:
        response = await control(sandbox_http, f"/advertisers/{ADVERTISER_ID}/ads/1899999999999999999/delete")
        assert response.status_code == 404
        assert response.json()["error"] == "not_found"


class TestRevoke:
    """`POST /sandbox/posts/{item_id}/revoke`: the creator revoked the authorization."""

    async def test_the_post_leaves_every_ad_account_it_was_bound_to(
        self, sandbox_http: httpx.AsyncClient, tiktok: TikTokClient
    ) -> None:
        await authorize(tiktok, "#SBX+video/30d=")
        await authorize(tiktok, "#SBX+video/60d=")
        await authorize(tiktok, "#SBX+video/30d=", advertiser_id=OTHER_ADVERTISER_ID)
        response = await control(sandbox_http, f"/posts/{VIDEO_30D_ITEM_ID}/revoke")
        assert response.status_code == 200
        assert response.json() == {
            "item_id": VIDEO_30D_ITEM_ID,
            "revoked": True,
            "unbound_from_advertiser_ids": sorted([ADVERTISER_ID, OTHER_ADVERTISER_ID]),
        }
        assert [post.item_id for post in await listed(tiktok)] == [VIDEO_60D_ITEM_ID]
        assert await listed(tiktok, advertiser=OTHER_ADVERTISER_ID) == []
        assert (
            await tiktok.find_bound_post(
                advertiser_id=ADVERTISER_ID, access_token=ACCESS_TOKEN, item_id=VIDEO_30D_ITEM_ID
            )
            is None
        )

    @pytest.mark.parametrize("code", ["#SBX+video/30d=", "#SBX+video/30d-renewed="])
    async def test_every_code_of_the_post_is_not_found_like_a_deleted_one(
        self, sandbox_http: httpx.AsyncClient, tiktok: TikTokClient, code: str
    ) -> None:
        await control(sandbox_http, f"/posts/{VIDEO_30D_ITEM_ID}/revoke")
        raw = await sandbox_http.get(
            f"{TT_VIDEO}/info/", params={"advertiser_id": ADVERTISER_ID, "auth_code": code}, headers=HEADERS
        )
        assert raw.json()["code"] == 40007
        assert raw.json()["message"].startswith("auth_code_not_found: ")
        with pytest.raises(TikTokRequestRejected) as caught:
            await info(tiktok, code)
        assert caught.value.refusal is TikTokRefusal.auth_code_not_found
        with pytest.raises(TikTokRequestRejected) as caught:
            await authorize(tiktok, code)
        assert (caught.value.code, caught.value.refusal) == (40007, TikTokRefusal.auth_code_not_found)
        assert await listed(tiktok) == []

    async def test_identity_video_info_no_longer_finds_it(
        self, sandbox_http: httpx.AsyncClient, tiktok: TikTokClient
    ) -> None:
        await authorize(tiktok, "#SBX+video/30d=")
        assert (await creator_video_info(tiktok, VIDEO_30D_ITEM_ID, ANA)).item_id == VIDEO_30D_ITEM_ID
        await control(sandbox_http, f"/posts/{VIDEO_30D_ITEM_ID}/revoke")
        with pytest.raises(TikTokRequestRejected) as caught:
            await creator_video_info(tiktok, VIDEO_30D_ITEM_ID, ANA)
        assert (caught.value.code, caught.value.refusal) == (40007, TikTokRefusal.post_not_found_for_identity)

    async def test_a_duet_whose_original_was_revoked_cannot_be_authorized(
        self, sandbox_http: httpx.AsyncClient, tiktok: TikTokClient
    ) -> None:
        await control(sandbox_http, f"/posts/{DUET_ORIGINAL_ITEM_ID}/revoke")
        with pytest.raises(TikTokRequestRejected) as caught:
            await authorize(tiktok, "#SBX+duet/secondary=", "#SBX+duet/original=")
        assert caught.value.refusal is TikTokRefusal.auth_code_not_found
        assert await listed(tiktok) == []

    async def test_other_posts_and_ads_are_untouched(
        self, sandbox_http: httpx.AsyncClient, tiktok: TikTokClient
    ) -> None:
        await authorize(tiktok, "#SBX+video/60d=")
        ad_id = (await make_ad(sandbox_http, VIDEO_30D_ITEM_ID))["ad_id"]
        await control(sandbox_http, f"/posts/{VIDEO_30D_ITEM_ID}/revoke")
        assert (await info(tiktok, "#SBX+video/60d=")).item_id == VIDEO_60D_ITEM_ID
        assert [post.item_id for post in await listed(tiktok)] == [VIDEO_60D_ITEM_ID]
        assert await ad_ids(sandbox_http) == [ad_id]  # ads already made keep running

    async def test_a_post_never_bound_can_be_revoked(
        self, sandbox_http: httpx.AsyncClient, tiktok: TikTokClient
    ) -> None:
        response = await control(sandbox_http, f"/posts/{bulk_item_id(3)}/revoke")
        assert response.json()["unbound_from_advertiser_ids"] == []
        with pytest.raises(TikTokRequestRejected):
            await info(tiktok, "#SBX+bulk/3=")
        assert (await info(tiktok, "#SBX+bulk/4=")).item_id == bulk_item_id(4)

    @pytest.mark.parametrize("item_id", ["7399999999999999999", OWN_VIDEO_ITEM_ID, "not-an-id"])
    async def test_an_unknown_post_or_an_own_post_is_404(self, sandbox_http: httpx.AsyncClient, item_id: str) -> None:
        response = await control(sandbox_http, f"/posts/{item_id}/revoke")
        assert response.status_code == 404
        assert response.json()["error"] == "not_found"

    async def test_a_fresh_sandbox_knows_nothing_of_it(self, sandbox_http: httpx.AsyncClient, clock: Clock) -> None:
        await control(sandbox_http, f"/posts/{VIDEO_30D_ITEM_ID}/revoke")
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_sandbox_app(now=clock))) as http:
            client = TikTokClient(http, base_url=f"{HOST}/open_api/")
            assert (await info(client, "#SBX+video/30d=")).item_id == VIDEO_30D_ITEM_ID


class TestPostStatus:
    """`POST /sandbox/posts/{item_id}/status`: the post was banned, deleted, made private... on TikTok."""

    @pytest.mark.parametrize(
        ("status", "expected"),
        [
            ("AUDIT_DELETE", PostStatus.banned),
            ("USER_DELETE", PostStatus.deleted),
            ("ONLY_AUTHOR_SEE", PostStatus.private),
        ],
    )
    async def test_info_list_and_identity_video_info_report_it_and_the_post_stays_listed(
        self, sandbox_http: httpx.AsyncClient, tiktok: TikTokClient, status: str, expected: PostStatus
    ) -> None:
        await authorize(tiktok, "#SBX+video/30d=")
        response = await control(sandbox_http, f"/posts/{VIDEO_30D_ITEM_ID}/status", {"status": status})
        assert response.status_code == 200
        assert response.json() == {"item_id": VIDEO_30D_ITEM_ID, "status": status}
        described = [
            await info(tiktok, "#SBX+video/30d="),
            *(await listed(tiktok)),
            await creator_video_info(tiktok, VIDEO_30D_ITEM_ID, ANA),
        ]
        assert [(post.item_id, post.raw_status, post.status) for post in described] == [
            (VIDEO_30D_ITEM_ID, status, expected)
        ] * 3

    @pytest.mark.parametrize(
        ("status", "refusal"),
        [
            ("AUDIT_DELETE", TikTokRefusal.illegal_item_status_error),
            ("USER_DELETE", TikTokRefusal.video_deleted),
            ("ITEM_STATUS_ONLY_USER_PASS", TikTokRefusal.video_unavailable),
        ],
    )
    async def test_authorize_refuses_what_can_no_longer_run(
        self, sandbox_http: httpx.AsyncClient, tiktok: TikTokClient, status: str, refusal: TikTokRefusal
    ) -> None:
        await control(sandbox_http, f"/posts/{VIDEO_30D_ITEM_ID}/status", {"status": status})
        with pytest.raises(TikTokRequestRejected) as caught:
            await authorize(tiktok, "#SBX+video/30d=")
        assert caught.value.refusal is refusal

    async def test_a_post_can_come_back(self, sandbox_http: httpx.AsyncClient, tiktok: TikTokClient) -> None:
        await control(sandbox_http, f"/posts/{VIDEO_30D_ITEM_ID}/status", {"status": "ONLY_AUTHOR_SEE"})
        await control(sandbox_http, f"/posts/{VIDEO_30D_ITEM_ID}/status", {"status": "HESITATE_RECOMMEND"})
        assert (await info(tiktok, "#SBX+video/30d=")).status is PostStatus.public

    async def test_an_own_posts_status_changes_too(self, sandbox_http: httpx.AsyncClient, tiktok: TikTokClient) -> None:
        await control(sandbox_http, f"/posts/{OWN_VIDEO_ITEM_ID}/status", {"status": "ITEM_STATUS_AUDIT_DELETE"})
        post = await own_video_info(tiktok)
        assert (post.raw_status, post.status) == ("ITEM_STATUS_AUDIT_DELETE", PostStatus.banned)

    async def test_the_seed_is_untouched(self, sandbox_http: httpx.AsyncClient, clock: Clock) -> None:
        await control(sandbox_http, f"/posts/{VIDEO_30D_ITEM_ID}/status", {"status": "AUDIT_DELETE"})
        await control(sandbox_http, f"/posts/{OWN_VIDEO_ITEM_ID}/status", {"status": "AUDIT_DELETE"})
        seeded = demo_code("#SBX+video/30d=").post
        assert seeded is not None and seeded.status == "HESITATE_RECOMMEND"
        assert own_post(OWN_VIDEO_ITEM_ID).status == "ITEM_STATUS_HESITATE_RECOMMEND"
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_sandbox_app(now=clock))) as http:
            client = TikTokClient(http, base_url=f"{HOST}/open_api/")
            assert (await info(client, "#SBX+video/30d=")).status is PostStatus.public

    @pytest.mark.parametrize(
        "body",
        [{}, {"status": "banned"}, {"status": ""}, {"status": 3}, {"status": None}, {"status": "AUDIT_DELETE", "x": 1}],
    )
    async def test_a_bad_body_is_400(self, sandbox_http: httpx.AsyncClient, tiktok: TikTokClient, body: Any) -> None:
        response = await control(sandbox_http, f"/posts/{VIDEO_30D_ITEM_ID}/status", body)
        assert response.status_code == 400
        assert (await info(tiktok, "#SBX+video/30d=")).status is PostStatus.public

    async def test_an_unknown_post_is_404(self, sandbox_http: httpx.AsyncClient) -> None:
        response = await control(sandbox_http, "/posts/7399999999999999999/status", {"status": "AUDIT_DELETE"})
        assert response.status_code == 404


class TestExtend:
    """`POST /sandbox/posts/{item_id}/extend`: the creator extended the window."""

    async def test_the_end_moves_wherever_the_post_is_described(
        self, sandbox_http: httpx.AsyncClient, tiktok: TikTokClient
    ) -> None:
        await authorize(tiktok, "#SBX+video/30d=")
        before = await info(tiktok, "#SBX+video/30d=")
        assert before.auth_end_at == SANDBOX_EPOCH + timedelta(days=29)
        response = await control(sandbox_http, f"/posts/{VIDEO_30D_ITEM_ID}/extend", {"days": 30})
        assert response.status_code == 200
        assert response.json() == {"item_id": VIDEO_30D_ITEM_ID, "extended_by_days": 30}
        described = [
            await info(tiktok, "#SBX+video/30d="),
            *(await listed(tiktok)),
            await creator_video_info(tiktok, VIDEO_30D_ITEM_ID, ANA),
        ]
        assert [(post.auth_start_at, post.auth_end_at) for post in described] == [
            (before.auth_start_at, SANDBOX_EPOCH + timedelta(days=59))
        ] * 3

    async def test_extensions_add_up(self, sandbox_http: httpx.AsyncClient, tiktok: TikTokClient) -> None:
        await control(sandbox_http, f"/posts/{VIDEO_30D_ITEM_ID}/extend", {"days": 7})
        response = await control(sandbox_http, f"/posts/{VIDEO_30D_ITEM_ID}/extend", {"days": 60})
        assert response.json()["extended_by_days"] == 67
        assert (await info(tiktok, "#SBX+video/30d=")).auth_end_at == SANDBOX_EPOCH + timedelta(days=29 + 67)

    async def test_a_window_that_ended_is_expired_in_the_list_until_extended(
        self, sandbox_http: httpx.AsyncClient, tiktok: TikTokClient, clock: Clock
    ) -> None:
        """tt_video/list judges each binding's window by the sandbox clock."""
        await authorize(tiktok, "#SBX+video/7d=")
        await authorize(tiktok, "#SBX+video/30d=")
        clock.advance(timedelta(days=6, seconds=1))
        statuses = {post.item_id: post.ad_auth_status for post in await listed(tiktok)}
        seven_days = demo_code("#SBX+video/7d=").post
        assert seven_days is not None
        assert statuses == {seven_days.item_id: "EXPIRED", VIDEO_30D_ITEM_ID: "AUTHORIZED"}
        await control(sandbox_http, f"/posts/{seven_days.item_id}/extend", {"days": 30})
        (extended, _) = await listed(tiktok)
        assert (extended.ad_auth_status, extended.auth_end_at) == ("AUTHORIZED", SANDBOX_EPOCH + timedelta(days=36))

    async def test_an_expired_codes_window_can_be_extended(
        self, sandbox_http: httpx.AsyncClient, tiktok: TikTokClient
    ) -> None:
        post = demo_code("#SBX+expired/status=").post
        assert post is not None
        assert (await info(tiktok, "#SBX+expired/status=")).ad_auth_status == "EXPIRED"
        await control(sandbox_http, f"/posts/{post.item_id}/extend", {"days": 30})
        extended = await info(tiktok, "#SBX+expired/status=")
        assert (extended.ad_auth_status, extended.auth_end_at) == ("AUTHORIZED", SANDBOX_EPOCH + timedelta(days=29))

    @pytest.mark.parametrize(
        "body", [{}, {"days": 0}, {"days": -7}, {"days": 3651}, {"days": "30"}, {"days": True}, {"days": 1.5}]
    )
    async def test_a_bad_body_is_400(self, sandbox_http: httpx.AsyncClient, body: Any) -> None:
        response = await control(sandbox_http, f"/posts/{VIDEO_30D_ITEM_ID}/extend", body)
        assert response.status_code == 400
        assert response.json()["error"] == "bad_request"

    @pytest.mark.parametrize("item_id", ["7399999999999999999", OWN_VIDEO_ITEM_ID])
    async def test_an_unknown_post_or_an_own_post_is_404(self, sandbox_http: httpx.AsyncClient, item_id: str) -> None:
        response = await control(sandbox_http, f"/posts/{item_id}/extend", {"days": 30})
        assert response.status_code == 404


class TestCaption:
    """`POST /sandbox/posts/{item_id}/caption`: the caption changed on TikTok."""

    async def test_info_list_and_identity_video_info_answer_the_new_caption(
        self, sandbox_http: httpx.AsyncClient, tiktok: TikTokClient
    ) -> None:
        await authorize(tiktok, "#SBX+video/30d=")
        response = await control(sandbox_http, f"/posts/{VIDEO_30D_ITEM_ID}/caption", {"text": "Now with 20% off"})
        assert response.status_code == 200
        assert response.json() == {"item_id": VIDEO_30D_ITEM_ID, "text": "Now with 20% off"}
        described = [
            await info(tiktok, "#SBX+video/30d="),
            *(await listed(tiktok)),
            await creator_video_info(tiktok, VIDEO_30D_ITEM_ID, ANA),
        ]
        assert [post.caption for post in described] == ["Now with 20% off"] * 3

    async def test_the_lists_keyword_matches_the_new_caption_only(
        self, sandbox_http: httpx.AsyncClient, tiktok: TikTokClient
    ) -> None:
        await authorize(tiktok, "#SBX+video/30d=")
        await control(sandbox_http, f"/posts/{VIDEO_30D_ITEM_ID}/caption", {"text": "Now with 20% off"})
        assert [post.item_id for post in await listed(tiktok, keyword="20% OFF")] == [VIDEO_30D_ITEM_ID]
        assert await listed(tiktok, keyword="trail shoes") == []

    async def test_an_own_posts_caption_changes_too(
        self, sandbox_http: httpx.AsyncClient, tiktok: TikTokClient
    ) -> None:
        await control(sandbox_http, f"/posts/{OWN_VIDEO_ITEM_ID}/caption", {"text": ""})
        assert (await own_video_info(tiktok)).caption == ""

    @pytest.mark.parametrize("body", [{}, {"text": None}, {"text": 42}, {"caption": "x"}])
    async def test_a_bad_body_is_400(self, sandbox_http: httpx.AsyncClient, body: Any) -> None:
        response = await control(sandbox_http, f"/posts/{VIDEO_30D_ITEM_ID}/caption", body)
        assert response.status_code == 400

    async def test_an_unknown_post_is_404(self, sandbox_http: httpx.AsyncClient) -> None:
        response = await control(sandbox_http, "/posts/7399999999999999999/caption", {"text": "x"})
        assert response.status_code == 404


def test_the_seeded_posts_used_here() -> None:
    thirty, sixty = demo_code("#SBX+video/30d=").post, demo_code("#SBX+video/60d=").post
    assert thirty is not None and sixty is not None
    assert (thirty.item_id, thirty.creator.identity_id) == (VIDEO_30D_ITEM_ID, ANA)
    assert (sixty.item_id, sixty.creator.identity_id) == (VIDEO_60D_ITEM_ID, BRUNO)
    assert IDENTITY_VIDEO_INFO_PATH.endswith("/")
