"""The TikTok client, specified against a scripted transport: what goes on the wire, how answers are read,
which errors are retried and how the deadline and the logs behave (tiktok-business-api.md)."""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import stamina
from structlog.testing import capture_logs

from app.tiktok.client import TikTokClient, classify_error
from app.tiktok.errors import (
    SparkCodeProblem,
    TikTokAccessTokenInvalid,
    TikTokBadResponse,
    TikTokError,
    TikTokPermissionDenied,
    TikTokRateLimited,
    TikTokRequestRejected,
    TikTokTimeout,
    TikTokTransientError,
    TikTokUnavailable,
)
from app.tiktok.models import ItemType, PostInfo, PostStatus
from tests.tiktok.conftest import ACCESS_TOKEN, ADVERTISER_ID, BASE_URL, ScriptedFactory, envelope

CODE = "#tXWm+UIbX/sLfLzb=="  # the shape of a real code: every character that needs URL-encoding


def post_data(**item_overrides: Any) -> dict[str, Any]:
    """`tt_video/info` data as TikTok documents it."""
    item: dict[str, Any] = {
        "item_id": "7380112233445566002",
        "item_type": "VIDEO",
        "text": "Unboxing the new trail shoes",
        "status": "HESITATE_RECOMMEND",
        "duet_original_item_id": None,
        "stitch_original_item_id": None,
        "is_multi_duet_stitch": False,
        "mentioned_item_ids": [],
    }
    item.update(item_overrides)
    return {
        "item_info": item,
        "user_info": {"identity_id": "7301000000000000001", "identity_type": "AUTH_CODE", "tiktok_name": "ana"},
        "video_info": {
            "duration": 45.0,
            "width": 720,
            "height": 1280,
            "poster_url": "https://p16-sign.example/poster.jpeg?x-expires=1",
            "preview_url": "https://v16-sign.example/preview.mp4?x-expires=1",
        },
        "auth_info": {
            "ad_auth_status": "AUTHORIZED",
            "auth_start_time": "2025-05-19 11:40:50",
            "auth_end_time": "2025-06-18 11:40:50",
        },
    }


async def info(client: TikTokClient, code: str = CODE) -> PostInfo:
    return await client.post_info(advertiser_id=ADVERTISER_ID, access_token=ACCESS_TOKEN, auth_code=code)


