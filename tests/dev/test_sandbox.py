"""The sandbox, driven by the real client over httpx's ASGI transport: it must speak TikTok's protocol and
answer each seeded code the way the README says, so that the service's own tests can rely on it."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from structlog.testing import capture_logs

from app.tiktok.client import TikTokClient
from app.tiktok.errors import (
    TikTokAccessTokenInvalid,
    TikTokBadResponse,
    TikTokPermissionDenied,
    TikTokRateLimited,
    TikTokRefusal,
    TikTokRequestRejected,
    TikTokTimeout,
    TikTokUnavailable,
)
from app.tiktok.models import IdentityType, ItemType, PostInfo, PostStatus
from dev.sandbox import DEMO_CODES, OWN_POSTS, OwnPost, create_sandbox_app, find_demo_code
from dev.sandbox.app import API_PREFIX, IDENTITY_VIDEO_INFO_PATH, POST_NOT_UNDER_IDENTITY, Sandbox
from dev.sandbox.seed import (
    BULK_CODE_COUNT,
    BULK_CREATORS,
    BULK_ITEM_ID_PREFIX,
    BULK_WINDOW_DAYS,
    CODES_BY_TEXT,
    DUET_EXPIRED_ORIGINAL_ITEM_ID,
    DUET_ITEM_ID,
    DUET_OF_EXPIRED_ORIGINAL_ITEM_ID,
    DUET_OF_SHORT_ORIGINAL_ITEM_ID,
    DUET_ORIGINAL_ITEM_ID,
    DUET_SHORT_ORIGINAL_ITEM_ID,
    OWN_BANNED_ITEM_ID,
    OWN_BC_AUTH_TT,
    OWN_BC_ID,
    OWN_BC_IDENTITY_ID,
    OWN_BC_VIDEO_ITEM_ID,
    OWN_CAROUSEL_ITEM_ID,
    OWN_DELETED_ITEM_ID,
    OWN_PRIVATE_ITEM_ID,
    OWN_TT_USER,
    OWN_TT_USER_IDENTITY_ID,
    OWN_VIDEO_B_ITEM_ID,
    OWN_VIDEO_ITEM_ID,
    REFUSED_TWICE_ITEM_ID,
    STITCH_ORIGINAL_ITEM_ID,
    TIMES_OUT_ITEM_ID,
    VIDEO_30D_ITEM_ID,
    bulk_code,
    bulk_item_id,
    demo_code,
    own_post,
)
from tests.tiktok.conftest import (
    ACCESS_TOKEN,
    ADVERTISER_ID,
    BASE_URL,
    OTHER_ADVERTISER_ID,
    SANDBOX_EPOCH,
    Clock,
)

API = "http://127.0.0.1:8001/open_api/v1.3/tt_video"


async def info(
    tiktok: TikTokClient, code: str, *, token: str = ACCESS_TOKEN, advertiser: str = ADVERTISER_ID
) -> PostInfo:
    return await tiktok.post_info(advertiser_id=advertiser, access_token=token, auth_code=code)


async def authorize(
    tiktok: TikTokClient, code: str, original: str | None = None, *, advertiser: str = ADVERTISER_ID
) -> None:
    await tiktok.authorize(
        advertiser_id=advertiser, access_token=ACCESS_TOKEN, auth_code=code, original_post_auth_code=original
    )


async def bound_item_ids(tiktok: TikTokClient, *, advertiser: str = ADVERTISER_ID, **filters: Any) -> list[str]:
    page = await tiktok.list_posts(advertiser_id=advertiser, access_token=ACCESS_TOKEN, page_size=50, **filters)
    return [post.item_id for post in page.posts]


def item_id_of(code: str) -> str:
    post = demo_code(code).post
    assert post is not None
    return post.item_id


class TestSeed:
    """The demo codes themselves."""

    def test_codes_are_unique_and_need_url_encoding(self) -> None:
        codes = [demo.code for demo in DEMO_CODES]
        assert len(codes) == len(set(codes))
        for code in codes:
            assert code.startswith("#SBX+")
            assert "/" in code
            assert code.endswith("=")

    def test_item_ids_are_stable_digit_strings_and_unique(self) -> None:
        item_ids = [demo.post.item_id for demo in DEMO_CODES if demo.post is not None and demo.renews is None]
        assert len(item_ids) == len(set(item_ids))
        renewals = [demo for demo in DEMO_CODES if demo.renews is not None]
        assert renewals, "the sandbox should offer a second code for an authorized post (D2)"
        for demo in renewals:
            assert demo.post == demo_code(demo.renews).post
        assert all(item_id.isdigit() and len(item_id) == 19 for item_id in item_ids)

    def test_every_code_is_described(self) -> None:
        assert all(demo.description for demo in DEMO_CODES)


class TestProtocol:
    """The conventions every endpoint shares (docs/tiktok.md, "Conventions every call follows")."""

    async def test_a_path_without_its_trailing_slash_is_a_plain_404(self, sandbox_http: httpx.AsyncClient) -> None:
        response = await sandbox_http.get(
            f"{API}/info",
            params={"advertiser_id": ADVERTISER_ID, "auth_code": "#SBX+video/30d="},
            headers={"Access-Token": ACCESS_TOKEN},
        )
        assert response.status_code == 404
        assert "application/json" not in response.headers.get("content-type", "")

    async def test_the_client_sees_a_404_as_a_rejection_without_a_refusal(
        self, sandbox_http: httpx.AsyncClient
    ) -> None:
        client = TikTokClient(sandbox_http, base_url="http://127.0.0.1:8001/no_such_api/")
        with pytest.raises(TikTokRequestRejected) as caught:
            await info(client, "#SBX+video/30d=")
        assert (caught.value.http_status, caught.value.refusal) == (404, None)

    async def test_every_answer_is_an_envelope_with_a_request_id(self, sandbox_http: httpx.AsyncClient) -> None:
        ok = await sandbox_http.get(
            f"{API}/info/",
            params={"advertiser_id": ADVERTISER_ID, "auth_code": "#SBX+video/30d="},
            headers={"Access-Token": ACCESS_TOKEN},
        )
        refused = await sandbox_http.get(
            f"{API}/info/", params={"advertiser_id": ADVERTISER_ID, "auth_code": "#SBX+nothing/here="}
        )
        for response in (ok, refused):
            body = response.json()
            assert response.status_code == 200
            assert set(body) == {"code", "message", "request_id", "data"}
            assert body["request_id"]
        assert ok.json()["code"] == 0
        assert refused.json()["code"] == 40104  # no Access-Token header
        assert ok.json()["request_id"] != refused.json()["request_id"]

    async def test_an_unencoded_plus_does_not_find_the_code(self, sandbox_http: httpx.AsyncClient) -> None:
        """What a client that forgot to URL-encode would see: `+` read as a space."""
        response = await sandbox_http.get(
            f"{API}/info/?advertiser_id={ADVERTISER_ID}&auth_code=%23SBX+video%2F30d%3D",
            headers={"Access-Token": ACCESS_TOKEN},
        )
        assert response.json()["code"] == 40007

    async def test_the_client_finds_a_code_with_every_special_character(self, tiktok: TikTokClient) -> None:
        post = await info(tiktok, "#SBX+video/30d=")
        assert post.item_id == item_id_of("#SBX+video/30d=")

    @pytest.mark.parametrize(("token", "code"), [("expired-token", 40102), ("invalid-token", 40105), ("", 40104)])
    async def test_bad_tokens_are_refused(self, tiktok: TikTokClient, token: str, code: int) -> None:
        with pytest.raises(TikTokAccessTokenInvalid) as caught:
            await info(tiktok, "#SBX+video/30d=", token=token)
        assert caught.value.code == code

    async def test_a_missing_token_header_is_40104(self, sandbox_http: httpx.AsyncClient) -> None:
        response = await sandbox_http.post(f"{API}/authorize/", json={"advertiser_id": ADVERTISER_ID})
        assert response.json()["code"] == 40104

    async def test_an_advertiser_id_that_is_not_digits_is_invalid(self, tiktok: TikTokClient) -> None:
        with pytest.raises(TikTokRequestRejected) as caught:
            await info(tiktok, "#SBX+video/30d=", advertiser="act_123")
        assert caught.value.code == 40002
        assert caught.value.refusal is None

    async def test_an_advertiser_that_does_not_exist_is_40300(self, tiktok: TikTokClient) -> None:
        with pytest.raises(TikTokPermissionDenied) as caught:
            await info(tiktok, "#SBX+video/30d=", advertiser="4030000000000000000")
        assert caught.value.code == 40300

    async def test_missing_parameters_are_40002(self, sandbox_http: httpx.AsyncClient) -> None:
        headers = {"Access-Token": ACCESS_TOKEN}
        no_code = await sandbox_http.get(f"{API}/info/", params={"advertiser_id": ADVERTISER_ID}, headers=headers)
        no_advertiser = await sandbox_http.get(f"{API}/info/", params={"auth_code": "#SBX+video/30d="}, headers=headers)
        no_item = await sandbox_http.post(f"{API}/unbind/", json={"advertiser_id": ADVERTISER_ID}, headers=headers)
        not_json = await sandbox_http.post(f"{API}/authorize/", content=b"advertiser_id=1", headers=headers)
        assert [r.json()["code"] for r in (no_code, no_advertiser, no_item, not_json)] == [40002] * 4

    @pytest.mark.parametrize("page_size", [0, 51, -1])
    async def test_page_size_outside_1_to_50_is_refused(self, tiktok: TikTokClient, page_size: int) -> None:
        with pytest.raises(TikTokRequestRejected) as caught:
            await tiktok.list_posts(advertiser_id=ADVERTISER_ID, access_token=ACCESS_TOKEN, page_size=page_size)
        assert caught.value.code == 40002

    @pytest.mark.parametrize("page_size", [1, 50])
    async def test_page_size_1_and_50_are_accepted(self, tiktok: TikTokClient, page_size: int) -> None:
        page = await tiktok.list_posts(advertiser_id=ADVERTISER_ID, access_token=ACCESS_TOKEN, page_size=page_size)
        assert page.page_size == page_size

    @pytest.mark.parametrize("item_types", ["VIDEO", '["VIDEO", "STORY"]', '{"a": 1}'])
    async def test_item_types_must_be_a_json_list_of_known_types(
        self, sandbox_http: httpx.AsyncClient, item_types: str
    ) -> None:
        response = await sandbox_http.get(
            f"{API}/list/",
            params={"advertiser_id": ADVERTISER_ID, "item_types": item_types},
            headers={"Access-Token": ACCESS_TOKEN},
        )
        assert response.json()["code"] == 40002


class TestInfo:
    """`tt_video/info` for each kind of seeded code; it answers whether or not the code was applied."""

    @pytest.mark.parametrize(
        ("code", "days"),
        [("#SBX+video/7d=", 7), ("#SBX+video/30d=", 30), ("#SBX+video/60d=", 60), ("#SBX+video/365d=", 365)],
    )
    async def test_windows_start_a_day_ago_and_last_the_creators_choice(
        self, tiktok: TikTokClient, code: str, days: int
    ) -> None:
        """D3: the window is what TikTok reports; the 365-day code answers in ISO form."""
        post = await info(tiktok, code)
        assert post.auth_start_at == SANDBOX_EPOCH - timedelta(days=1)
        assert post.auth_end_at == post.auth_start_at + timedelta(days=days)
        assert post.ad_auth_status == "AUTHORIZED"
        assert post.status is PostStatus.public
        assert post.identity_type == "AUTH_CODE"

    async def test_a_carousel_has_no_video_info(self, tiktok: TikTokClient) -> None:
        post = await info(tiktok, "#SBX+carousel/30d=")
        assert post.item_type is ItemType.carousel
        assert post.duration_seconds is None

    async def test_private_and_friends_only_posts_are_described(self, tiktok: TikTokClient) -> None:
        """D5: the service warns about these; TikTok accepts them."""
        private = await info(tiktok, "#SBX+visibility/private=")
        friends = await info(tiktok, "#SBX+visibility/friends-only=")
        assert (private.status, private.raw_status) == (PostStatus.private, "ONLY_AUTHOR_SEE")
        assert (friends.status, friends.raw_status) == (PostStatus.friends_only, "STATUS_ONLY_FRIEND_SEE")

    async def test_an_expired_code_can_be_an_error(self, tiktok: TikTokClient) -> None:
        with pytest.raises(TikTokRequestRejected) as caught:
            await info(tiktok, "#SBX+expired/error=")
        assert (caught.value.code, caught.value.refusal) == (40002, TikTokRefusal.auth_code_expired)

    async def test_an_expired_code_can_be_a_post_with_a_past_window(self, tiktok: TikTokClient) -> None:
        post = await info(tiktok, "#SBX+expired/status=")
        assert post.ad_auth_status == "EXPIRED"
        assert post.auth_end_at is not None
        assert post.auth_end_at < SANDBOX_EPOCH

    @pytest.mark.parametrize("code", ["#SBX+code/deleted=", "#SBX+never/issued="])
    async def test_a_deleted_or_unknown_code_is_not_found(self, tiktok: TikTokClient, code: str) -> None:
        with pytest.raises(TikTokRequestRejected) as caught:
            await info(tiktok, code)
        assert (caught.value.code, caught.value.refusal) == (40007, TikTokRefusal.auth_code_not_found)
        assert "auth_code_not_found" in caught.value.message

    async def test_a_malformed_code_is_a_format_error(self, tiktok: TikTokClient) -> None:
        with pytest.raises(TikTokRequestRejected) as caught:
            await info(tiktok, "#SBX+code/format-error=")
        assert (caught.value.code, caught.value.refusal) == (40002, TikTokRefusal.auth_code_format_error)

    @pytest.mark.parametrize(
        ("code", "status"),
        [
            ("#SBX+post/deleted=", PostStatus.deleted),
            ("#SBX+post/banned=", PostStatus.banned),
            ("#SBX+post/removed=", PostStatus.removed),
        ],
    )
    async def test_unusable_posts_are_described_with_their_status(
        self, tiktok: TikTokClient, code: str, status: PostStatus
    ) -> None:
        """D8: info reports them; refusing is the service's decision (and authorize's)."""
        assert (await info(tiktok, code)).status is status

    @pytest.mark.parametrize(("code", "seconds"), [("#SBX+duration/900s=", 900.0), ("#SBX+duration/600s=", 600.0)])
    async def test_durations_around_the_limit(self, tiktok: TikTokClient, code: str, seconds: float) -> None:
        """D9: the limit is the service's policy; the sandbox just reports."""
        assert (await info(tiktok, code)).duration_seconds == seconds

    async def test_duets_and_stitches_point_at_their_originals(self, tiktok: TikTokClient) -> None:
        """D12."""
        duet = await info(tiktok, "#SBX+duet/secondary=")
        stitch = await info(tiktok, "#SBX+stitch/secondary=")
        multi = await info(tiktok, "#SBX+duet/multi-level=")
        carousel_duet = await info(tiktok, "#SBX+duet/carousel=")
        mentions = await info(tiktok, "#SBX+mentions/two=")
        assert duet.duet_original_item_id == DUET_ORIGINAL_ITEM_ID == item_id_of("#SBX+duet/original=")
        assert stitch.stitch_original_item_id == STITCH_ORIGINAL_ITEM_ID == item_id_of("#SBX+stitch/original=")
        assert (multi.is_multi_duet_stitch, multi.duet_original_item_id) == (True, DUET_ITEM_ID)
        assert (carousel_duet.item_type, carousel_duet.original_item_id) == (ItemType.carousel, DUET_ORIGINAL_ITEM_ID)
        assert len(mentions.mentioned_item_ids) == 2

    async def test_a_7_day_window_expires_on_the_sandbox_clock(self, tiktok: TikTokClient, clock: Clock) -> None:
        clock.advance(timedelta(days=6, seconds=1))
        assert (await info(tiktok, "#SBX+video/7d=")).ad_auth_status == "EXPIRED"
        with pytest.raises(TikTokRequestRejected) as caught:
            await authorize(tiktok, "#SBX+video/7d=")
        assert caught.value.refusal is TikTokRefusal.auth_code_expired


