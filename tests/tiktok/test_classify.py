"""How TikTok's failures are read into the taxonomy (docs/tiktok.md, "How TikTok's failures are classified"):
which error each code and status becomes, and which TikTokRefusal a rejection names, by code first, then by
message."""

from __future__ import annotations

import httpx
import pytest

from app.tiktok.classify import About, classify_error
from app.tiktok.errors import (
    TikTokAccessTokenInvalid,
    TikTokBadResponse,
    TikTokError,
    TikTokPermissionDenied,
    TikTokRateLimited,
    TikTokRefusal,
    TikTokRequestRejected,
    TikTokTimeout,
    TikTokUnavailable,
)
from tests.tiktok.conftest import (
    ACCESS_TOKEN,
    ADVERTISER_ID,
    CODE,
    ScriptedFactory,
    envelope,
    identity_post_data,
    info,
    own_info,
)

# The refusals of a creator's code or its post (tt_video/info, authorize), and of identity/video/info.
OWN_POST_REFUSALS = (TikTokRefusal.post_not_found_for_identity,)
CODE_REFUSALS = [refusal for refusal in TikTokRefusal if refusal not in OWN_POST_REFUSALS]


class TestErrorMapping:
    """Every class of return code lands in its place in the taxonomy (docs/tiktok.md, "The codes")."""

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

    async def test_a_message_with_nul_or_a_lone_surrogate_is_made_storable(self, scripted: ScriptedFactory) -> None:
        """TikTok's message reaches problem details and logs, which must encode as UTF-8."""
        body = b'{"code": 40002, "message": "bad\\u0000 input \\ud800", "request_id": "r\\u0000", "data": {}}'
        client, _ = scripted(httpx.Response(200, content=body, headers={"Content-Type": "application/json"}))
        with pytest.raises(TikTokRequestRejected) as caught:
            await info(client)
        assert (caught.value.message, caught.value.request_id) == ("bad\ufffd input \ufffd", "r\ufffd")

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

    async def test_http_404_without_an_envelope_is_rejected_without_a_refusal(self, scripted: ScriptedFactory) -> None:
        """A missing trailing slash: the request never reached the API logic."""
        client, script = scripted(httpx.Response(404, text="Not Found"))
        with pytest.raises(TikTokRequestRejected) as caught:
            await info(client)
        assert caught.value.refusal is None
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