class TestRequestShape:
    """What the client puts on the wire (tiktok-business-api.md section 1)."""

    async def test_info_is_a_get_to_the_path_with_its_trailing_slash(self, scripted: ScriptedFactory) -> None:
        client, script = scripted(envelope(post_data()))
        await info(client)
        (request,) = script.requests
        assert request.method == "GET"
        assert request.url.path == "/open_api/v1.3/tt_video/info/"

    async def test_access_token_goes_in_its_own_header_without_bearer(self, scripted: ScriptedFactory) -> None:
        client, script = scripted(envelope(post_data()))
        await info(client)
        (request,) = script.requests
        assert request.headers["Access-Token"] == ACCESS_TOKEN
        assert "Authorization" not in request.headers

    async def test_code_with_hash_plus_slash_equals_round_trips_exactly(self, scripted: ScriptedFactory) -> None:
        client, script = scripted(envelope(post_data()))
        await info(client)
        (request,) = script.requests
        raw_query = request.url.query.decode()
        # An unencoded `+` would arrive as a space, an unencoded `#` would end the URL.
        assert "+" not in raw_query
        assert "#" not in raw_query
        assert "auth_code=%23tXWm%2BUIbX%2FsLfLzb%3D%3D" in raw_query
        assert request.url.params["auth_code"] == CODE
        assert request.url.params["advertiser_id"] == ADVERTISER_ID

    async def test_item_types_are_a_json_encoded_list(self, scripted: ScriptedFactory) -> None:
        client, script = scripted(envelope({"page_info": {}, "list": []}))
        await client.list_posts(
            advertiser_id=ADVERTISER_ID,
            access_token=ACCESS_TOKEN,
            item_types=[ItemType.video, ItemType.carousel],
            keyword="trail shoes",
            page=2,
            page_size=50,
        )
        (request,) = script.requests
        assert request.method == "GET"
        assert request.url.path == "/open_api/v1.3/tt_video/list/"
        params = request.url.params
        assert json.loads(params["item_types"]) == ["VIDEO", "CAROUSEL"]
        assert params["item_types"] == '["VIDEO","CAROUSEL"]'
        assert params["keyword"] == "trail shoes"
        assert (params["page"], params["page_size"]) == ("2", "50")

    async def test_optional_list_filters_are_left_out(self, scripted: ScriptedFactory) -> None:
        client, script = scripted(envelope({"page_info": {}, "list": []}))
        await client.list_posts(advertiser_id=ADVERTISER_ID, access_token=ACCESS_TOKEN)
        params = script.requests[0].url.params
        assert "item_types" not in params
        assert "keyword" not in params
        assert (params["page"], params["page_size"]) == ("1", "20")

    async def test_authorize_posts_a_json_body(self, scripted: ScriptedFactory) -> None:
        client, script = scripted(envelope({}))
        await client.authorize(advertiser_id=ADVERTISER_ID, access_token=ACCESS_TOKEN, auth_code=CODE)
        (request,) = script.requests
        assert request.method == "POST"
        assert request.url.path == "/open_api/v1.3/tt_video/authorize/"
        assert request.url.query == b""
        assert request.headers["Content-Type"] == "application/json"
        assert request.headers["Access-Token"] == ACCESS_TOKEN
        assert script.json_body() == {"advertiser_id": ADVERTISER_ID, "auth_code": CODE}

    async def test_authorize_sends_the_original_posts_code_for_a_duet(self, scripted: ScriptedFactory) -> None:
        """D12: one call carries both codes, the secondary creator's in auth_code."""
        client, script = scripted(envelope({}))
        await client.authorize(
            advertiser_id=ADVERTISER_ID,
            access_token=ACCESS_TOKEN,
            auth_code=CODE,
            original_post_auth_code="#orig+/code=",
        )
        assert script.json_body() == {
            "advertiser_id": ADVERTISER_ID,
            "auth_code": CODE,
            "original_post_auth_code": "#orig+/code=",
        }

    async def test_unbind_posts_a_json_body(self, scripted: ScriptedFactory) -> None:
        client, script = scripted(envelope({}))
        await client.unbind(advertiser_id=ADVERTISER_ID, access_token=ACCESS_TOKEN, item_id="7380112233445566002")
        (request,) = script.requests
        assert request.method == "POST"
        assert request.url.path == "/open_api/v1.3/tt_video/unbind/"
        assert script.json_body() == {"advertiser_id": ADVERTISER_ID, "item_id": "7380112233445566002"}

    async def test_base_url_without_its_slash_still_reaches_the_right_path(self, scripted: ScriptedFactory) -> None:
        client, script = scripted(envelope(post_data()), base_url="http://127.0.0.1:8001/open_api")
        await info(client)
        assert script.requests[0].url.path == "/open_api/v1.3/tt_video/info/"


