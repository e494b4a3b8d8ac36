"""Reading an ad account's Spark Ads with `ad/get` (docs/tiktok.md; the reference's section 9): `list_ads` reads
one page, `spark_ads` every page, keeping the ads that carry a `tiktok_item_id`.

Against the sandbox through the real client for what TikTok does with the ads (paging, deleted ads,
`modified_after`, ads that are not Spark Ads); against a scripted transport for the exact request on the wire and
for answers the sandbox never gives (numeric ids, a TikTok that ignores `page`, garbled data)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from app.tiktok.client import TikTokClient
from app.tiktok.errors import (
    TikTokAccessTokenInvalid,
    TikTokBadResponse,
    TikTokPermissionDenied,
    TikTokRequestRejected,
)
from app.tiktok.models import AdPage, TikTokAd
from dev.sandbox.app import Sandbox
from dev.sandbox.seed import (
    OWN_TT_USER_IDENTITY_ID,
    OWN_VIDEO_ITEM_ID,
    VIDEO_30D_ITEM_ID,
    VIDEO_60D_ITEM_ID,
    bulk_item_id,
    demo_code,
)
from tests.tiktok.conftest import (
    ACCESS_TOKEN,
    ADVERTISER_ID,
    OTHER_ADVERTISER_ID,
    SANDBOX_EPOCH,
    Clock,
    ScriptedFactory,
    envelope,
)

FIELDS = [
    "ad_id",
    "tiktok_item_id",
    "identity_type",
    "identity_id",
    "operation_status",
    "secondary_status",
    "campaign_id",
    "adgroup_id",
    "create_time",
    "modify_time",
]
ANA = "7301000000000000001"  # the creator of VIDEO_30D_ITEM_ID in the sandbox's seed


def sandbox_of(app: Starlette) -> Sandbox:
    sandbox = app.state.sandbox
    assert isinstance(sandbox, Sandbox)
    return sandbox


async def spark_ads(tiktok: TikTokClient, **options: Any) -> list[TikTokAd]:
    options.setdefault("advertiser_id", ADVERTISER_ID)
    return await tiktok.spark_ads(access_token=ACCESS_TOKEN, **options)


async def list_ads(tiktok: TikTokClient, **options: Any) -> AdPage:
    options.setdefault("advertiser_id", ADVERTISER_ID)
    return await tiktok.list_ads(access_token=ACCESS_TOKEN, **options)


def ad_entry(ad_id: Any = "1800000000000000001", **overrides: Any) -> dict[str, Any]:
    """One `ad/get` entry as TikTok documents it: a Spark Ad of a creator's post."""
    entry: dict[str, Any] = {
        "ad_id": ad_id,
        "tiktok_item_id": VIDEO_30D_ITEM_ID,
        "identity_type": "AUTH_CODE",
        "identity_id": ANA,
        "operation_status": "ENABLE",
        "secondary_status": "AD_STATUS_DELIVERY_OK",
        "campaign_id": "1810000000000000001",
        "adgroup_id": "1820000000000000002",
        "create_time": "2025-05-20 11:40:50",
        "modify_time": "2025-05-21 08:00:00",
    }
    entry.update(overrides)
    return entry


def ad_page(*entries: dict[str, Any], page: int = 1, total_page: int = 1, total_number: int | None = None) -> Any:
    return envelope(
        {
            "list": list(entries),
            "page_info": {
                "page": page,
                "page_size": 1000,
                "total_number": len(entries) if total_number is None else total_number,
                "total_page": total_page,
            },
        }
    )


def pages_asked(sent: list[httpx.Request]) -> list[int]:
    return [int(request.url.params["page"]) for request in sent if request.url.path.endswith("/ad/get/")]