class TestFaults:
    """The fault codes, through the client's retries (the autouse fixture removes the waits)."""

    async def test_flaky_fails_twice_then_answers(self, tiktok: TikTokClient, sent: list[httpx.Request]) -> None:
        post = await info(tiktok, "#SBX+fault/flaky=")
        assert post.item_id == item_id_of("#SBX+fault/flaky=")
        assert len(sent) == 3

    async def test_flaky_fails_only_the_first_two_calls_of_a_sandbox(
        self, tiktok: TikTokClient, sent: list[httpx.Request]
    ) -> None:
        await info(tiktok, "#SBX+fault/flaky=")
        await info(tiktok, "#SBX+fault/flaky=")
        assert len(sent) == 4

    async def test_flaky_with_fewer_attempts_surfaces_the_system_error(self, sandbox_http: httpx.AsyncClient) -> None:
        client = TikTokClient(sandbox_http, base_url=BASE_URL, max_attempts=2)
        with pytest.raises(TikTokUnavailable) as caught:
            await info(client, "#SBX+fault/flaky=")
        assert caught.value.code == 50000

    async def test_rate_limited_is_retried_then_raised(self, tiktok: TikTokClient, sent: list[httpx.Request]) -> None:
        with pytest.raises(TikTokRateLimited) as caught:
            await info(tiktok, "#SBX+fault/rate-limited=")
        assert caught.value.code == 40100
        assert "QPS limit" in caught.value.message
        assert len(sent) == 4

    async def test_system_error_is_unavailable(self, tiktok: TikTokClient, sent: list[httpx.Request]) -> None:
        with pytest.raises(TikTokUnavailable) as caught:
            await info(tiktok, "#SBX+fault/system-error=")
        assert caught.value.code == 50000
        assert len(sent) == 4  # retried: reading is safe to repeat

    async def test_system_error_on_authorize_is_not_retried(
        self, tiktok: TikTokClient, sent: list[httpx.Request]
    ) -> None:
        """TikTok may have applied the code before failing: the client does not apply it a second time."""
        with pytest.raises(TikTokUnavailable):
            await authorize(tiktok, "#SBX+fault/system-error=")
        assert len(sent) == 1

    async def test_malformed_is_a_bad_response_after_the_retries(
        self, tiktok: TikTokClient, sent: list[httpx.Request]
    ) -> None:
        with pytest.raises(TikTokBadResponse):
            await info(tiktok, "#SBX+fault/malformed=")
        assert len(sent) == 4

    async def test_http_503_with_html_is_unavailable(self, tiktok: TikTokClient, sent: list[httpx.Request]) -> None:
        with pytest.raises(TikTokUnavailable) as caught:
            await info(tiktok, "#SBX+fault/http-503=")
        assert caught.value.http_status == 503
        assert len(sent) == 4

    async def test_slow_is_cut_by_the_deadline(self, sandbox_http: httpx.AsyncClient) -> None:
        """The sandbox would answer after 30 s; the client gives up at its deadline, not the sandbox's pace."""
        client = TikTokClient(sandbox_http, base_url=BASE_URL, deadline_seconds=0.2)
        with pytest.raises(TikTokTimeout, match="deadline"):
            await info(client, "#SBX+fault/slow=")

    async def test_slow_answers_when_given_the_time(self, clock: Clock) -> None:
        app = create_sandbox_app(slow_seconds=0.01, now=clock)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app)) as http:
            client = TikTokClient(http, base_url=BASE_URL)
            post = await info(client, "#SBX+fault/slow=")
        assert post.item_id == item_id_of("#SBX+fault/slow=")


