"""The TikTok client, specified against a scripted transport: what goes on the wire, which errors are retried,
how the deadline and the logs behave, and how `find_bound_post` reads the list (docs/tiktok.md).

How answers are read is in test_parse.py (successes) and test_classify.py (failures)."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import stamina
from structlog.testing import capture_logs

from app.tiktok.client import TikTokClient
from app.tiktok.errors import (
    TikTokAccessTokenInvalid,
    TikTokBadResponse,
    TikTokError,
    TikTokRateLimited,
    TikTokRefusal,
    TikTokRequestRejected,
    TikTokTimeout,
    TikTokUnavailable,
)
from app.tiktok.models import IdentityType, ItemType, PostInfo
from tests.tiktok.conftest import (
    ACCESS_TOKEN,
    ADVERTISER_ID,
    BASE_URL,
    BC_ID,
    BC_IDENTITY_ID,
    CODE,
    OWN_IDENTITY_ID,
    OWN_ITEM_ID,
    Answer,
    ScriptedFactory,
    envelope,
    identity_post_data,
    info,
    own_info,
    post_data,
)


class TestRequestShape:
    """What the client puts on the wire (docs/tiktok.md, "Conventions every call follows")."""

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


class TestOwnPostRequestShape:
    """`identity/video/info/` for one post of one of the ad account's identities (D1)."""

    async def test_a_get_to_the_path_with_its_trailing_slash_and_the_token_in_its_header(
        self, scripted: ScriptedFactory
    ) -> None:
        client, script = scripted(envelope(identity_post_data()))
        await own_info(client)
        (request,) = script.requests
        assert request.method == "GET"
        assert request.url.path == "/open_api/v1.3/identity/video/info/"
        assert request.headers["Access-Token"] == ACCESS_TOKEN
        assert "Authorization" not in request.headers
        assert request.content == b""

    async def test_sends_the_identity_and_the_item_and_no_business_center_unless_given(
        self, scripted: ScriptedFactory
    ) -> None:
        client, script = scripted(envelope(identity_post_data()))
        await own_info(client)
        assert dict(script.requests[0].url.params) == {
            "advertiser_id": ADVERTISER_ID,
            "identity_type": "TT_USER",
            "identity_id": OWN_IDENTITY_ID,
            "item_id": OWN_ITEM_ID,
        }

    async def test_sends_the_business_center_when_given(self, scripted: ScriptedFactory) -> None:
        client, script = scripted(envelope(identity_post_data()))
        await own_info(client, identity_type=IdentityType.bc_auth_tt, identity_id=BC_IDENTITY_ID, bc_id=BC_ID)
        assert dict(script.requests[0].url.params) == {
            "advertiser_id": ADVERTISER_ID,
            "identity_type": "BC_AUTH_TT",
            "identity_id": BC_IDENTITY_ID,
            "item_id": OWN_ITEM_ID,
            "identity_authorized_bc_id": BC_ID,
        }

    async def test_an_unknown_identity_type_is_refused_before_tiktok_is_asked(self, scripted: ScriptedFactory) -> None:
        client, script = scripted(envelope(identity_post_data()))
        with pytest.raises(ValueError, match="TT_USERS"):
            await own_info(client, identity_type="TT_USERS")
        assert script.requests == []