class TestRequestShape:
    """What `list_ads` puts on the wire: TikTok's JSON-encoded `fields` and `filtering`, compactly."""

    async def test_a_get_to_ad_get_with_every_field_and_the_default_filter(self, scripted: ScriptedFactory) -> None:
        client, script = scripted(ad_page())
        await list_ads(client)
        (request,) = script.requests
        assert request.method == "GET"
        assert request.url.path == "/open_api/v1.3/ad/get/"
        assert request.headers["Access-Token"] == ACCESS_TOKEN
        params = request.url.params
        assert params["advertiser_id"] == ADVERTISER_ID
        assert params["fields"] == json.dumps(FIELDS, separators=(",", ":"))
        assert params["filtering"] == '{"primary_status":"STATUS_NOT_DELETE"}'
        assert (params["page"], params["page_size"]) == ("1", "1000")
        assert set(params) == {"advertiser_id", "fields", "filtering", "page", "page_size"}

    async def test_primary_status_page_and_page_size_are_sent_as_given(self, scripted: ScriptedFactory) -> None:
        client, script = scripted(ad_page())
        await list_ads(client, primary_status="STATUS_ALL", page=3, page_size=20)
        params = script.requests[0].url.params
        assert json.loads(params["filtering"]) == {"primary_status": "STATUS_ALL"}
        assert (params["page"], params["page_size"]) == ("3", "20")

    @pytest.mark.parametrize(
        ("modified_after", "sent"),
        [
            pytest.param(datetime(2025, 5, 20, 11, 40, 50, tzinfo=UTC), "2025-05-20 11:40:50", id="utc"),
            pytest.param(
                datetime(2025, 5, 20, 13, 40, 50, 999_999, tzinfo=timezone(timedelta(hours=2))),
                "2025-05-20 11:40:50",
                id="another-zone-and-a-fraction",
            ),
            pytest.param(datetime(2025, 5, 20, 11, 40, 50), "2025-05-20 11:40:50", id="naive-is-utc"),
        ],
    )
    async def test_modified_after_is_tiktoks_utc_text(
        self, scripted: ScriptedFactory, modified_after: datetime, sent: str
    ) -> None:
        client, script = scripted(ad_page())
        await list_ads(client, modified_after=modified_after)
        filtering = script.requests[0].url.params["filtering"]
        assert filtering == f'{{"primary_status":"STATUS_NOT_DELETE","modified_after":"{sent}"}}'

    @pytest.mark.parametrize(("deleted", "status"), [(False, "STATUS_NOT_DELETE"), (True, "STATUS_DELETE")])
    async def test_spark_ads_asks_for_deleted_ads_or_the_others(
        self, scripted: ScriptedFactory, deleted: bool, status: str
    ) -> None:
        client, script = scripted(ad_page())
        await spark_ads(client, deleted=deleted)
        (request,) = script.requests
        assert json.loads(request.url.params["filtering"]) == {"primary_status": status}
        assert request.url.params["page_size"] == "1000"