class TestPostParsing:
    """How `data` becomes a PostInfo (tiktok-business-api.md section 2)."""

    async def test_reads_the_documented_fields(self, scripted: ScriptedFactory) -> None:
        client, _ = scripted(envelope(post_data()))
        post = await info(client)
        assert post.item_id == "7380112233445566002"
        assert post.item_type is ItemType.video
        assert post.caption == "Unboxing the new trail shoes"
        assert post.status is PostStatus.public
        assert post.raw_status == "HESITATE_RECOMMEND"
        assert (post.identity_id, post.identity_type, post.tiktok_name) == ("7301000000000000001", "AUTH_CODE", "ana")
        assert post.duration_seconds == 45.0
        assert post.ad_auth_status == "AUTHORIZED"
        assert post.original_item_id is None
        assert post.is_multi_duet_stitch is False
        assert post.mentioned_item_ids == ()

    async def test_tiktok_time_format_is_utc(self, scripted: ScriptedFactory) -> None:
        """D3: the window is TikTok's, stored as it reports it."""
        client, _ = scripted(envelope(post_data()))
        post = await info(client)
        assert post.auth_start_at == datetime(2025, 5, 19, 11, 40, 50, tzinfo=UTC)
        assert post.auth_end_at == datetime(2025, 6, 18, 11, 40, 50, tzinfo=UTC)
        assert post.auth_end_at.utcoffset() is not None

    async def test_iso_time_format_is_utc(self, scripted: ScriptedFactory) -> None:
        data = post_data()
        data["auth_info"] = {
            "ad_auth_status": "AUTHORIZED",
            "auth_start_time": "2025-05-20T11:40:50Z",
            "auth_end_time": "2025-06-19T13:40:50+02:00",
        }
        client, _ = scripted(envelope(data))
        post = await info(client)
        assert post.auth_start_at == datetime(2025, 5, 20, 11, 40, 50, tzinfo=UTC)
        assert post.auth_end_at == datetime(2025, 6, 19, 11, 40, 50, tzinfo=UTC)
        assert post.auth_end_at.tzinfo == UTC

    async def test_an_unreadable_time_is_a_bad_response(self, scripted: ScriptedFactory) -> None:
        data = post_data()
        data["auth_info"]["auth_end_time"] = "next Tuesday"
        client, _ = scripted(envelope(data), max_attempts=1)
        with pytest.raises(TikTokBadResponse):
            await info(client)

    async def test_a_carousel_has_no_duration(self, scripted: ScriptedFactory) -> None:
        data = post_data(item_type="CAROUSEL")
        data["video_info"] = None
        client, _ = scripted(envelope(data))
        post = await info(client)
        assert post.item_type is ItemType.carousel
        assert post.duration_seconds is None

    async def test_item_type_left_out_is_inferred_from_video_info(self, scripted: ScriptedFactory) -> None:
        """The official list example has no item_type."""
        with_video = post_data()
        del with_video["item_info"]["item_type"]
        without_video = post_data()
        del without_video["item_info"]["item_type"]
        without_video["video_info"] = None
        client, _ = scripted(envelope(with_video), envelope(without_video))
        assert (await info(client)).item_type is ItemType.video
        assert (await info(client)).item_type is ItemType.carousel

    @pytest.mark.parametrize(
        ("raw", "status"),
        [
            ("HESITATE_RECOMMEND", PostStatus.public),
            ("ITEM_STATUS_HESITATE_RECOMMEND", PostStatus.public),
            ("ONLY_FRIEND_SEE", PostStatus.friends_only),
            ("STATUS_ONLY_FRIEND_SEE", PostStatus.friends_only),
            ("ONLY_AUTHOR_SEE", PostStatus.private),
            ("ITEM_STATUS_ONLY_AUTHOR_SEE", PostStatus.private),
            ("REVIEW_PENDING", PostStatus.review_pending),
            ("USER_DELETE", PostStatus.deleted),
            ("AUDIT_DELETE", PostStatus.banned),
            ("ONLY_USER_PASS", PostStatus.removed),
            ("ITEM_STATUS_ONLY_USER_PASS", PostStatus.removed),
            ("SOMETHING_NEW", PostStatus.unknown),
        ],
    )
    async def test_status_spellings_fold_into_one_and_the_raw_value_is_kept(
        self, scripted: ScriptedFactory, raw: str, status: PostStatus
    ) -> None:
        client, _ = scripted(envelope(post_data(status=raw)))
        post = await info(client)
        assert post.status is status
        assert post.raw_status == raw

    async def test_duet_stitch_and_mention_fields(self, scripted: ScriptedFactory) -> None:
        """D12: what the service needs to recognise a Duet/Stitch and count mentions."""
        client, _ = scripted(
            envelope(
                post_data(
                    duet_original_item_id="7380112233445566701",
                    is_multi_duet_stitch=True,
                    mentioned_item_ids=["1", 2],
                )
            ),
            envelope(post_data(stitch_original_item_id="7380112233445566702", duet_original_item_id="")),
        )
        duet = await info(client)
        assert duet.duet_original_item_id == "7380112233445566701"
        assert duet.original_item_id == "7380112233445566701"
        assert duet.is_multi_duet_stitch is True
        assert duet.mentioned_item_ids == ("1", "2")
        stitch = await info(client)
        assert stitch.duet_original_item_id is None
        assert stitch.original_item_id == "7380112233445566702"

    async def test_expiring_media_urls_are_not_kept(self, scripted: ScriptedFactory) -> None:
        client, _ = scripted(envelope(post_data()))
        post = await info(client)
        assert "x-expires" not in repr(post)

    async def test_missing_item_id_is_a_bad_response(self, scripted: ScriptedFactory) -> None:
        client, script = scripted(envelope(post_data(item_id=None)), max_attempts=2)
        with pytest.raises(TikTokBadResponse, match="item_id"):
            await info(client)
        assert len(script.requests) == 2  # parsed inside the attempt, so retried like any bad body

    async def test_a_list_page_is_read_with_its_page_info(self, scripted: ScriptedFactory) -> None:
        entry = post_data()
        entry["item_info"]["auth_code"] = CODE
        page_data = {"page_info": {"page": 2, "page_size": 1, "total_number": 3, "total_page": 3}, "list": [entry]}
        client, _ = scripted(envelope(page_data))
        page = await client.list_posts(advertiser_id=ADVERTISER_ID, access_token=ACCESS_TOKEN, page=2, page_size=1)
        assert (page.page, page.page_size, page.total_number, page.total_page) == (2, 1, 3, 3)
        assert [post.item_id for post in page.posts] == ["7380112233445566002"]
        assert CODE not in repr(page)

    async def test_an_empty_list_may_be_null(self, scripted: ScriptedFactory) -> None:
        page_data = {"page_info": {"page": 1, "page_size": 20, "total_number": 0, "total_page": 0}, "list": None}
        client, _ = scripted(envelope(page_data))
        page = await client.list_posts(advertiser_id=ADVERTISER_ID, access_token=ACCESS_TOKEN)
        assert page.posts == []
        assert page.total_number == 0