class TestAuthorizeListUnbind:
    """Applying codes (D2, D12), reading them back, and un-authorizing (D16)."""

    async def test_authorize_binds_and_list_shows_the_post(self, tiktok: TikTokClient) -> None:
        assert await bound_item_ids(tiktok) == []
        await authorize(tiktok, "#SBX+video/30d=")
        page = await tiktok.list_posts(advertiser_id=ADVERTISER_ID, access_token=ACCESS_TOKEN)
        assert [post.item_id for post in page.posts] == [item_id_of("#SBX+video/30d=")]
        assert (page.page, page.total_number, page.total_page) == (1, 1, 1)
        assert page.posts[0].auth_end_at == SANDBOX_EPOCH + timedelta(days=29)

    async def test_applying_a_code_again_is_the_same_authorization(self, tiktok: TikTokClient) -> None:
        """D2."""
        await authorize(tiktok, "#SBX+video/30d=")
        await authorize(tiktok, "#SBX+video/30d=")
        assert await bound_item_ids(tiktok) == [item_id_of("#SBX+video/30d=")]

    async def test_bindings_belong_to_one_advertiser(self, tiktok: TikTokClient) -> None:
        await authorize(tiktok, "#SBX+video/30d=")
        assert await bound_item_ids(tiktok, advertiser=OTHER_ADVERTISER_ID) == []

    async def test_list_entries_carry_the_code_the_post_was_bound_with(
        self, tiktok: TikTokClient, sandbox_http: httpx.AsyncClient
    ) -> None:
        """As in TikTok's example; the client reads past it."""
        await authorize(tiktok, "#SBX+carousel/30d=")
        response = await sandbox_http.get(
            f"{API}/list/", params={"advertiser_id": ADVERTISER_ID}, headers={"Access-Token": ACCESS_TOKEN}
        )
        (entry,) = response.json()["data"]["list"]
        assert entry["item_info"]["auth_code"] == "#SBX+carousel/30d="
        assert entry["video_info"] is None
        assert set(entry) == {"item_info", "auth_info", "video_info", "user_info"}

    @pytest.mark.parametrize("code", ["#SBX+duration/900s=", "#SBX+duration/600s=", "#SBX+visibility/private="])
    async def test_tiktok_accepts_what_only_the_service_refuses(self, tiktok: TikTokClient, code: str) -> None:
        """D9, D5: TikTok has no duration limit and authorizes private videos."""
        await authorize(tiktok, code)
        assert await bound_item_ids(tiktok) == [item_id_of(code)]

    @pytest.mark.parametrize(
        ("code", "refusal"),
        [
            ("#SBX+expired/error=", TikTokRefusal.auth_code_expired),
            ("#SBX+expired/status=", TikTokRefusal.auth_code_expired),
            ("#SBX+code/deleted=", TikTokRefusal.auth_code_not_found),
            ("#SBX+never/issued=", TikTokRefusal.auth_code_not_found),
            ("#SBX+code/format-error=", TikTokRefusal.auth_code_format_error),
            ("#SBX+post/deleted=", TikTokRefusal.video_deleted),
            ("#SBX+post/removed=", TikTokRefusal.video_unavailable),
            ("#SBX+post/banned=", TikTokRefusal.illegal_item_status_error),
            ("#SBX+duet/multi-level=", TikTokRefusal.multi_duet_stitch_refused),
            ("#SBX+duet/carousel=", TikTokRefusal.carousel_duet_not_supported),
            ("#SBX+mentions/two=", TikTokRefusal.mention_multiple_videos),
        ],
    )
    async def test_authorize_refuses_with_the_refusal_named(
        self, tiktok: TikTokClient, code: str, refusal: TikTokRefusal
    ) -> None:
        """D8, D12, D3."""
        with pytest.raises(TikTokRequestRejected) as caught:
            await authorize(tiktok, code, "#SBX+duet/original=")
        assert caught.value.refusal is refusal
        assert await bound_item_ids(tiktok) == []

    async def test_a_post_mentioning_one_video_is_accepted(self, tiktok: TikTokClient) -> None:
        await authorize(tiktok, "#SBX+mentions/one=")
        assert await bound_item_ids(tiktok) == [item_id_of("#SBX+mentions/one=")]

    @pytest.mark.parametrize("secondary", ["#SBX+duet/secondary=", "#SBX+stitch/secondary="])
    async def test_a_duet_or_stitch_without_the_original_code_is_refused(
        self, tiktok: TikTokClient, secondary: str
    ) -> None:
        """D12: the service asks for the primary creator's code when it is missing."""
        with pytest.raises(TikTokRequestRejected) as caught:
            await authorize(tiktok, secondary)
        assert caught.value.refusal is TikTokRefusal.original_post_auth_code_required

    @pytest.mark.parametrize(
        ("secondary", "wrong"),
        [
            ("#SBX+duet/secondary=", "#SBX+original/unrelated="),
            ("#SBX+duet/secondary=", "#SBX+stitch/original="),
            ("#SBX+stitch/secondary=", "#SBX+duet/original="),
            ("#SBX+duet/secondary=", "#SBX+never/issued="),
        ],
    )
    async def test_a_duet_or_stitch_with_another_posts_code_is_refused(
        self, tiktok: TikTokClient, secondary: str, wrong: str
    ) -> None:
        """D12: the primary's code must belong to the original post."""
        with pytest.raises(TikTokRequestRejected) as caught:
            await authorize(tiktok, secondary, wrong)
        assert caught.value.refusal is TikTokRefusal.original_post_auth_code_mismatch
        assert await bound_item_ids(tiktok) == []

    @pytest.mark.parametrize(
        ("secondary", "original"),
        [("#SBX+duet/secondary=", "#SBX+duet/original="), ("#SBX+stitch/secondary=", "#SBX+stitch/original=")],
    )
    async def test_a_duet_or_stitch_with_the_right_code_binds_both_posts(
        self, tiktok: TikTokClient, secondary: str, original: str
    ) -> None:
        await authorize(tiktok, secondary, original)
        assert await bound_item_ids(tiktok) == [item_id_of(secondary), item_id_of(original)]

    async def test_codes_in_the_wrong_order_authorize_only_the_original(self, tiktok: TikTokClient) -> None:
        """D12: TikTok wants the secondary's code first; putting them in order is the service's job. Sent the
        other way round, the original is authorized alone and the Duet is not."""
        await authorize(tiktok, "#SBX+duet/original=", "#SBX+duet/secondary=")
        assert await bound_item_ids(tiktok) == [DUET_ORIGINAL_ITEM_ID]

    async def test_list_filters_by_type_and_keyword(self, tiktok: TikTokClient) -> None:
        for code in ("#SBX+video/30d=", "#SBX+video/30d-b=", "#SBX+carousel/30d="):
            await authorize(tiktok, code)
        assert await bound_item_ids(tiktok, item_types=[ItemType.carousel]) == [item_id_of("#SBX+carousel/30d=")]
        assert len(await bound_item_ids(tiktok, item_types=[ItemType.video])) == 2
        assert await bound_item_ids(tiktok, keyword="PASTA") == [item_id_of("#SBX+video/30d-b=")]
        exact = item_id_of("#SBX+video/30d=")
        assert await bound_item_ids(tiktok, keyword=exact) == [exact]
        assert await bound_item_ids(tiktok, keyword=exact[:-1]) == []

    async def test_list_paginates(self, tiktok: TikTokClient) -> None:
        codes = ["#SBX+video/7d=", "#SBX+video/30d=", "#SBX+video/60d=", "#SBX+video/365d=", "#SBX+carousel/30d="]
        for code in codes:
            await authorize(tiktok, code)
        pages = [
            await tiktok.list_posts(advertiser_id=ADVERTISER_ID, access_token=ACCESS_TOKEN, page=n, page_size=2)
            for n in (1, 2, 3, 4)
        ]
        assert [len(page.posts) for page in pages] == [2, 2, 1, 0]
        assert all((page.total_number, page.total_page) == (5, 3) for page in pages)
        assert [post.item_id for page in pages for post in page.posts] == [item_id_of(code) for code in codes]

    async def test_unbind_removes_the_binding(self, tiktok: TikTokClient) -> None:
        """D16."""
        await authorize(tiktok, "#SBX+video/30d=")
        await authorize(tiktok, "#SBX+video/60d=")
        await tiktok.unbind(
            advertiser_id=ADVERTISER_ID, access_token=ACCESS_TOKEN, item_id=item_id_of("#SBX+video/30d=")
        )
        assert await bound_item_ids(tiktok) == [item_id_of("#SBX+video/60d=")]

    async def test_unbinding_what_is_not_bound_is_not_found(self, tiktok: TikTokClient) -> None:
        await authorize(tiktok, "#SBX+video/30d=")
        with pytest.raises(TikTokRequestRejected) as caught:
            await tiktok.unbind(
                advertiser_id=OTHER_ADVERTISER_ID, access_token=ACCESS_TOKEN, item_id=item_id_of("#SBX+video/30d=")
            )
        assert (caught.value.code, caught.value.refusal) == (40007, None)

    async def test_each_sandbox_starts_empty(self, tiktok: TikTokClient, clock: Clock) -> None:
        await authorize(tiktok, "#SBX+video/30d=")
        fresh: Starlette = create_sandbox_app(now=clock)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=fresh)) as http:
            other = TikTokClient(http, base_url=BASE_URL)
            assert await bound_item_ids(other) == []