class TestAgainstTheSandbox:
    """The client and the sandbox's `ad/get`, with ads made as Ads Manager would (the sandbox's control methods)."""

    async def test_an_account_without_ads_is_one_call_and_no_ads(
        self, tiktok: TikTokClient, sent: list[httpx.Request]
    ) -> None:
        assert await spark_ads(tiktok) == []
        assert pages_asked(sent) == [1]

    async def test_a_spark_ad_is_read_with_its_post_identity_and_times(
        self, tiktok: TikTokClient, sandbox_app: Starlette, clock: Clock
    ) -> None:
        sandbox = sandbox_of(sandbox_app)
        clock.advance(timedelta(hours=2, microseconds=250_000))
        ad_id = sandbox.create_ad(ADVERTISER_ID, VIDEO_30D_ITEM_ID)
        (ad,) = await spark_ads(tiktok)
        assert ad.ad_id == ad_id
        assert (ad.tiktok_item_id, ad.identity_type, ad.identity_id) == (VIDEO_30D_ITEM_ID, "AUTH_CODE", ANA)
        assert (ad.operation_status, ad.secondary_status) == ("ENABLE", "AD_STATUS_DELIVERY_OK")
        assert ad.campaign_id and ad.campaign_id.isdigit()
        assert ad.adgroup_id and ad.adgroup_id.isdigit()
        # Whole seconds, UTC: what TikTok's "YYYY-MM-DD HH:MM:SS" can say.
        assert ad.created_at == ad.modified_at == SANDBOX_EPOCH + timedelta(hours=2)
        assert ad.created_at is not None and ad.created_at.tzinfo is not None

    async def test_an_own_post_runs_under_the_accounts_identity(
        self, tiktok: TikTokClient, sandbox_app: Starlette
    ) -> None:
        sandbox_of(sandbox_app).create_ad(ADVERTISER_ID, OWN_VIDEO_ITEM_ID, identity_type="TT_USER")
        (ad,) = await spark_ads(tiktok)
        assert (ad.tiktok_item_id, ad.identity_type, ad.identity_id) == (
            OWN_VIDEO_ITEM_ID,
            "TT_USER",
            OWN_TT_USER_IDENTITY_ID,
        )

    async def test_every_page_is_read_and_each_ad_comes_once_in_order(
        self, tiktok: TikTokClient, sandbox_app: Starlette, sent: list[httpx.Request]
    ) -> None:
        sandbox = sandbox_of(sandbox_app)
        made = [sandbox.create_ad(ADVERTISER_ID, bulk_item_id(n % 10_000)) for n in range(2_345)]
        ads = await spark_ads(tiktok)
        assert [ad.ad_id for ad in ads] == made
        assert pages_asked(sent) == [1, 2, 3]

    async def test_exactly_a_thousand_ads_is_one_page(
        self, tiktok: TikTokClient, sandbox_app: Starlette, sent: list[httpx.Request]
    ) -> None:
        sandbox = sandbox_of(sandbox_app)
        for n in range(1_000):
            sandbox.create_ad(ADVERTISER_ID, bulk_item_id(n))
        assert len(await spark_ads(tiktok)) == 1_000
        assert pages_asked(sent) == [1]

    async def test_list_ads_reads_one_page_with_its_page_info(
        self, tiktok: TikTokClient, sandbox_app: Starlette
    ) -> None:
        sandbox = sandbox_of(sandbox_app)
        made = [sandbox.create_ad(ADVERTISER_ID, bulk_item_id(n)) for n in range(5)]
        pages = [await list_ads(tiktok, page=n, page_size=2) for n in (1, 2, 3, 4)]
        assert [[ad.ad_id for ad in page.ads] for page in pages] == [made[0:2], made[2:4], made[4:], []]
        assert [(page.page, page.total_page, page.total_number) for page in pages] == [(n, 3, 5) for n in (1, 2, 3, 4)]

    async def test_deleted_ads_are_read_apart_from_the_others(
        self, tiktok: TikTokClient, sandbox_app: Starlette, clock: Clock
    ) -> None:
        sandbox = sandbox_of(sandbox_app)
        kept = sandbox.create_ad(ADVERTISER_ID, VIDEO_30D_ITEM_ID)
        gone = sandbox.create_ad(ADVERTISER_ID, VIDEO_60D_ITEM_ID)
        clock.advance(timedelta(days=1))
        sandbox.delete_ad(ADVERTISER_ID, gone)
        assert [ad.ad_id for ad in await spark_ads(tiktok)] == [kept]
        (deleted,) = await spark_ads(tiktok, deleted=True)
        assert (deleted.ad_id, deleted.tiktok_item_id) == (gone, VIDEO_60D_ITEM_ID)
        assert deleted.secondary_status == "AD_STATUS_DELETE"
        assert deleted.created_at == SANDBOX_EPOCH
        assert deleted.modified_at == SANDBOX_EPOCH + timedelta(days=1)
        everything = await list_ads(tiktok, primary_status="STATUS_ALL")
        assert {ad.ad_id for ad in everything.ads} == {kept, gone}

    async def test_modified_after_is_exclusive_at_whole_seconds(
        self, tiktok: TikTokClient, sandbox_app: Starlette, clock: Clock
    ) -> None:
        """The sandbox's harsh reading: an ad modified in the very second named is not returned."""
        sandbox = sandbox_of(sandbox_app)
        clock.advance(timedelta(microseconds=900_000))
        first = sandbox.create_ad(ADVERTISER_ID, VIDEO_30D_ITEM_ID)  # modified at SANDBOX_EPOCH, whole seconds
        clock.advance(timedelta(seconds=1))
        second = sandbox.create_ad(ADVERTISER_ID, VIDEO_60D_ITEM_ID)  # SANDBOX_EPOCH + 1 s

        async def since(moment: datetime) -> list[str]:
            return [ad.ad_id for ad in await spark_ads(tiktok, modified_after=moment)]

        assert await since(SANDBOX_EPOCH - timedelta(seconds=1)) == [first, second]
        assert await since(SANDBOX_EPOCH) == [second]
        assert await since(SANDBOX_EPOCH + timedelta(microseconds=999_999)) == [second]
        assert await since(SANDBOX_EPOCH + timedelta(seconds=1)) == []

    async def test_a_deletion_is_a_modification(
        self, tiktok: TikTokClient, sandbox_app: Starlette, clock: Clock
    ) -> None:
        sandbox = sandbox_of(sandbox_app)
        ad_id = sandbox.create_ad(ADVERTISER_ID, VIDEO_30D_ITEM_ID)
        clock.advance(timedelta(minutes=5))
        checked_at = clock.now
        clock.advance(timedelta(minutes=5))
        sandbox.delete_ad(ADVERTISER_ID, ad_id)
        assert await spark_ads(tiktok, modified_after=checked_at) == []
        assert [ad.ad_id for ad in await spark_ads(tiktok, deleted=True, modified_after=checked_at)] == [ad_id]

    async def test_ads_that_are_not_spark_ads_are_left_out(self, tiktok: TikTokClient, sandbox_app: Starlette) -> None:
        sandbox = sandbox_of(sandbox_app)
        plain = sandbox.create_ad(
            ADVERTISER_ID, None, identity_type="CUSTOMIZED_USER", identity_id="7304000000000000001"
        )
        spark = sandbox.create_ad(ADVERTISER_ID, VIDEO_30D_ITEM_ID)
        page = await list_ads(tiktok)
        assert [(ad.ad_id, ad.tiktok_item_id) for ad in page.ads] == [(plain, None), (spark, VIDEO_30D_ITEM_ID)]
        assert [ad.ad_id for ad in await spark_ads(tiktok)] == [spark]

    async def test_each_ad_account_has_its_own_ads(self, tiktok: TikTokClient, sandbox_app: Starlette) -> None:
        sandbox = sandbox_of(sandbox_app)
        mine = sandbox.create_ad(ADVERTISER_ID, VIDEO_30D_ITEM_ID)
        theirs = sandbox.create_ad(OTHER_ADVERTISER_ID, VIDEO_30D_ITEM_ID)
        assert [ad.ad_id for ad in await spark_ads(tiktok)] == [mine]
        assert [ad.ad_id for ad in await spark_ads(tiktok, advertiser_id=OTHER_ADVERTISER_ID)] == [theirs]

    async def test_a_revoked_posts_ads_are_still_read(self, tiktok: TikTokClient, sandbox_app: Starlette) -> None:
        """Ads already made keep running after the code is gone [HC]: reconciling must still see them."""
        sandbox = sandbox_of(sandbox_app)
        await tiktok.authorize(advertiser_id=ADVERTISER_ID, access_token=ACCESS_TOKEN, auth_code="#SBX+video/30d=")
        ad_id = sandbox.create_ad(ADVERTISER_ID, VIDEO_30D_ITEM_ID)
        sandbox.revoke(VIDEO_30D_ITEM_ID)
        assert [ad.ad_id for ad in await spark_ads(tiktok)] == [ad_id]

    async def test_a_bad_token_is_not_retried(self, tiktok: TikTokClient, sent: list[httpx.Request]) -> None:
        with pytest.raises(TikTokAccessTokenInvalid) as caught:
            await tiktok.spark_ads(advertiser_id=ADVERTISER_ID, access_token="expired-token")
        assert caught.value.code == 40102
        assert len(sent) == 1

    async def test_an_advertiser_that_does_not_exist_is_permission_denied(self, tiktok: TikTokClient) -> None:
        with pytest.raises(TikTokPermissionDenied) as caught:
            await spark_ads(tiktok, advertiser_id="4030000000000000000")
        assert caught.value.code == 40300

    @pytest.mark.parametrize("page_size", [0, 1001])
    async def test_a_page_size_outside_1_to_1000_is_a_rejection_without_a_refusal(
        self, tiktok: TikTokClient, sent: list[httpx.Request], page_size: int
    ) -> None:
        with pytest.raises(TikTokRequestRejected) as caught:
            await list_ads(tiktok, page_size=page_size)
        assert (caught.value.code, caught.value.refusal) == (40002, None)
        assert len(sent) == 1

    async def test_an_unknown_primary_status_is_a_rejection(self, tiktok: TikTokClient) -> None:
        with pytest.raises(TikTokRequestRejected) as caught:
            await list_ads(tiktok, primary_status="STATUS_DELIVERY_OK")
        assert caught.value.code == 40002