class TestErrorMapping:
    """Every class of return code lands in its place in the taxonomy (tiktok-business-api.md section 5)."""

    @pytest.mark.parametrize(
        ("code", "error_type"),
        [
            (40100, TikTokRateLimited),
            (40133, TikTokRateLimited),
            (50000, TikTokUnavailable),
            (50002, TikTokUnavailable),
            (60001, TikTokUnavailable),
            (-500, TikTokUnavailable),
            (40102, TikTokAccessTokenInvalid),
            (40104, TikTokAccessTokenInvalid),
            (40105, TikTokAccessTokenInvalid),
            (40106, TikTokAccessTokenInvalid),
            (40001, TikTokPermissionDenied),
            (40300, TikTokPermissionDenied),
            (40301, TikTokPermissionDenied),
            (40000, TikTokRequestRejected),
            (40002, TikTokRequestRejected),
            (40007, TikTokRequestRejected),
            (41234, TikTokRequestRejected),
        ],
    )
    async def test_code_maps_to_its_error_and_keeps_tiktoks_words(
        self, scripted: ScriptedFactory, code: int, error_type: type[TikTokError]
    ) -> None:
        client, _ = scripted(envelope(code=code, message="Something TikTok said", request_id="req-42"))
        with pytest.raises(error_type) as caught:
            await info(client)
        error = caught.value
        assert type(error) is error_type
        assert (error.code, error.message, error.request_id, error.http_status) == (
            code,
            "Something TikTok said",
            "req-42",
            200,
        )

    async def test_http_5xx_without_an_envelope_is_unavailable(self, scripted: ScriptedFactory) -> None:
        client, _ = scripted(httpx.Response(502, text="<html>Bad Gateway</html>"), max_attempts=1)
        with pytest.raises(TikTokUnavailable) as caught:
            await info(client)
        assert caught.value.http_status == 502
        assert caught.value.code is None

    async def test_http_429_is_a_rate_limit(self, scripted: ScriptedFactory) -> None:
        client, _ = scripted(httpx.Response(429, text="Too Many Requests"), max_attempts=1)
        with pytest.raises(TikTokRateLimited):
            await info(client)

    async def test_http_404_without_an_envelope_is_rejected_without_a_problem(self, scripted: ScriptedFactory) -> None:
        """A missing trailing slash: the request never reached the API logic."""
        client, script = scripted(httpx.Response(404, text="Not Found"))
        with pytest.raises(TikTokRequestRejected) as caught:
            await info(client)
        assert caught.value.problem is None
        assert caught.value.http_status == 404
        assert len(script.requests) == 1

    async def test_connection_failure_is_unavailable(self, scripted: ScriptedFactory) -> None:
        client, _ = scripted(httpx.ConnectError("Connection refused"), max_attempts=1)
        with pytest.raises(TikTokUnavailable):
            await info(client)

    async def test_request_timeout_is_a_timeout(self, scripted: ScriptedFactory) -> None:
        client, _ = scripted(httpx.ReadTimeout("timed out"), max_attempts=1)
        with pytest.raises(TikTokTimeout):
            await info(client)

    @pytest.mark.parametrize(
        "response",
        [
            pytest.param(httpx.Response(200, text="<html>oops</html>"), id="not-json"),
            pytest.param(httpx.Response(200, json=[1, 2]), id="not-an-object"),
            pytest.param(httpx.Response(200, json={"message": "OK", "data": {}}), id="no-code"),
            pytest.param(httpx.Response(200, json={"code": "0", "data": {}}), id="code-not-int"),
            pytest.param(httpx.Response(200, json={"code": 0, "message": "OK"}), id="success-without-data"),
            pytest.param(httpx.Response(200, json={"code": 0, "data": []}), id="data-not-an-object"),
        ],
    )
    async def test_a_body_that_is_not_the_envelope_is_a_bad_response(
        self, scripted: ScriptedFactory, response: httpx.Response
    ) -> None:
        client, _ = scripted(response, max_attempts=1)
        with pytest.raises(TikTokBadResponse):
            await info(client)

    async def test_transient_and_permanent_are_the_two_families(self) -> None:
        assert issubclass(TikTokRateLimited, TikTokTransientError)
        assert issubclass(TikTokBadResponse, TikTokTransientError)
        assert not issubclass(TikTokRequestRejected, TikTokTransientError)