class TestFindBoundPost:
    """`find_bound_post` against the sandbox's state: whether a post is authorized to an ad account right now."""

    async def find(self, tiktok: TikTokClient, item_id: str, *, advertiser: str = ADVERTISER_ID) -> PostInfo | None:
        return await tiktok.find_bound_post(advertiser_id=advertiser, access_token=ACCESS_TOKEN, item_id=item_id)

    async def test_a_bound_post_is_found_as_tiktok_lists_it(self, tiktok: TikTokClient) -> None:
        await authorize(tiktok, "#SBX+video/30d=")
        await authorize(tiktok, "#SBX+video/60d=")
        post = await self.find(tiktok, VIDEO_30D_ITEM_ID)
        assert post is not None
        assert post.item_id == VIDEO_30D_ITEM_ID
        assert post.ad_auth_status == "AUTHORIZED"
        assert post.auth_end_at == SANDBOX_EPOCH + timedelta(days=29)

    async def test_a_post_never_bound_is_none(self, tiktok: TikTokClient) -> None:
        await authorize(tiktok, "#SBX+video/60d=")
        assert await self.find(tiktok, VIDEO_30D_ITEM_ID) is None

    async def test_a_post_bound_to_another_ad_account_is_none(self, tiktok: TikTokClient) -> None:
        await authorize(tiktok, "#SBX+video/30d=", advertiser=OTHER_ADVERTISER_ID)
        assert await self.find(tiktok, VIDEO_30D_ITEM_ID) is None
        assert await self.find(tiktok, VIDEO_30D_ITEM_ID, advertiser=OTHER_ADVERTISER_ID) is not None

    async def test_a_caption_holding_the_digits_is_not_the_post(self, tiktok: TikTokClient) -> None:
        """#SBX+mentions/one='s caption holds #SBX+video/30d='s id, and the keyword matches captions too."""
        await authorize(tiktok, "#SBX+mentions/one=")
        assert await bound_item_ids(tiktok, keyword=VIDEO_30D_ITEM_ID) == [item_id_of("#SBX+mentions/one=")]
        assert await self.find(tiktok, VIDEO_30D_ITEM_ID) is None
        await authorize(tiktok, "#SBX+video/30d=")
        post = await self.find(tiktok, VIDEO_30D_ITEM_ID)
        assert post is not None
        assert post.item_id == VIDEO_30D_ITEM_ID

    async def test_an_unbound_post_is_none_again(self, tiktok: TikTokClient) -> None:
        await authorize(tiktok, "#SBX+video/30d=")
        await tiktok.unbind(advertiser_id=ADVERTISER_ID, access_token=ACCESS_TOKEN, item_id=VIDEO_30D_ITEM_ID)
        assert await self.find(tiktok, VIDEO_30D_ITEM_ID) is None


class TestAuthorizeWhereTikTokIsUnconfirmed:
    """Whether TikTok's authorize is idempotent is unconfirmed: two codes present the answers the sandbox
    otherwise spares the service."""

    async def test_refused_twice_refuses_a_post_already_bound_as_already_authorized(self, tiktok: TikTokClient) -> None:
        await authorize(tiktok, "#SBX+authorize/refused-twice=")
        with pytest.raises(TikTokRequestRejected) as caught:
            await authorize(tiktok, "#SBX+authorize/refused-twice=")
        assert (caught.value.code, caught.value.refusal) == (40002, TikTokRefusal.already_authorized)
        assert "already been authorized" in caught.value.message
        assert await bound_item_ids(tiktok) == [REFUSED_TWICE_ITEM_ID]

    async def test_refused_twice_binds_the_first_time_for_each_ad_account(self, tiktok: TikTokClient) -> None:
        await authorize(tiktok, "#SBX+authorize/refused-twice=")
        await authorize(tiktok, "#SBX+authorize/refused-twice=", advertiser=OTHER_ADVERTISER_ID)
        assert await bound_item_ids(tiktok, advertiser=OTHER_ADVERTISER_ID) == [REFUSED_TWICE_ITEM_ID]

    async def test_refused_twice_binds_again_once_unbound(self, tiktok: TikTokClient) -> None:
        await authorize(tiktok, "#SBX+authorize/refused-twice=")
        await tiktok.unbind(advertiser_id=ADVERTISER_ID, access_token=ACCESS_TOKEN, item_id=REFUSED_TWICE_ITEM_ID)
        await authorize(tiktok, "#SBX+authorize/refused-twice=")
        assert await bound_item_ids(tiktok) == [REFUSED_TWICE_ITEM_ID]

    async def test_refused_twice_is_described_by_info_bound_or_not(self, tiktok: TikTokClient) -> None:
        assert (await info(tiktok, "#SBX+authorize/refused-twice=")).item_id == REFUSED_TWICE_ITEM_ID
        await authorize(tiktok, "#SBX+authorize/refused-twice=")
        assert (await info(tiktok, "#SBX+authorize/refused-twice=")).item_id == REFUSED_TWICE_ITEM_ID

    async def test_times_out_binds_although_the_client_gave_up(
        self, sandbox_http: httpx.AsyncClient, tiktok: TikTokClient, sent: list[httpx.Request]
    ) -> None:
        hasty = TikTokClient(sandbox_http, base_url=BASE_URL, deadline_seconds=0.2)
        with pytest.raises(TikTokTimeout, match="deadline"):
            await authorize(hasty, "#SBX+authorize/times-out=")
        assert len(sent) == 1
        assert await bound_item_ids(tiktok) == [TIMES_OUT_ITEM_ID]
        assert await tiktok.find_bound_post(
            advertiser_id=ADVERTISER_ID, access_token=ACCESS_TOKEN, item_id=TIMES_OUT_ITEM_ID
        )

    async def test_times_out_answers_info_at_once(self, sandbox_http: httpx.AsyncClient) -> None:
        hasty = TikTokClient(sandbox_http, base_url=BASE_URL, deadline_seconds=0.2)
        assert (await info(hasty, "#SBX+authorize/times-out=")).item_id == TIMES_OUT_ITEM_ID

    async def test_times_out_answers_authorize_when_given_the_time(self, clock: Clock) -> None:
        app = create_sandbox_app(slow_seconds=0.01, now=clock)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app)) as http:
            client = TikTokClient(http, base_url=BASE_URL)
            await authorize(client, "#SBX+authorize/times-out=")
            await authorize(client, "#SBX+authorize/times-out=")  # idempotent, only slow
            assert await bound_item_ids(client) == [TIMES_OUT_ITEM_ID]