class TestPagingWhenTikTokMisbehaves:
    """The pages are counted by the client: whatever TikTok says, reading ends."""

    async def test_a_tiktok_that_ignores_page_cannot_make_it_loop(self, scripted: ScriptedFactory) -> None:
        same = ad_page(ad_entry("1800000000000000001"), ad_entry("1800000000000000002"), total_page=5)
        client, script = scripted(same)
        ads = await spark_ads(client)
        assert [ad.ad_id for ad in ads] == ["1800000000000000001", "1800000000000000002"]
        assert [request.url.params["page"] for request in script.requests] == ["1", "2"]

    async def test_reading_stops_at_total_page(self, scripted: ScriptedFactory) -> None:
        client, script = scripted(
            ad_page(ad_entry("1800000000000000001"), page=1, total_page=2),
            ad_page(ad_entry("1800000000000000002"), page=2, total_page=2),
            ad_page(ad_entry("1800000000000000003"), page=3, total_page=2),
        )
        ads = await spark_ads(client)
        assert [ad.ad_id for ad in ads] == ["1800000000000000001", "1800000000000000002"]
        assert len(script.requests) == 2

    async def test_an_empty_page_ends_the_reading_whatever_total_page_says(self, scripted: ScriptedFactory) -> None:
        client, script = scripted(
            ad_page(ad_entry("1800000000000000001"), total_page=1_000_000),
            ad_page(total_page=1_000_000),
        )
        assert [ad.ad_id for ad in await spark_ads(client)] == ["1800000000000000001"]
        assert len(script.requests) == 2

    async def test_an_ad_listed_on_two_pages_comes_once_as_last_read(self, scripted: ScriptedFactory) -> None:
        client, _ = scripted(
            ad_page(ad_entry("1800000000000000001"), ad_entry("1800000000000000002"), total_page=2),
            ad_page(
                ad_entry("1800000000000000002", secondary_status="AD_STATUS_DISABLE"),
                ad_entry("1800000000000000003"),
                page=2,
                total_page=2,
            ),
        )
        ads = await spark_ads(client)
        assert [(ad.ad_id, ad.secondary_status) for ad in ads] == [
            ("1800000000000000001", "AD_STATUS_DELIVERY_OK"),
            ("1800000000000000002", "AD_STATUS_DISABLE"),
            ("1800000000000000003", "AD_STATUS_DELIVERY_OK"),
        ]

    async def test_without_page_info_one_page_is_read(self, scripted: ScriptedFactory) -> None:
        client, script = scripted(envelope({"list": [ad_entry()]}))
        assert len(await spark_ads(client)) == 1
        assert len(script.requests) == 1
        page = await list_ads(client, page=2, page_size=50)
        assert (page.page, page.total_page, page.total_number) == (2, 1, 1)