class TestRefusalClassification:
    """Which TikTokRefusal a rejection names: by TikTok's code first, then by its message."""

    @pytest.mark.parametrize(
        ("code", "refusal"),
        [
            (4013, TikTokRefusal.auth_code_format_error),
            (4025, TikTokRefusal.auth_code_expired),
            (4002, TikTokRefusal.video_unavailable),
            (4027, TikTokRefusal.story_video_not_supported),
            (4042, TikTokRefusal.carousel_duet_not_supported),
            (900012, TikTokRefusal.illegal_item_status_error),
            (930002, TikTokRefusal.mention_multiple_videos),
            (900003, TikTokRefusal.multi_duet_stitch_refused),
        ],
    )
    def test_ads_manager_codes(self, code: int, refusal: TikTokRefusal) -> None:
        error = classify_error(code, "whatever", request_id=None, http_status=200)
        assert isinstance(error, TikTokRequestRejected)
        assert error.refusal is refusal

    @pytest.mark.parametrize(
        ("message", "refusal"),
        [
            ("auth_code_format_error: bad code", TikTokRefusal.auth_code_format_error),
            ("The auth code format is invalid", TikTokRefusal.auth_code_format_error),
            ("AUTH_CODE_EXPIRED", TikTokRefusal.auth_code_expired),
            ("The authorization has expired", TikTokRefusal.auth_code_expired),
            ("auth_code_not_found: gone", TikTokRefusal.auth_code_not_found),
            ("Auth code not found", TikTokRefusal.auth_code_not_found),
            ("The code does not exist", TikTokRefusal.auth_code_not_found),
            ("video_deleted", TikTokRefusal.video_deleted),
            ("video_unavailable", TikTokRefusal.video_unavailable),
            ("The video was deleted", TikTokRefusal.video_deleted),
            ("illegal_item_status_error", TikTokRefusal.illegal_item_status_error),
            ("This post is banned", TikTokRefusal.illegal_item_status_error),
            ("mention_multiple_videos", TikTokRefusal.mention_multiple_videos),
            ("multi_duet_stitch_refused", TikTokRefusal.multi_duet_stitch_refused),
            ("carousel_duet_not_supported", TikTokRefusal.carousel_duet_not_supported),
            ("story_video_not_supported", TikTokRefusal.story_video_not_supported),
            (
                "original_post_auth_code is required for duet/stitch posts",
                TikTokRefusal.original_post_auth_code_required,
            ),
            ("original_post_auth_code missing", TikTokRefusal.original_post_auth_code_required),
            (
                "original_post_auth_code does not match the original post",
                TikTokRefusal.original_post_auth_code_mismatch,
            ),
            ("original_post_auth_code does not belong to the original", TikTokRefusal.original_post_auth_code_mismatch),
            (
                "already_authorized: the video has already been authorized to this advertiser.",
                TikTokRefusal.already_authorized,
            ),
            ("The post is already authorized", TikTokRefusal.already_authorized),
            ("Item already bound to this ad account", TikTokRefusal.already_authorized),
            # Naming the advertiser does not make it a message about the advertiser_id parameter.
            (
                "The video has already been authorised to advertiser_id 7000000000000000001",
                TikTokRefusal.already_authorized,
            ),
        ],
    )
    def test_messages(self, message: str, refusal: TikTokRefusal) -> None:
        error = classify_error(40002, message, request_id=None, http_status=200)
        assert isinstance(error, TikTokRequestRejected)
        assert error.refusal is refusal

    @pytest.mark.parametrize("refusal", CODE_REFUSALS)
    def test_every_refusal_is_recognised_by_its_own_name(self, refusal: TikTokRefusal) -> None:
        error = classify_error(40002, f"{refusal.value}: as Ads Manager would say", request_id=None, http_status=200)
        assert isinstance(error, TikTokRequestRejected)
        assert error.refusal is refusal

    @pytest.mark.parametrize("refusal", OWN_POST_REFUSALS)
    def test_own_post_refusals_are_recognised_by_their_own_name_only_for_an_own_post(
        self, refusal: TikTokRefusal
    ) -> None:
        message = f"{refusal.value}: as the adapter names it"
        own = classify_error(40002, message, request_id=None, http_status=200, about=About.own_post)
        code = classify_error(40002, message, request_id=None, http_status=200, about=About.auth_code)
        assert isinstance(own, TikTokRequestRejected)
        assert isinstance(code, TikTokRequestRejected)
        assert own.refusal is refusal
        assert code.refusal is not refusal

    def test_the_code_wins_over_the_message(self) -> None:
        error = classify_error(4013, "auth_code_expired", request_id=None, http_status=200)
        assert isinstance(error, TikTokRequestRejected)
        assert error.refusal is TikTokRefusal.auth_code_format_error

    def test_object_not_found_without_a_better_match_is_a_code_not_found(self) -> None:
        error = classify_error(40007, "Object does not exist.", request_id=None, http_status=200)
        assert isinstance(error, TikTokRequestRejected)
        assert error.refusal is TikTokRefusal.auth_code_not_found
        plain = classify_error(40007, "No such thing", request_id=None, http_status=200)
        assert isinstance(plain, TikTokRequestRejected)
        assert plain.refusal is TikTokRefusal.auth_code_not_found

    def test_an_invalid_parameter_without_keywords_names_no_refusal(self) -> None:
        error = classify_error(40002, "page_size: Must be between 1 and 50.", request_id=None, http_status=200)
        assert isinstance(error, TikTokRequestRejected)
        assert error.refusal is None

    def test_a_message_about_another_field_is_not_about_the_code(self) -> None:
        error = classify_error(40002, "advertiser_id: Not a valid format.", request_id=None, http_status=200)
        assert isinstance(error, TikTokRequestRejected)
        assert error.refusal is None

    async def test_rejections_of_list_and_unbind_name_no_code_refusal(self, scripted: ScriptedFactory) -> None:
        """They carry no creator's code, so "not found" there is about the post's binding, not a code."""
        client, _ = scripted(envelope(code=40007, message="Object does not exist."))
        with pytest.raises(TikTokRequestRejected) as caught:
            await client.unbind(advertiser_id=ADVERTISER_ID, access_token=ACCESS_TOKEN, item_id="1")
        assert caught.value.refusal is None
        with pytest.raises(TikTokRequestRejected) as caught:
            await client.list_posts(advertiser_id=ADVERTISER_ID, access_token=ACCESS_TOKEN)
        assert caught.value.refusal is None

    def test_a_post_not_under_an_identity_is_no_code_refusal_for_a_code(self) -> None:
        """The same words about a creator's code are what they always were: the code is not found."""
        error = classify_error(
            40007, "The item does not exist or does not belong to this identity.", request_id=None, http_status=200
        )
        assert isinstance(error, TikTokRequestRejected)
        assert error.refusal is TikTokRefusal.auth_code_not_found

    async def test_an_authorize_rejection_is_classified(self, scripted: ScriptedFactory) -> None:
        client, _ = scripted(envelope(code=40002, message="original_post_auth_code is required for duet/stitch posts"))
        with pytest.raises(TikTokRequestRejected) as caught:
            await client.authorize(advertiser_id=ADVERTISER_ID, access_token=ACCESS_TOKEN, auth_code=CODE)
        assert caught.value.refusal is TikTokRefusal.original_post_auth_code_required

    async def test_a_message_that_echoes_the_code_or_token_is_redacted(self, scripted: ScriptedFactory) -> None:
        client, _ = scripted(envelope(code=40007, message=f"auth_code_not_found: {CODE} (token {ACCESS_TOKEN})"))
        with pytest.raises(TikTokRequestRejected) as caught:
            await info(client)
        assert CODE not in caught.value.message
        assert ACCESS_TOKEN not in caught.value.message
        assert caught.value.refusal is TikTokRefusal.auth_code_not_found