class TestProblemClassification:
    """Which SparkCodeProblem a rejection names: by TikTok's code first, then by its message."""

    @pytest.mark.parametrize(
        ("code", "problem"),
        [
            (4013, SparkCodeProblem.auth_code_invalid),
            (4025, SparkCodeProblem.auth_code_expired),
            (4002, SparkCodeProblem.post_deleted),
            (4027, SparkCodeProblem.story_video_not_supported),
            (4042, SparkCodeProblem.carousel_duet_not_supported),
            (900012, SparkCodeProblem.post_banned),
            (930002, SparkCodeProblem.mentions_multiple_videos),
            (900003, SparkCodeProblem.multi_level_duet_stitch),
        ],
    )
    def test_ads_manager_codes(self, code: int, problem: SparkCodeProblem) -> None:
        error = classify_error(code, "whatever", request_id=None, http_status=200)
        assert isinstance(error, TikTokRequestRejected)
        assert error.problem is problem

    @pytest.mark.parametrize(
        ("message", "problem"),
        [
            ("auth_code_format_error: bad code", SparkCodeProblem.auth_code_invalid),
            ("The auth code format is invalid", SparkCodeProblem.auth_code_invalid),
            ("AUTH_CODE_EXPIRED", SparkCodeProblem.auth_code_expired),
            ("The authorization has expired", SparkCodeProblem.auth_code_expired),
            ("auth_code_not_found: gone", SparkCodeProblem.auth_code_not_found),
            ("Auth code not found", SparkCodeProblem.auth_code_not_found),
            ("The code does not exist", SparkCodeProblem.auth_code_not_found),
            ("video_deleted", SparkCodeProblem.post_deleted),
            ("video_unavailable", SparkCodeProblem.post_deleted),
            ("The video was deleted", SparkCodeProblem.post_deleted),
            ("illegal_item_status_error", SparkCodeProblem.post_banned),
            ("This post is banned", SparkCodeProblem.post_banned),
            ("mention_multiple_videos", SparkCodeProblem.mentions_multiple_videos),
            ("multi_duet_stitch_refused", SparkCodeProblem.multi_level_duet_stitch),
            ("carousel_duet_not_supported", SparkCodeProblem.carousel_duet_not_supported),
            ("story_video_not_supported", SparkCodeProblem.story_video_not_supported),
            ("original_post_auth_code is required for duet/stitch posts", SparkCodeProblem.original_post_code_required),
            ("original_post_auth_code missing", SparkCodeProblem.original_post_code_required),
            ("original_post_auth_code does not match the original post", SparkCodeProblem.original_post_code_mismatch),
            ("original_post_auth_code does not belong to the original", SparkCodeProblem.original_post_code_mismatch),
        ],
    )
    def test_messages(self, message: str, problem: SparkCodeProblem) -> None:
        error = classify_error(40002, message, request_id=None, http_status=200)
        assert isinstance(error, TikTokRequestRejected)
        assert error.problem is problem

    def test_the_code_wins_over_the_message(self) -> None:
        error = classify_error(4013, "auth_code_expired", request_id=None, http_status=200)
        assert isinstance(error, TikTokRequestRejected)
        assert error.problem is SparkCodeProblem.auth_code_invalid

    def test_object_not_found_without_a_better_match_is_a_code_not_found(self) -> None:
        error = classify_error(40007, "Object does not exist.", request_id=None, http_status=200)
        assert isinstance(error, TikTokRequestRejected)
        assert error.problem is SparkCodeProblem.auth_code_not_found
        plain = classify_error(40007, "No such thing", request_id=None, http_status=200)
        assert isinstance(plain, TikTokRequestRejected)
        assert plain.problem is SparkCodeProblem.auth_code_not_found

    def test_an_invalid_parameter_without_keywords_names_no_problem(self) -> None:
        error = classify_error(40002, "page_size: Must be between 1 and 50.", request_id=None, http_status=200)
        assert isinstance(error, TikTokRequestRejected)
        assert error.problem is None

    def test_a_message_about_another_field_is_not_about_the_code(self) -> None:
        error = classify_error(40002, "advertiser_id: Not a valid format.", request_id=None, http_status=200)
        assert isinstance(error, TikTokRequestRejected)
        assert error.problem is None

    async def test_rejections_of_list_and_unbind_name_no_code_problem(self, scripted: ScriptedFactory) -> None:
        """They carry no creator's code, so "not found" there is about the post's binding, not a code."""
        client, _ = scripted(envelope(code=40007, message="Object does not exist."))
        with pytest.raises(TikTokRequestRejected) as caught:
            await client.unbind(advertiser_id=ADVERTISER_ID, access_token=ACCESS_TOKEN, item_id="1")
        assert caught.value.problem is None
        with pytest.raises(TikTokRequestRejected) as caught:
            await client.list_posts(advertiser_id=ADVERTISER_ID, access_token=ACCESS_TOKEN)
        assert caught.value.problem is None

    async def test_an_authorize_rejection_is_classified(self, scripted: ScriptedFactory) -> None:
        client, _ = scripted(envelope(code=40002, message="original_post_auth_code is required for duet/stitch posts"))
        with pytest.raises(TikTokRequestRejected) as caught:
            await client.authorize(advertiser_id=ADVERTISER_ID, access_token=ACCESS_TOKEN, auth_code=CODE)
        assert caught.value.problem is SparkCodeProblem.original_post_code_required

    async def test_a_message_that_echoes_the_code_or_token_is_redacted(self, scripted: ScriptedFactory) -> None:
        client, _ = scripted(envelope(code=40007, message=f"auth_code_not_found: {CODE} (token {ACCESS_TOKEN})"))
        with pytest.raises(TikTokRequestRejected) as caught:
            await info(client)
        assert CODE not in caught.value.message
        assert ACCESS_TOKEN not in caught.value.message
        assert caught.value.problem is SparkCodeProblem.auth_code_not_found