class TestParsing:
    """How an `ad/get` entry becomes a TikTokAd: defensively, ids as strings, TikTok's times in UTC."""

    async def test_numeric_ids_become_strings_exactly(self, scripted: ScriptedFactory) -> None:
        entry = ad_entry(
            1800000000000000001,
            tiktok_item_id=7380112233445566002,
            identity_id=7301000000000000001,
            campaign_id=1810000000000000001,
            adgroup_id=1820000000000000002,
        )
        client, _ = scripted(ad_page(entry))
        (ad,) = await spark_ads(client)
        assert (ad.ad_id, ad.tiktok_item_id, ad.identity_id, ad.campaign_id, ad.adgroup_id) == (
            "1800000000000000001",
            "7380112233445566002",
            "7301000000000000001",
            "1810000000000000001",
            "1820000000000000002",
        )

    async def test_times_in_tiktoks_form_and_iso_are_utc(self, scripted: ScriptedFactory) -> None:
        client, _ = scripted(
            ad_page(ad_entry(create_time="2025-05-20 11:40:50", modify_time="2025-05-21T10:00:00+02:00"))
        )
        (ad,) = await spark_ads(client)
        assert ad.created_at == datetime(2025, 5, 20, 11, 40, 50, tzinfo=UTC)
        assert ad.modified_at == datetime(2025, 5, 21, 8, 0, 0, tzinfo=UTC)

    async def test_only_ad_id_is_required(self, scripted: ScriptedFactory) -> None:
        client, _ = scripted(ad_page({"ad_id": "1800000000000000001"}))
        page = await list_ads(client)
        assert page.ads == [
            TikTokAd(
                ad_id="1800000000000000001",
                tiktok_item_id=None,
                identity_type=None,
                identity_id=None,
                operation_status=None,
                secondary_status=None,
                campaign_id=None,
                adgroup_id=None,
                created_at=None,
                modified_at=None,
            )
        ]

    @pytest.mark.parametrize("item_id", [None, ""])
    async def test_an_ad_with_an_empty_or_null_item_id_is_not_a_spark_ad(
        self, scripted: ScriptedFactory, item_id: str | None
    ) -> None:
        client, _ = scripted(ad_page(ad_entry(tiktok_item_id=item_id)))
        assert await spark_ads(client) == []
        (ad,) = (await list_ads(client)).ads
        assert ad.tiktok_item_id is None

    async def test_a_transient_fault_is_retried(self, scripted: ScriptedFactory) -> None:
        client, script = scripted(envelope(code=50000, message="System error"), ad_page(ad_entry()))
        assert len(await spark_ads(client)) == 1
        assert len(script.requests) == 2

    @pytest.mark.parametrize(
        "data",
        [
            pytest.param({"list": [{"tiktok_item_id": VIDEO_30D_ITEM_ID}]}, id="no-ad-id"),
            pytest.param({"list": [ad_entry("")]}, id="empty-ad-id"),
            pytest.param({"list": [ad_entry(1.8e18)]}, id="float-ad-id"),
            pytest.param({"list": [ad_entry(True)]}, id="boolean-ad-id"),
            pytest.param({"list": [ad_entry(tiktok_item_id={"id": "1"})]}, id="object-item-id"),
            pytest.param({"list": [ad_entry(tiktok_item_id=7.380112233445566e18)]}, id="float-item-id"),
            pytest.param({"list": [ad_entry(create_time="yesterday")]}, id="garbled-time"),
            pytest.param({"list": [ad_entry(modify_time=["2025-05-20"])]}, id="time-not-text"),
            pytest.param({"list": ["1800000000000000001"]}, id="entry-not-an-object"),
            pytest.param({"list": {"ad_id": "1800000000000000001"}}, id="list-not-a-list"),
        ],
    )
    async def test_a_garbled_answer_is_a_bad_response_after_the_retries(
        self, scripted: ScriptedFactory, data: dict[str, Any]
    ) -> None:
        client, script = scripted(envelope(data))
        with pytest.raises(TikTokBadResponse):
            await spark_ads(client)
        assert len(script.requests) == 4

    async def test_a_body_that_is_not_the_envelope_is_a_bad_response(self, scripted: ScriptedFactory) -> None:
        client, _ = scripted(httpx.Response(200, text='{"code": 0, "data": {"list": ['))
        with pytest.raises(TikTokBadResponse):
            await list_ads(client)


def test_the_seeded_post_used_here_is_anas() -> None:
    post = demo_code("#SBX+video/30d=").post
    assert post is not None
    assert (post.item_id, post.creator.identity_id) == (VIDEO_30D_ITEM_ID, ANA)