class TestRetries:
    """Transient faults are retried with backoff under a deadline; permanent ones never are."""

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

    async def test_own_post_info_is_retried_like_any_read(self, scripted: ScriptedFactory) -> None:
        client, script = scripted(
            envelope(code=40100, message="App 1 reaches the QPS limit 10"),
            httpx.ConnectError("refused"),
            httpx.ReadTimeout("slow"),
            envelope(identity_post_data()),
        )
        post = await own_info(client)
        assert post.item_id == OWN_ITEM_ID
        assert len(script.requests) == 4
        assert len({str(request.url) for request in script.requests}) == 1

    async def test_own_post_info_gives_up_after_its_attempts(self, scripted: ScriptedFactory) -> None:
        client, script = scripted(envelope(code=50000, message="System error"), max_attempts=3)
        with pytest.raises(TikTokUnavailable):
            await own_info(client)
        assert len(script.requests) == 3

    @pytest.mark.parametrize("code", [40002, 40007, 40105, 40300])
    async def test_own_post_info_rejections_are_tried_once(self, scripted: ScriptedFactory, code: int) -> None:
        client, script = scripted(envelope(code=code, message="no"), envelope(identity_post_data()))
        with pytest.raises(TikTokError):
            await own_info(client)
        assert len(script.requests) == 1

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

    @pytest.mark.parametrize(
        "first",
        [
            pytest.param(envelope(code=40100, message="App 1 reaches the QPS limit 10"), id="rate-limited"),
            pytest.param(httpx.ConnectError("refused"), id="not-connected"),
        ],
    )
    async def test_authorize_is_tried_again_when_tiktok_surely_did_nothing(
        self, scripted: ScriptedFactory, first: Answer
    ) -> None:
        client, script = scripted(first, envelope({}))
        await client.authorize(advertiser_id=ADVERTISER_ID, access_token=ACCESS_TOKEN, auth_code=CODE)
        assert len(script.requests) == 2
        assert script.json_body(0) == script.json_body(1)

    @pytest.mark.parametrize(
        ("first", "error"),
        [
            pytest.param(envelope(code=50000, message="System error"), TikTokUnavailable, id="system-error"),
            pytest.param(httpx.Response(503, text="busy"), TikTokUnavailable, id="http-503"),
            pytest.param(httpx.ReadTimeout("slow"), TikTokTimeout, id="read-timeout"),
            pytest.param(httpx.Response(200, text="not json"), TikTokBadResponse, id="garbled"),
        ],
    )
    async def test_authorize_is_not_sent_twice_when_tiktok_may_have_applied_it(
        self, scripted: ScriptedFactory, first: Answer, error: type[Exception]
    ) -> None:
        """Not confirmed idempotent: after a failure that may follow the code's application, the caller settles
        by reading TikTok rather than applying the code a second time."""
        client, script = scripted(first, envelope({}))
        with pytest.raises(error):
            await client.authorize(advertiser_id=ADVERTISER_ID, access_token=ACCESS_TOKEN, auth_code=CODE)
        assert len(script.requests) == 1


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
    """Events with fields, never a code or a token in clear."""

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
        assert [(e["path"], e["tiktok_code"], e["tiktok_request_id"], e["attempt"]) for e in retries] == [
            ("tt_video/info/", 50000, "r1", 1),
            ("tt_video/info/", 40100, "r2", 2),
        ]
        (failed,) = [event for event in events if event["event"] == "tiktok.request.failed"]
        assert (failed["path"], failed["tiktok_code"], failed["tiktok_request_id"], failed["attempt"]) == (
            "tt_video/info/",
            40100,
            "r2",
            2,
        )

    async def test_own_post_info_logs_its_path_and_refusal_and_no_token(
        self, scripted: ScriptedFactory, caplog: pytest.LogCaptureFixture
    ) -> None:
        caplog.set_level(logging.DEBUG)
        caplog.set_level(logging.WARNING, logger="httpx")
        caplog.set_level(logging.WARNING, logger="httpcore")
        client, _ = scripted(
            envelope(code=50000, message="System error", request_id="r1"),
            envelope(code=40007, message=f"Not this identity's ({ACCESS_TOKEN})", request_id="r2"),
        )
        with capture_logs() as events, pytest.raises(TikTokRequestRejected) as caught:
            await own_info(client)
        assert ACCESS_TOKEN not in caught.value.message
        (retried,) = [event for event in events if event["event"] == "tiktok.request.attempt_failed"]
        assert (retried["path"], retried["tiktok_code"], retried["attempt"]) == ("identity/video/info/", 50000, 1)
        (rejected,) = [event for event in events if event["event"] == "tiktok.request.rejected"]
        assert (rejected["path"], rejected["tiktok_code"], rejected["tiktok_request_id"], rejected["refusal"]) == (
            "identity/video/info/",
            40007,
            "r2",
            TikTokRefusal.post_not_found_for_identity.value,
        )
        logged = repr(events) + caplog.text + repr([record.__dict__ for record in caplog.records])
        assert ACCESS_TOKEN not in logged

    async def test_a_rejection_is_logged_as_such_with_its_refusal(self, scripted: ScriptedFactory) -> None:
        client, _ = scripted(envelope(code=40002, message="auth_code_expired"))
        with capture_logs() as events, pytest.raises(TikTokRequestRejected):
            await info(client)
        (rejected,) = [event for event in events if event["event"] == "tiktok.request.rejected"]
        assert rejected["refusal"] == "auth_code_expired"
        assert rejected["tiktok_code"] == 40002


ITEM_ID = "7380112233445566002"