class TestSandboxLogs:
    async def test_the_sandbox_logs_no_code_or_token(self, tiktok: TikTokClient) -> None:
        with capture_logs() as events:
            await info(tiktok, "#SBX+video/30d=")
            await authorize(tiktok, "#SBX+duet/secondary=", "#SBX+duet/original=")
            with pytest.raises(TikTokRequestRejected):
                await info(tiktok, "#SBX+code/deleted=")
        sandbox_events = [event for event in events if event["event"] == "sandbox.request"]
        assert len(sandbox_events) == 3
        logged = repr(events)
        for secret in ("#SBX", "%23SBX", ACCESS_TOKEN):
            assert secret not in logged


IDENTITY_VIDEO_INFO = f"http://127.0.0.1:8001{IDENTITY_VIDEO_INFO_PATH}"


async def own_info(
    tiktok: TikTokClient,
    item_id: str,
    *,
    identity_type: str,
    identity_id: str,
    bc_id: str | None = None,
    token: str = ACCESS_TOKEN,
    advertiser: str = ADVERTISER_ID,
) -> PostInfo:
    return await tiktok.own_post_info(
        advertiser_id=advertiser,
        access_token=token,
        identity_type=identity_type,
        identity_id=identity_id,
        item_id=item_id,
        identity_authorized_bc_id=bc_id,
    )


async def seeded_own_info(tiktok: TikTokClient, post: OwnPost) -> PostInfo:
    identity = post.identity
    return await own_info(
        tiktok,
        post.item_id,
        identity_type=identity.identity_type,
        identity_id=identity.identity_id,
        bc_id=identity.identity_authorized_bc_id,
    )


def own_params(post: OwnPost) -> dict[str, str]:
    params = {
        "advertiser_id": ADVERTISER_ID,
        "identity_type": post.identity.identity_type,
        "identity_id": post.identity.identity_id,
        "item_id": post.item_id,
    }
    if post.identity.identity_authorized_bc_id is not None:
        params["identity_authorized_bc_id"] = post.identity.identity_authorized_bc_id
    return params


class TestOwnPostSeed:
    """The brand's own posts (D1): stable ids, apart from the creators' posts and identities."""

    def test_item_ids_are_stable_unique_19_digit_strings_apart_from_the_codes_posts(self) -> None:
        own_ids = [post.item_id for post in OWN_POSTS]
        code_ids = {demo.post.item_id for demo in DEMO_CODES if demo.post is not None}
        assert len(own_ids) == len(set(own_ids))
        assert all(item_id.isdigit() and len(item_id) == 19 for item_id in own_ids)
        assert not set(own_ids) & code_ids

    def test_identities_are_own_ones_apart_from_the_creators(self) -> None:
        creators = {demo.post.creator.identity_id for demo in DEMO_CODES if demo.post is not None}
        for post in OWN_POSTS:
            identity = post.identity
            assert identity.identity_type in ("TT_USER", "BC_AUTH_TT")
            assert identity.identity_id.isdigit() and len(identity.identity_id) == 19
            assert identity.identity_id not in creators
            assert (identity.identity_type == "BC_AUTH_TT") == (identity.identity_authorized_bc_id is not None)
        assert OWN_TT_USER.identity_id == OWN_TT_USER_IDENTITY_ID
        assert (OWN_BC_AUTH_TT.identity_id, OWN_BC_AUTH_TT.identity_authorized_bc_id) == (OWN_BC_IDENTITY_ID, OWN_BC_ID)

    def test_the_seeded_situations(self) -> None:
        def kinds(identity: object) -> list[tuple[str, str]]:
            return [(post.item_type, post.status) for post in OWN_POSTS if post.identity == identity]

        assert sorted(kinds(OWN_TT_USER)) == sorted(
            [
                ("VIDEO", "ITEM_STATUS_HESITATE_RECOMMEND"),
                ("VIDEO", "ITEM_STATUS_HESITATE_RECOMMEND"),
                ("VIDEO", "ITEM_STATUS_ONLY_AUTHOR_SEE"),
                ("CAROUSEL", "ITEM_STATUS_HESITATE_RECOMMEND"),
                ("VIDEO", "ITEM_STATUS_USER_DELETE"),
                ("VIDEO", "ITEM_STATUS_AUDIT_DELETE"),
            ]
        )
        assert kinds(OWN_BC_AUTH_TT) == [("VIDEO", "ITEM_STATUS_HESITATE_RECOMMEND")]
        assert all(post.description for post in OWN_POSTS)