def own_post_rejection(code: int, message: str) -> TikTokRequestRejected:
    error = classify_error(code, message, request_id=None, http_status=200, about=About.own_post)
    assert isinstance(error, TikTokRequestRejected)
    return error


class TestOwnPostRefusal:
    """`identity/video/info` for a post that is not the identity's: 40007 is the likely code (unconfirmed), so by
    code first, then by the message's words; only there, never for a creator's code."""

    @pytest.mark.parametrize(
        "message",
        ["The item does not exist or does not belong to this identity.", "Object does not exist.", "No such thing", ""],
    )
    def test_40007_is_a_post_not_found_for_the_identity_whatever_it_says(self, message: str) -> None:
        assert own_post_rejection(40007, message).refusal is TikTokRefusal.post_not_found_for_identity

    @pytest.mark.parametrize(
        "message",
        [
            "The item does not exist or does not belong to this identity.",
            "Item not found",
            "Video does not exist",
            "The post doesn't belong to the identity",
            "item_id 7380112233445567001 does not belong to identity 7302000000000000001",
            "The video no longer exists",
            "post_not_found_for_identity",
        ],
    )
    def test_a_message_saying_the_post_is_missing_or_not_the_identitys(self, message: str) -> None:
        assert own_post_rejection(40002, message).refusal is TikTokRefusal.post_not_found_for_identity

    @pytest.mark.parametrize(
        "message",
        [
            "identity_id: Missing data for required field.",
            "item_id: Missing data for required field.",
            "identity_authorized_bc_id: Required when identity_type is BC_AUTH_TT.",
            "identity_type: Must be one of TT_USER, BC_AUTH_TT, AUTH_CODE.",
            "The identity does not exist",
            "auth_code_expired",
            "video_deleted",
            "Something TikTok said",
        ],
    )
    def test_other_messages_name_no_refusal(self, message: str) -> None:
        assert own_post_rejection(40002, message).refusal is None

    @pytest.mark.parametrize("code", [4002, 4025, 900012])
    def test_ads_managers_codes_are_about_codes_not_own_posts(self, code: int) -> None:
        assert own_post_rejection(code, "whatever").refusal is None

    @pytest.mark.parametrize(
        ("code", "error_type"),
        [
            (40100, TikTokRateLimited),
            (50000, TikTokUnavailable),
            (40105, TikTokAccessTokenInvalid),
            (40300, TikTokPermissionDenied),
            (40001, TikTokPermissionDenied),
        ],
    )
    async def test_the_other_codes_land_where_they_always_do(
        self, scripted: ScriptedFactory, code: int, error_type: type[TikTokError]
    ) -> None:
        client, _ = scripted(envelope(code=code, message="The item does not exist"), max_attempts=1)
        with pytest.raises(error_type):
            await own_info(client)

    async def test_through_the_client_a_40007_is_the_refusal_with_tiktoks_words(
        self, scripted: ScriptedFactory
    ) -> None:
        message = "The item does not exist or does not belong to this identity."
        client, script = scripted(
            envelope(code=40007, message=message, request_id="req-7"), envelope(identity_post_data())
        )
        with pytest.raises(TikTokRequestRejected) as caught:
            await own_info(client)
        error = caught.value
        assert (error.refusal, error.code, error.message, error.request_id, error.http_status) == (
            TikTokRefusal.post_not_found_for_identity,
            40007,
            message,
            "req-7",
            200,
        )
        assert len(script.requests) == 1

    async def test_a_parameter_rejection_through_the_client_names_no_refusal(self, scripted: ScriptedFactory) -> None:
        client, _ = scripted(envelope(code=40002, message="identity_authorized_bc_id: Required for BC_AUTH_TT."))
        with pytest.raises(TikTokRequestRejected) as caught:
            await own_info(client, identity_type="BC_AUTH_TT")
        assert (caught.value.code, caught.value.refusal) == (40002, None)