class TestRetries:
    """Transient faults are retried with backoff under a deadline; permanent ones never are (style.md 7)."""

    async def test_transient_faults_then_success_make_exactly_that_many_requests(
        self, scripted: ScriptedFactory
    ) -> None:
        client, script = scripted(
            envelope(code=40100, message="App 1 reaches the QPS limit 10"),
            envelope(code=50000, message="System error"),
            httpx.Response(503, text="<html>busy</html>"),
            envelope(post_data()),
        )
        post = await info(client)
        assert post.item_id == "7380112233445566002"
        assert len(script.requests) == 4

    @pytest.mark.parametrize("code", [40002, 40007, 40105, 40300, 40001])
    async def test_permanent_errors_are_tried_once(self, scripted: ScriptedFactory, code: int) -> None:
        client, script = scripted(envelope(code=code, message="no"), envelope(post_data()))
        with pytest.raises(TikTokError):
            await info(client)
        assert len(script.requests) == 1

    async def test_exhausted_attempts_raise_the_last_transient_error(self, scripted: ScriptedFactory) -> None:
        client, script = scripted(
            envelope(code=50000, message="System error"),
            envelope(code=50002, message="Timeout"),
            envelope(code=40100, message="App 1 reaches the QPS limit 10", request_id="last"),
            max_attempts=3,
        )
        with pytest.raises(TikTokRateLimited) as caught:
            await info(client)
        assert caught.value.request_id == "last"
        assert len(script.requests) == 3

    async def test_a_bad_body_is_retried_then_reported(self, scripted: ScriptedFactory) -> None:
        client, script = scripted(httpx.Response(200, text="not json"), max_attempts=3)
        with pytest.raises(TikTokBadResponse):
            await info(client)
        assert len(script.requests) == 3

    async def test_authorize_is_retried_like_any_call(self, scripted: ScriptedFactory) -> None:
        """D2: applying a code twice is the same authorization, so a retry cannot do harm."""
        client, script = scripted(envelope(code=50000, message="System error"), envelope({}))
        await client.authorize(advertiser_id=ADVERTISER_ID, access_token=ACCESS_TOKEN, auth_code=CODE)
        assert len(script.requests) == 2
        assert script.json_body(0) == script.json_body(1)