class TestIdentityVideoInfo:
    """`identity/video/info/` through the real client: each own post is answered for its identity, and anything
    else is 40007, which the client reads as post_not_found_for_identity."""

    @pytest.mark.parametrize("post", OWN_POSTS, ids=[post.item_id for post in OWN_POSTS])
    async def test_each_own_post_is_answered_for_its_identity(self, tiktok: TikTokClient, post: OwnPost) -> None:
        info = await seeded_own_info(tiktok, post)
        assert info.item_id == post.item_id
        assert info.item_type is ItemType(post.item_type)
        assert info.caption == post.text
        assert info.raw_status == post.status
        assert info.status is PostStatus.parse(post.status)
        assert (info.identity_type, info.identity_id) == (post.identity.identity_type, post.identity.identity_id)
        assert info.tiktok_name is None
        assert info.duration_seconds == post.duration
        assert (info.ad_auth_status, info.auth_start_at, info.auth_end_at) == (None, None, None)

    @pytest.mark.parametrize(
        ("item_id", "status", "item_type"),
        [
            (OWN_VIDEO_ITEM_ID, PostStatus.public, ItemType.video),
            (OWN_VIDEO_B_ITEM_ID, PostStatus.public, ItemType.video),
            (OWN_PRIVATE_ITEM_ID, PostStatus.private, ItemType.video),
            (OWN_CAROUSEL_ITEM_ID, PostStatus.public, ItemType.carousel),
            (OWN_DELETED_ITEM_ID, PostStatus.deleted, ItemType.video),
            (OWN_BANNED_ITEM_ID, PostStatus.banned, ItemType.video),
            (OWN_BC_VIDEO_ITEM_ID, PostStatus.public, ItemType.video),
        ],
    )
    async def test_what_each_seeded_post_is(
        self, tiktok: TikTokClient, item_id: str, status: PostStatus, item_type: ItemType
    ) -> None:
        """D5, D8: described, not refused; refusing is the service's decision."""
        info = await seeded_own_info(tiktok, own_post(item_id))
        assert (info.status, info.item_type) == (status, item_type)

    async def test_the_answer_is_a_video_detail_without_window_or_name(self, sandbox_http: httpx.AsyncClient) -> None:
        headers = {"Access-Token": ACCESS_TOKEN}
        video = await sandbox_http.get(
            IDENTITY_VIDEO_INFO, params=own_params(own_post(OWN_VIDEO_ITEM_ID)), headers=headers
        )
        carousel = await sandbox_http.get(
            IDENTITY_VIDEO_INFO, params=own_params(own_post(OWN_CAROUSEL_ITEM_ID)), headers=headers
        )
        for response in (video, carousel):
            body = response.json()
            assert (response.status_code, body["code"]) == (200, 0)
            assert set(body["data"]) == {"video_detail"}
            assert set(body["data"]["video_detail"]) == {
                "item_id",
                "item_type",
                "status",
                "text",
                "video_info",
                "carousel_info",
            }
        video_detail = video.json()["data"]["video_detail"]
        carousel_detail = carousel.json()["data"]["video_detail"]
        assert video_detail["video_info"]["duration"] == 24.0
        assert video_detail["carousel_info"] is None
        assert carousel_detail["video_info"] is None
        assert carousel_detail["carousel_info"]["image_info"]

    async def test_tt_user_is_answered_with_a_business_center_id_it_does_not_need(self, tiktok: TikTokClient) -> None:
        info = await own_info(
            tiktok, OWN_VIDEO_ITEM_ID, identity_type="TT_USER", identity_id=OWN_TT_USER_IDENTITY_ID, bc_id=OWN_BC_ID
        )
        assert info.item_id == OWN_VIDEO_ITEM_ID

    @pytest.mark.parametrize(
        ("item_id", "identity_type", "identity_id", "bc_id"),
        [
            pytest.param("7380112233445567999", "TT_USER", OWN_TT_USER_IDENTITY_ID, None, id="unknown-item"),
            pytest.param(VIDEO_30D_ITEM_ID, "TT_USER", OWN_TT_USER_IDENTITY_ID, None, id="a-creators-post"),
            pytest.param(OWN_BC_VIDEO_ITEM_ID, "TT_USER", OWN_TT_USER_IDENTITY_ID, None, id="another-identitys"),
            pytest.param(OWN_VIDEO_ITEM_ID, "TT_USER", OWN_BC_IDENTITY_ID, None, id="wrong-identity-id"),
            pytest.param(OWN_VIDEO_ITEM_ID, "TT_USER", "7302000000000000999", None, id="unknown-identity"),
            pytest.param(OWN_VIDEO_ITEM_ID, "BC_AUTH_TT", OWN_TT_USER_IDENTITY_ID, OWN_BC_ID, id="wrong-identity-type"),
            pytest.param(OWN_BC_VIDEO_ITEM_ID, "BC_AUTH_TT", OWN_BC_IDENTITY_ID, "7303000000000000999", id="wrong-bc"),
            pytest.param(OWN_BC_VIDEO_ITEM_ID, "TT_USER", OWN_BC_IDENTITY_ID, OWN_BC_ID, id="bc-post-as-tt-user"),
            pytest.param(OWN_VIDEO_ITEM_ID, "AUTH_CODE", OWN_TT_USER_IDENTITY_ID, None, id="own-post-as-auth-code"),
        ],
    )
    async def test_a_post_not_under_that_identity_is_the_refusal(
        self, tiktok: TikTokClient, item_id: str, identity_type: str, identity_id: str, bc_id: str | None
    ) -> None:
        with pytest.raises(TikTokRequestRejected) as caught:
            await own_info(tiktok, item_id, identity_type=identity_type, identity_id=identity_id, bc_id=bc_id)
        error = caught.value
        assert (error.code, error.refusal) == (40007, TikTokRefusal.post_not_found_for_identity)
        assert error.message == POST_NOT_UNDER_IDENTITY
        assert error.request_id

    @pytest.mark.parametrize("missing", ["advertiser_id", "identity_type", "identity_id", "item_id"])
    async def test_a_missing_parameter_is_40002(self, sandbox_http: httpx.AsyncClient, missing: str) -> None:
        params = own_params(own_post(OWN_VIDEO_ITEM_ID))
        del params[missing]
        response = await sandbox_http.get(IDENTITY_VIDEO_INFO, params=params, headers={"Access-Token": ACCESS_TOKEN})
        body = response.json()
        assert (response.status_code, body["code"]) == (200, 40002)
        assert missing in body["message"]

    async def test_bc_auth_tt_without_its_business_center_is_40002(self, tiktok: TikTokClient) -> None:
        with pytest.raises(TikTokRequestRejected) as caught:
            await own_info(tiktok, OWN_BC_VIDEO_ITEM_ID, identity_type="BC_AUTH_TT", identity_id=OWN_BC_IDENTITY_ID)
        assert (caught.value.code, caught.value.refusal) == (40002, None)
        assert "identity_authorized_bc_id" in caught.value.message

    async def test_an_unknown_identity_type_is_40002(self, sandbox_http: httpx.AsyncClient) -> None:
        params = own_params(own_post(OWN_VIDEO_ITEM_ID)) | {"identity_type": "TT_USERS"}
        response = await sandbox_http.get(IDENTITY_VIDEO_INFO, params=params, headers={"Access-Token": ACCESS_TOKEN})
        assert response.json()["code"] == 40002

    async def test_the_path_without_its_trailing_slash_is_a_plain_404(self, sandbox_http: httpx.AsyncClient) -> None:
        response = await sandbox_http.get(
            IDENTITY_VIDEO_INFO.rstrip("/"),
            params=own_params(own_post(OWN_VIDEO_ITEM_ID)),
            headers={"Access-Token": ACCESS_TOKEN},
        )
        assert response.status_code == 404

    @pytest.mark.parametrize(("token", "code"), [("expired-token", 40102), ("invalid-token", 40105), ("", 40104)])
    async def test_bad_tokens_are_refused(self, tiktok: TikTokClient, token: str, code: int) -> None:
        with pytest.raises(TikTokAccessTokenInvalid) as caught:
            await own_info(
                tiktok, OWN_VIDEO_ITEM_ID, identity_type="TT_USER", identity_id=OWN_TT_USER_IDENTITY_ID, token=token
            )
        assert caught.value.code == code

    async def test_an_advertiser_that_does_not_exist_is_40300(self, tiktok: TikTokClient) -> None:
        with pytest.raises(TikTokPermissionDenied):
            await own_info(
                tiktok,
                OWN_VIDEO_ITEM_ID,
                identity_type="TT_USER",
                identity_id=OWN_TT_USER_IDENTITY_ID,
                advertiser="4030000000000000000",
            )

    async def test_auth_code_describes_a_creators_post_bound_to_the_ad_account_with_its_window(
        self, tiktok: TikTokClient
    ) -> None:
        post = demo_code("#SBX+video/30d=").post
        assert post is not None
        creator_id = post.creator.identity_id
        ask = {"identity_type": IdentityType.auth_code, "identity_id": creator_id}
        with pytest.raises(TikTokRequestRejected) as before:
            await own_info(tiktok, VIDEO_30D_ITEM_ID, **ask)
        assert before.value.refusal is TikTokRefusal.post_not_found_for_identity

        await authorize(tiktok, "#SBX+video/30d=")
        info = await own_info(tiktok, VIDEO_30D_ITEM_ID, **ask)
        assert (info.item_id, info.identity_type, info.identity_id) == (VIDEO_30D_ITEM_ID, "AUTH_CODE", creator_id)
        assert info.ad_auth_status == "AUTHORIZED"
        assert info.auth_start_at == SANDBOX_EPOCH - timedelta(days=1)
        assert info.auth_end_at == SANDBOX_EPOCH + timedelta(days=29)

        with pytest.raises(TikTokRequestRejected) as other_ad_account:
            await own_info(tiktok, VIDEO_30D_ITEM_ID, **ask, advertiser=OTHER_ADVERTISER_ID)
        assert other_ad_account.value.refusal is TikTokRefusal.post_not_found_for_identity
        with pytest.raises(TikTokRequestRejected) as other_creator:
            await own_info(tiktok, VIDEO_30D_ITEM_ID, identity_type="AUTH_CODE", identity_id="7301000000000000002")
        assert other_creator.value.refusal is TikTokRefusal.post_not_found_for_identity

        await tiktok.unbind(advertiser_id=ADVERTISER_ID, access_token=ACCESS_TOKEN, item_id=VIDEO_30D_ITEM_ID)
        with pytest.raises(TikTokRequestRejected):
            await own_info(tiktok, VIDEO_30D_ITEM_ID, **ask)

    async def test_the_sandbox_logs_no_token(self, tiktok: TikTokClient) -> None:
        with capture_logs() as events:
            await seeded_own_info(tiktok, own_post(OWN_VIDEO_ITEM_ID))
            with pytest.raises(TikTokRequestRejected):
                await own_info(tiktok, OWN_VIDEO_ITEM_ID, identity_type="TT_USER", identity_id=OWN_BC_IDENTITY_ID)
        sandbox_events = [event for event in events if event["event"] == "sandbox.request"]
        assert [(event["path"], event["tiktok_code"]) for event in sandbox_events] == [
            (IDENTITY_VIDEO_INFO_PATH, 0),
            (IDENTITY_VIDEO_INFO_PATH, 40007),
        ]
        assert ACCESS_TOKEN not in repr(events)


EXPIRED_ORIGINAL_DUET = "#SBX+duet-expired-original/secondary="
EXPIRED_ORIGINAL = "#SBX+duet-expired-original/original="
SHORT_ORIGINAL_DUET = "#SBX+duet-short-original/secondary="
SHORT_ORIGINAL = "#SBX+duet-short-original/original="