def list_page(*entries: dict[str, Any], page: int, total_number: int, page_size: int = 50) -> httpx.Response:
    """One `tt_video/list` answer."""
    total_page = -(-total_number // page_size)
    page_info = {"page": page, "page_size": page_size, "total_number": total_number, "total_page": total_page}
    return envelope({"page_info": page_info, "list": list(entries)})


def entry(item_id: str, text: str = "a caption") -> dict[str, Any]:
    return post_data(item_id=item_id, text=text)


async def find(client: TikTokClient, item_id: str = ITEM_ID) -> PostInfo | None:
    return await client.find_bound_post(advertiser_id=ADVERTISER_ID, access_token=ACCESS_TOKEN, item_id=item_id)


class TestFindBoundPost:
    """Whether a post is authorized to the ad account now, from `tt_video/list` with `keyword=item_id`, which also
    matches captions: only the entry with exactly that item_id counts."""

    async def test_asks_for_the_item_id_as_keyword_fifty_at_a_time(self, scripted: ScriptedFactory) -> None:
        client, script = scripted(list_page(entry(ITEM_ID), page=1, total_number=1))
        post = await find(client)
        assert post is not None
        assert post.item_id == ITEM_ID
        (request,) = script.requests
        assert request.url.path == "/open_api/v1.3/tt_video/list/"
        params = request.url.params
        assert (params["advertiser_id"], params["keyword"], params["page"], params["page_size"]) == (
            ADVERTISER_ID,
            ITEM_ID,
            "1",
            "50",
        )
        assert "item_types" not in params

    async def test_none_when_the_list_is_empty(self, scripted: ScriptedFactory) -> None:
        client, script = scripted(list_page(page=1, total_number=0))
        assert await find(client) is None
        assert len(script.requests) == 1

    async def test_captions_holding_the_digits_are_passed_over(self, scripted: ScriptedFactory) -> None:
        client, script = scripted(
            list_page(
                entry("7380112233445566715", f"Reply to video {ITEM_ID}"),
                entry(ITEM_ID + "9", "a longer id"),
                page=1,
                total_number=2,
            )
        )
        assert await find(client) is None
        assert len(script.requests) == 1

    async def test_reads_the_next_pages_until_it_finds_the_post(self, scripted: ScriptedFactory) -> None:
        decoys = [entry(f"73801122334455{n:05d}", f"Part {n} of {ITEM_ID}") for n in range(100)]
        client, script = scripted(
            list_page(*decoys[:50], page=1, total_number=120),
            list_page(*decoys[50:], page=2, total_number=120),
            list_page(entry("7380112233445566999"), entry(ITEM_ID, "the post itself"), page=3, total_number=120),
        )
        post = await find(client)
        assert post is not None
        assert (post.item_id, post.caption) == (ITEM_ID, "the post itself")
        assert [request.url.params["page"] for request in script.requests] == ["1", "2", "3"]
        assert {request.url.params["keyword"] for request in script.requests} == {ITEM_ID}

    async def test_stops_at_the_last_page(self, scripted: ScriptedFactory) -> None:
        decoys = [entry(f"73801122334455{n:05d}", f"Part {n} of {ITEM_ID}") for n in range(60)]
        client, script = scripted(
            list_page(*decoys[:50], page=1, total_number=60),
            list_page(*decoys[50:], page=2, total_number=60),
            list_page(entry(ITEM_ID), page=3, total_number=60),  # never asked for
        )
        assert await find(client) is None
        assert len(script.requests) == 2

    async def test_stops_at_an_empty_page_whatever_page_info_says(self, scripted: ScriptedFactory) -> None:
        client, script = scripted(
            list_page(entry("7380112233445566715", f"Reply to video {ITEM_ID}"), page=1, total_number=500),
            list_page(page=2, total_number=500),
        )
        assert await find(client) is None
        assert len(script.requests) == 2

    async def test_each_page_is_retried_like_any_call(self, scripted: ScriptedFactory) -> None:
        client, script = scripted(
            envelope(code=50000, message="System error"),
            list_page(entry(ITEM_ID), page=1, total_number=1),
        )
        assert await find(client) is not None
        assert len(script.requests) == 2

    async def test_a_rejection_is_raised_not_read_as_unbound(self, scripted: ScriptedFactory) -> None:
        client, _ = scripted(envelope(code=40105, message="Access token is invalid."))
        with pytest.raises(TikTokAccessTokenInvalid):
            await find(client)