class TestDeadline:
    """The whole call, attempts and waits included, ends by the deadline."""

    async def test_a_hanging_request_ends_in_a_timeout(self, scripted: ScriptedFactory) -> None:
        async def hang(request: httpx.Request) -> httpx.Response:
            await asyncio.sleep(30)
            return envelope(post_data())

        http = httpx.AsyncClient(transport=httpx.MockTransport(hang))
        client = TikTokClient(http, base_url=BASE_URL, deadline_seconds=0.05)
        try:
            with pytest.raises(TikTokTimeout, match="deadline"):
                await info(client)
        finally:
            await http.aclose()

    async def test_backoff_waits_count_against_the_deadline(self, scripted: ScriptedFactory) -> None:
        # Real waits here: the first backoff (10 s) is far longer than the deadline.
        with stamina.set_testing(False):
            client, script = scripted(
                envelope(code=40100, message="App 1 reaches the QPS limit 10"),
                envelope(post_data()),
                deadline_seconds=0.1,
                wait_initial_seconds=10.0,
                wait_jitter_seconds=0.0,
                wait_max_seconds=10.0,
            )
            with pytest.raises(TikTokTimeout, match="deadline"):
                await info(client)
        assert len(script.requests) == 1

    async def test_real_backoff_retries_and_succeeds(self, scripted: ScriptedFactory) -> None:
        with stamina.set_testing(False):
            client, script = scripted(
                envelope(code=40100, message="App 1 reaches the QPS limit 10"),
                envelope(post_data()),
                wait_initial_seconds=0.01,
                wait_jitter_seconds=0.01,
                wait_max_seconds=0.05,
            )
            post = await info(client)
        assert post.item_id == "7380112233445566002"
        assert len(script.requests) == 2