class TestDuetPairs:
    """D12 pairs whose original's code is the problem: expired, or ending before the Duet's own window."""

    def test_the_pairs_are_seeded_with_stable_ids(self) -> None:
        assert item_id_of(EXPIRED_ORIGINAL_DUET) == DUET_OF_EXPIRED_ORIGINAL_ITEM_ID == "7380112233445566717"
        assert item_id_of(EXPIRED_ORIGINAL) == DUET_EXPIRED_ORIGINAL_ITEM_ID == "7380112233445566704"
        assert item_id_of(SHORT_ORIGINAL_DUET) == DUET_OF_SHORT_ORIGINAL_ITEM_ID == "7380112233445566718"
        assert item_id_of(SHORT_ORIGINAL) == DUET_SHORT_ORIGINAL_ITEM_ID == "7380112233445566705"
        assert [demo_code(code).window_days for code in (SHORT_ORIGINAL_DUET, SHORT_ORIGINAL)] == [60, 7]

    async def test_info_describes_the_duet_and_its_expired_original(self, tiktok: TikTokClient) -> None:
        duet = await info(tiktok, EXPIRED_ORIGINAL_DUET)
        original = await info(tiktok, EXPIRED_ORIGINAL)
        assert (duet.ad_auth_status, duet.duet_original_item_id) == ("AUTHORIZED", DUET_EXPIRED_ORIGINAL_ITEM_ID)
        assert duet.auth_end_at == SANDBOX_EPOCH + timedelta(days=29)
        assert (original.item_id, original.ad_auth_status) == (DUET_EXPIRED_ORIGINAL_ITEM_ID, "EXPIRED")
        assert original.auth_end_at is not None
        assert original.auth_end_at < SANDBOX_EPOCH

    @pytest.mark.parametrize(
        ("code", "original"),
        [
            pytest.param(EXPIRED_ORIGINAL_DUET, EXPIRED_ORIGINAL, id="pair"),
            pytest.param(EXPIRED_ORIGINAL, EXPIRED_ORIGINAL_DUET, id="swapped"),
            pytest.param(EXPIRED_ORIGINAL, None, id="original-alone"),
        ],
    )
    async def test_an_expired_originals_code_is_refused_as_expired(
        self, tiktok: TikTokClient, code: str, original: str | None
    ) -> None:
        with pytest.raises(TikTokRequestRejected) as caught:
            await authorize(tiktok, code, original)
        assert (caught.value.code, caught.value.refusal) == (40002, TikTokRefusal.auth_code_expired)
        assert await bound_item_ids(tiktok) == []

    async def test_the_refusal_does_not_say_which_code_expired(self, tiktok: TikTokClient, clock: Clock) -> None:
        """Never kinder than TikTok: the answer for the original's code is word for word the Duet's own."""
        with pytest.raises(TikTokRequestRejected) as originals:
            await authorize(tiktok, EXPIRED_ORIGINAL_DUET, EXPIRED_ORIGINAL)
        clock.advance(timedelta(days=30))
        with pytest.raises(TikTokRequestRejected) as duets:
            await authorize(tiktok, "#SBX+duet/secondary=", "#SBX+duet/original=")
        assert originals.value.message == duets.value.message

    async def test_the_duet_without_its_originals_code_is_refused(self, tiktok: TikTokClient) -> None:
        with pytest.raises(TikTokRequestRejected) as caught:
            await authorize(tiktok, EXPIRED_ORIGINAL_DUET)
        assert caught.value.refusal is TikTokRefusal.original_post_auth_code_required

    @pytest.mark.parametrize(
        ("secondary", "wrong"),
        [
            (SHORT_ORIGINAL_DUET, EXPIRED_ORIGINAL),
            (EXPIRED_ORIGINAL_DUET, SHORT_ORIGINAL),
            (SHORT_ORIGINAL_DUET, "#SBX+duet/original="),
            (SHORT_ORIGINAL_DUET, "#SBX+original/unrelated="),
            ("#SBX+duet/secondary=", SHORT_ORIGINAL),
        ],
    )
    async def test_another_originals_code_does_not_match(
        self, tiktok: TikTokClient, secondary: str, wrong: str
    ) -> None:
        with pytest.raises(TikTokRequestRejected) as caught:
            await authorize(tiktok, secondary, wrong)
        assert caught.value.refusal is TikTokRefusal.original_post_auth_code_mismatch
        assert await bound_item_ids(tiktok) == []

    async def test_the_pair_binds_both_posts_each_with_its_own_window(self, tiktok: TikTokClient) -> None:
        await authorize(tiktok, SHORT_ORIGINAL_DUET, SHORT_ORIGINAL)
        page = await tiktok.list_posts(advertiser_id=ADVERTISER_ID, access_token=ACCESS_TOKEN)
        ends = {post.item_id: post.auth_end_at for post in page.posts}
        assert ends == {
            DUET_OF_SHORT_ORIGINAL_ITEM_ID: SANDBOX_EPOCH + timedelta(days=59),
            DUET_SHORT_ORIGINAL_ITEM_ID: SANDBOX_EPOCH + timedelta(days=6),
        }

    async def test_once_the_original_expires_the_pair_is_refused_and_the_duet_stays_bound(
        self, tiktok: TikTokClient, clock: Clock
    ) -> None:
        await authorize(tiktok, SHORT_ORIGINAL_DUET, SHORT_ORIGINAL)
        clock.advance(timedelta(days=6, seconds=1))
        page = await tiktok.list_posts(advertiser_id=ADVERTISER_ID, access_token=ACCESS_TOKEN)
        statuses = {post.item_id: post.ad_auth_status for post in page.posts}
        assert statuses == {DUET_OF_SHORT_ORIGINAL_ITEM_ID: "AUTHORIZED", DUET_SHORT_ORIGINAL_ITEM_ID: "EXPIRED"}
        assert (await info(tiktok, SHORT_ORIGINAL_DUET)).ad_auth_status == "AUTHORIZED"

        with pytest.raises(TikTokRequestRejected) as caught:
            await authorize(tiktok, SHORT_ORIGINAL_DUET, SHORT_ORIGINAL)
        assert caught.value.refusal is TikTokRefusal.auth_code_expired
        assert sorted(await bound_item_ids(tiktok)) == sorted(
            [DUET_OF_SHORT_ORIGINAL_ITEM_ID, DUET_SHORT_ORIGINAL_ITEM_ID]
        )

    async def test_swapped_codes_authorize_only_the_original(self, tiktok: TikTokClient) -> None:
        await authorize(tiktok, SHORT_ORIGINAL, SHORT_ORIGINAL_DUET)
        assert await bound_item_ids(tiktok) == [DUET_SHORT_ORIGINAL_ITEM_ID]


class TestBulkSeed:
    """The bulk family `#SBX+bulk/<n>=`: 10,000 codes, none of them in DEMO_CODES, built on demand."""

    def test_item_ids_are_stable_unique_and_apart_from_every_seeded_post(self) -> None:
        bulk_ids = [bulk_item_id(n) for n in range(BULK_CODE_COUNT)]
        assert len(set(bulk_ids)) == BULK_CODE_COUNT
        assert all(item_id.isdigit() and len(item_id) == 19 for item_id in bulk_ids)
        assert (bulk_ids[0], bulk_ids[7], bulk_ids[-1]) == (
            "7380112233450000000",
            "7380112233450000007",
            "7380112233450009999",
        )
        assert all(item_id.startswith(BULK_ITEM_ID_PREFIX) for item_id in bulk_ids)
        seeded = {demo.post.item_id for demo in DEMO_CODES if demo.post is not None}
        own = {post.item_id for post in OWN_POSTS}
        assert not set(bulk_ids) & (seeded | own)

    def test_each_code_is_a_valid_30_day_video_of_one_of_five_creators(self) -> None:
        for n in (0, 1, 4, 5, 7, 9999):
            demo = demo_code(bulk_code(n))
            assert demo.post is not None
            assert (demo.code, demo.post.item_id) == (f"#SBX+bulk/{n}=", bulk_item_id(n))
            assert (demo.window_days, demo.behaviour, demo.renews) == (BULK_WINDOW_DAYS, "valid", None)
            assert (demo.post.item_type, demo.post.status) == ("VIDEO", "HESITATE_RECOMMEND")
            assert demo.post.creator == BULK_CREATORS[n % 5]
            assert demo.description

    def test_the_creators_are_stable_and_apart_from_the_other_identities(self) -> None:
        ids = [creator.identity_id for creator in BULK_CREATORS]
        assert ids == [f"730100000000000010{k}" for k in range(1, 6)]
        assert len({creator.tiktok_name for creator in BULK_CREATORS}) == 5
        seeded = {demo.post.creator.identity_id for demo in DEMO_CODES if demo.post is not None}
        own = {post.identity.identity_id for post in OWN_POSTS}
        assert not set(ids) & (seeded | own)

    def test_codes_are_built_once_and_kept(self) -> None:
        assert find_demo_code(bulk_code(42)) is find_demo_code(bulk_code(42))

    def test_demo_codes_list_only_the_seeded_codes(self) -> None:
        assert not [demo.code for demo in DEMO_CODES if demo.code.startswith("#SBX+bulk/")]
        assert all(find_demo_code(demo.code) is CODES_BY_TEXT[demo.code] for demo in DEMO_CODES)

    @pytest.mark.parametrize(
        "code",
        [
            "#SBX+bulk/007=",
            "#SBX+bulk/00=",
            "#SBX+bulk/+7=",
            "#SBX+bulk/-1=",
            "#SBX+bulk/10000=",
            "#SBX+bulk/=",
            "#SBX+bulk/7",
            "#SBX+bulk/7 =",
            "#SBX+bulk/\u0667=",  # ARABIC-INDIC DIGIT SEVEN: a digit to str.isdigit, not to TikTok
            "#SBX+bulk/<n>=",
            "#sbx+bulk/7=",
        ],
    )
    def test_only_the_plain_decimal_spelling_is_known(self, code: str) -> None:
        assert find_demo_code(code) is None
        with pytest.raises(KeyError):
            demo_code(code)

    @pytest.mark.parametrize("n", [-1, BULK_CODE_COUNT])
    def test_there_is_no_code_outside_0_to_9999(self, n: int) -> None:
        with pytest.raises(ValueError, match="0 to 9999"):
            bulk_code(n)
        with pytest.raises(ValueError, match="0 to 9999"):
            bulk_item_id(n)