class TestLogging:
    """style.md 14: events with fields, never a code or a token in clear."""

    def _secrets(self) -> list[str]:
        return [CODE, quote(CODE, safe=""), ACCESS_TOKEN, "auth_code="]

    async def test_no_log_line_carries_the_code_or_the_token(
        self, scripted: ScriptedFactory, caplog: pytest.LogCaptureFixture
    ) -> None:
        caplog.set_level(logging.DEBUG)
        # As app logging config does: httpx prints every request URL, query string included, at INFO.
        caplog.set_level(logging.WARNING, logger="httpx")
        caplog.set_level(logging.WARNING, logger="httpcore")
        client, _ = scripted(
            envelope(code=50000, message=f"System error for {CODE}"),
            httpx.Response(200, text="not json"),
            envelope(post_data()),
            envelope(code=40002, message=f"auth_code_expired: {CODE}"),
            envelope(code=40100, message="App 1 reaches the QPS limit 10"),
            max_attempts=3,
        )
        with capture_logs() as events:
            await info(client)
            with pytest.raises(TikTokRequestRejected):
                await client.authorize(
                    advertiser_id=ADVERTISER_ID,
                    access_token=ACCESS_TOKEN,
                    auth_code=CODE,
                    original_post_auth_code=CODE,
                )
            with pytest.raises(TikTokRateLimited):
                await info(client)
        assert events, "the client should have logged its retries and failures"
        logged = repr(events) + caplog.text + repr([record.__dict__ for record in caplog.records])
        for secret in self._secrets():
            assert secret not in logged
        assert not [record for record in caplog.records if record.name.startswith(("httpx", "httpcore"))]

    async def test_attempt_and_failure_events_carry_path_code_request_id_and_attempt(
        self, scripted: ScriptedFactory
    ) -> None:
        client, _ = scripted(
            envelope(code=50000, message="System error", request_id="r1"),
            envelope(code=40100, message="App 1 reaches the QPS limit 10", request_id="r2"),
            max_attempts=2,
        )
        with capture_logs() as events, pytest.raises(TikTokRateLimited):
            await info(client)
        retries = [event for event in events if event["event"] == "tiktok.request.attempt_failed"]
        assert [(e["path"], e["tiktok_code"], e["request_id"], e["attempt"]) for e in retries] == [
            ("tt_video/info/", 50000, "r1", 1),
            ("tt_video/info/", 40100, "r2", 2),
        ]
        (failed,) = [event for event in events if event["event"] == "tiktok.request.failed"]
        assert (failed["path"], failed["tiktok_code"], failed["request_id"], failed["attempt"]) == (
            "tt_video/info/",
            40100,
            "r2",
            2,
        )

    async def test_a_rejection_is_logged_as_such_with_its_problem(self, scripted: ScriptedFactory) -> None:
        client, _ = scripted(envelope(code=40002, message="auth_code_expired"))
        with capture_logs() as events, pytest.raises(TikTokRequestRejected):
            await info(client)
        (rejected,) = [event for event in events if event["event"] == "tiktok.request.rejected"]
        assert rejected["problem"] == "auth_code_expired"
        assert rejected["tiktok_code"] == 40002