class TestBulkCodes:
    """Bulk codes through the real client, on every endpoint, exactly like seeded ones."""

    @pytest.mark.parametrize("n", [0, 7, 1234, 9999])
    async def test_info_finds_each(self, tiktok: TikTokClient, n: int) -> None:
        post = await info(tiktok, bulk_code(n))
        assert post.item_id == bulk_item_id(n)
        assert (post.identity_type, post.identity_id) == ("AUTH_CODE", BULK_CREATORS[n % 5].identity_id)
        assert post.tiktok_name == BULK_CREATORS[n % 5].tiktok_name
        assert (post.item_type, post.status, post.ad_auth_status) == (ItemType.video, PostStatus.public, "AUTHORIZED")
        assert post.auth_start_at == SANDBOX_EPOCH - timedelta(days=1)
        assert post.auth_end_at == SANDBOX_EPOCH + timedelta(days=29)
        assert post.duet_original_item_id is None

    async def test_the_codes_are_spread_over_five_creators(self, tiktok: TikTokClient) -> None:
        creators = [(await info(tiktok, bulk_code(n))).identity_id for n in range(10)]
        assert creators == [creator.identity_id for creator in BULK_CREATORS] * 2

    @pytest.mark.parametrize("code", ["#SBX+bulk/007=", "#SBX+bulk/10000=", "#SBX+bulk/-1="])
    async def test_another_spelling_is_an_unknown_code(self, tiktok: TikTokClient, code: str) -> None:
        with pytest.raises(TikTokRequestRejected) as caught:
            await info(tiktok, code)
        assert (caught.value.code, caught.value.refusal) == (40007, TikTokRefusal.auth_code_not_found)
        with pytest.raises(TikTokRequestRejected) as applied:
            await authorize(tiktok, code)
        assert (applied.value.code, applied.value.refusal) == (40007, TikTokRefusal.auth_code_not_found)

    async def test_authorize_binds_list_finds_and_unbind_removes(self, tiktok: TikTokClient) -> None:
        numbers = [0, 1, 2, 3, 4, 5, 9999]
        for n in numbers:
            await authorize(tiktok, bulk_code(n))
        await authorize(tiktok, bulk_code(3))  # D2: the same authorization again
        assert await bound_item_ids(tiktok) == [bulk_item_id(n) for n in numbers]
        assert await bound_item_ids(tiktok, advertiser=OTHER_ADVERTISER_ID) == []

        for n in numbers:
            assert await bound_item_ids(tiktok, keyword=bulk_item_id(n)) == [bulk_item_id(n)]
        found = await tiktok.find_bound_post(
            advertiser_id=ADVERTISER_ID, access_token=ACCESS_TOKEN, item_id=bulk_item_id(9999)
        )
        assert found is not None
        assert found.auth_end_at == SANDBOX_EPOCH + timedelta(days=29)
        bound = await own_info(
            tiktok, bulk_item_id(5), identity_type="AUTH_CODE", identity_id=BULK_CREATORS[0].identity_id
        )
        assert bound.item_id == bulk_item_id(5)

        await tiktok.unbind(advertiser_id=ADVERTISER_ID, access_token=ACCESS_TOKEN, item_id=bulk_item_id(9999))
        assert await bound_item_ids(tiktok) == [bulk_item_id(n) for n in numbers[:-1]]
        assert (
            await tiktok.find_bound_post(
                advertiser_id=ADVERTISER_ID, access_token=ACCESS_TOKEN, item_id=bulk_item_id(9999)
            )
            is None
        )
        with pytest.raises(TikTokRequestRejected) as again:
            await tiktok.unbind(advertiser_id=ADVERTISER_ID, access_token=ACCESS_TOKEN, item_id=bulk_item_id(9999))
        assert again.value.code == 40007

    async def test_list_entries_carry_the_bulk_code(
        self, tiktok: TikTokClient, sandbox_http: httpx.AsyncClient
    ) -> None:
        await authorize(tiktok, bulk_code(7))
        response = await sandbox_http.get(
            f"{API}/list/", params={"advertiser_id": ADVERTISER_ID}, headers={"Access-Token": ACCESS_TOKEN}
        )
        (entry,) = response.json()["data"]["list"]
        assert entry["item_info"]["auth_code"] == "#SBX+bulk/7="

    async def test_a_bulk_code_is_no_duets_original(self, tiktok: TikTokClient) -> None:
        with pytest.raises(TikTokRequestRejected) as caught:
            await authorize(tiktok, "#SBX+duet/secondary=", bulk_code(1))
        assert caught.value.refusal is TikTokRefusal.original_post_auth_code_mismatch


class FakeMonotonic:
    """A monotonic clock moved by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def sandbox_of(app: Starlette) -> Sandbox:
    sandbox = app.state.sandbox
    assert isinstance(sandbox, Sandbox)
    return sandbox


class TestCallCounting:
    """`Sandbox.calls` and `max_calls_in_any_second()`: how hard a client pressed TikTok."""

    @pytest.mark.parametrize(
        ("times", "most"),
        [
            pytest.param([], 0, id="no-calls"),
            pytest.param([5.0], 1, id="one"),
            pytest.param([0.0, 0.5, 0.999], 3, id="within-a-second"),
            pytest.param([0.0, 1.0, 2.0, 3.0], 1, id="exactly-a-second-apart"),
            pytest.param([0.0, 0.2, 0.4, 0.9999, 1.0, 1.1, 5.0], 5, id="the-busiest-second-starts-late"),
            pytest.param([3.5, 0.1, 3.0, 0.2, 3.9, 0.3, 3.2], 4, id="unsorted"),
            pytest.param([2.0] * 6 + [2.999999], 7, id="ties"),
            pytest.param([0.0, 0.6, 1.2, 1.8, 2.4], 2, id="evenly-spread"),
        ],
    )
    def test_max_calls_in_any_second_over_a_fake_sequence(
        self, sandbox_app: Starlette, times: list[float], most: int
    ) -> None:
        sandbox = sandbox_of(sandbox_app)
        sandbox.calls = [(moment, f"{API_PREFIX}/info/") for moment in times]
        assert sandbox.max_calls_in_any_second() == most

    async def test_every_request_is_recorded_as_it_arrives(
        self, sandbox_app: Starlette, tiktok: TikTokClient, sandbox_http: httpx.AsyncClient
    ) -> None:
        sandbox = sandbox_of(sandbox_app)
        fake = FakeMonotonic()
        sandbox.monotonic = fake
        assert (sandbox.calls, sandbox.max_calls_in_any_second()) == ([], 0)

        await info(tiktok, "#SBX+video/30d=")
        fake.now += 0.4
        await authorize(tiktok, bulk_code(1))
        fake.now += 0.5
        with pytest.raises(TikTokRequestRejected):
            await info(tiktok, "#SBX+never/issued=")  # refused, still a call
        fake.now += 0.1  # 1.0 s after the first: a second window of its own
        await sandbox_http.get(f"{API}/list", headers={"Access-Token": ACCESS_TOKEN})  # a 404, still a call
        await seeded_own_info(tiktok, own_post(OWN_VIDEO_ITEM_ID))

        assert sandbox.calls == [
            (100.0, f"{API_PREFIX}/info/"),
            (100.4, f"{API_PREFIX}/authorize/"),
            (100.9, f"{API_PREFIX}/info/"),
            (101.0, f"{API_PREFIX}/list"),
            (101.0, IDENTITY_VIDEO_INFO_PATH),
        ]
        assert sandbox.max_calls_in_any_second() == 4  # [100.4, 101.4)

    async def test_retries_are_calls_too(
        self, sandbox_app: Starlette, tiktok: TikTokClient, sent: list[httpx.Request]
    ) -> None:
        sandbox = sandbox_of(sandbox_app)
        sandbox.monotonic = FakeMonotonic()
        await info(tiktok, "#SBX+fault/flaky=")
        assert len(sandbox.calls) == len(sent) == 3
        assert sandbox.max_calls_in_any_second() == 3

    async def test_real_calls_are_recorded_on_the_monotonic_clock(
        self, sandbox_app: Starlette, tiktok: TikTokClient, sent: list[httpx.Request]
    ) -> None:
        sandbox = sandbox_of(sandbox_app)
        before = time.monotonic()
        for n in range(5):
            await info(tiktok, bulk_code(n))
        after = time.monotonic()
        times = [moment for moment, _ in sandbox.calls]
        assert len(times) == len(sent) == 5
        assert times == sorted(times)
        assert before <= times[0] and times[-1] <= after
        assert {path for _, path in sandbox.calls} == {f"{API_PREFIX}/info/"}
        if after - before < 1.0:
            assert sandbox.max_calls_in_any_second() == 5
        else:  # a very slow machine: at least the calls of one second
            assert 1 <= sandbox.max_calls_in_any_second() <= 5

    async def test_each_sandbox_counts_its_own_calls(self, tiktok: TikTokClient, clock: Clock) -> None:
        await info(tiktok, "#SBX+video/30d=")
        assert sandbox_of(create_sandbox_app(now=clock)).calls == []
