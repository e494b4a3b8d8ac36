"""Reading TikTok's successful answers (docs/tiktok.md, "The fields the service reads"): how `data` becomes a
PostInfo or a PostPage, through the client and a scripted transport, and how text TikTok sends is made storable."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.tiktok.errors import TikTokBadResponse
from app.tiktok.models import ItemType, PostStatus
from app.tiktok.parse import storable_text
from tests.tiktok.conftest import (
    ACCESS_TOKEN,
    ADVERTISER_ID,
    BC_ID,
    BC_IDENTITY_ID,
    CODE,
    OWN_IDENTITY_ID,
    OWN_ITEM_ID,
    ScriptedFactory,
    envelope,
    identity_post_data,
    info,
    own_info,
    post_data,
)


class TestPostParsing:
    """How `data` becomes a PostInfo (docs/tiktok.md, "The fields the service reads")."""

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


class TestIdentityPostParsing:
    """How `identity/video/info` data (`data.video_detail`) becomes a PostInfo: the post's fields at the top
    level, the identity the one asked about, a window only when auth_info comes (AUTH_CODE)."""

    async def test_reads_a_video_with_the_identity_asked_about_and_no_window(self, scripted: ScriptedFactory) -> None:
        client, _ = scripted(envelope(identity_post_data()))
        post = await own_info(client)
        assert post.item_id == OWN_ITEM_ID
        assert post.item_type is ItemType.video
        assert post.caption == "Our spring collection, in one take"
        assert (post.status, post.raw_status) == (PostStatus.public, "ITEM_STATUS_HESITATE_RECOMMEND")
        assert (post.identity_id, post.identity_type, post.tiktok_name) == (OWN_IDENTITY_ID, "TT_USER", None)
        assert post.duration_seconds == 24.0
        assert (post.ad_auth_status, post.auth_start_at, post.auth_end_at) == (None, None, None)
        assert (post.original_item_id, post.is_multi_duet_stitch, post.mentioned_item_ids) == (None, False, ())

    async def test_the_business_center_identity_is_the_one_asked_about(self, scripted: ScriptedFactory) -> None:
        client, _ = scripted(envelope(identity_post_data()))
        post = await own_info(client, identity_type="BC_AUTH_TT", identity_id=BC_IDENTITY_ID, bc_id=BC_ID)
        assert (post.identity_id, post.identity_type) == (BC_IDENTITY_ID, "BC_AUTH_TT")

    async def test_a_carousel_without_video_info_has_no_duration(self, scripted: ScriptedFactory) -> None:
        carousel_info = {"image_info": [{"image_url": "https://p16-sign.example/1.jpeg?x-expires=1"}]}
        client, _ = scripted(
            envelope(identity_post_data(item_type="CAROUSEL", video_info=None, carousel_info=carousel_info))
        )
        post = await own_info(client)
        assert post.item_type is ItemType.carousel
        assert post.duration_seconds is None

    async def test_without_item_type_a_post_without_video_info_is_a_carousel(self, scripted: ScriptedFactory) -> None:
        with_video = identity_post_data()
        del with_video["video_detail"]["item_type"]
        without_video = identity_post_data(video_info=None)
        del without_video["video_detail"]["item_type"]
        client, _ = scripted(envelope(with_video), envelope(without_video))
        assert (await own_info(client)).item_type is ItemType.video
        assert (await own_info(client)).item_type is ItemType.carousel

    @pytest.mark.parametrize(
        ("raw", "status"),
        [
            ("ITEM_STATUS_HESITATE_RECOMMEND", PostStatus.public),
            ("ITEM_STATUS_ONLY_AUTHOR_SEE", PostStatus.private),
            ("STATUS_ONLY_FRIEND_SEE", PostStatus.friends_only),
            ("ITEM_STATUS_USER_DELETE", PostStatus.deleted),
            ("ITEM_STATUS_AUDIT_DELETE", PostStatus.banned),
            ("ITEM_STATUS_SOMETHING_NEW", PostStatus.unknown),
        ],
    )
    async def test_status_spellings_fold_and_the_raw_value_is_kept(
        self, scripted: ScriptedFactory, raw: str, status: PostStatus
    ) -> None:
        client, _ = scripted(envelope(identity_post_data(status=raw)))
        post = await own_info(client)
        assert (post.status, post.raw_status) == (status, raw)

    async def test_an_auth_info_gives_the_window(self, scripted: ScriptedFactory) -> None:
        """AUTH_CODE identities only; TikTok's example has ISO times."""
        auth_info = {
            "ad_auth_status": "AUTHORIZED",
            "auth_start_time": "2025-05-19T11:40:50Z",
            "auth_end_time": "2025-06-18T11:40:50Z",
            "invite_start_time": "2025-05-19T11:40:50Z",
        }
        client, _ = scripted(envelope(identity_post_data(auth_info=auth_info)))
        post = await own_info(client, identity_type="AUTH_CODE", identity_id="7301000000000000001")
        assert post.identity_type == "AUTH_CODE"
        assert post.ad_auth_status == "AUTHORIZED"
        assert post.auth_start_at == datetime(2025, 5, 19, 11, 40, 50, tzinfo=UTC)
        assert post.auth_end_at == datetime(2025, 6, 18, 11, 40, 50, tzinfo=UTC)

    @pytest.mark.parametrize("auth_info", [{}, None])
    async def test_an_empty_auth_info_is_no_window(self, scripted: ScriptedFactory, auth_info: object) -> None:
        client, _ = scripted(envelope(identity_post_data(auth_info=auth_info)))
        post = await own_info(client)
        assert (post.ad_auth_status, post.auth_start_at, post.auth_end_at) == (None, None, None)

    async def test_a_name_is_taken_only_if_tiktok_sends_one(self, scripted: ScriptedFactory) -> None:
        user_info = {"identity_id": "someone else", "identity_type": "AUTH_CODE", "tiktok_name": "brand.official"}
        client, _ = scripted(envelope(identity_post_data(user_info=user_info)))
        post = await own_info(client)
        assert post.tiktok_name == "brand.official"
        assert (post.identity_id, post.identity_type) == (OWN_IDENTITY_ID, "TT_USER")

    async def test_a_numeric_item_id_reads_as_its_digits(self, scripted: ScriptedFactory) -> None:
        client, _ = scripted(envelope(identity_post_data(item_id=int(OWN_ITEM_ID))))
        assert (await own_info(client)).item_id == OWN_ITEM_ID

    @pytest.mark.parametrize(
        ("data", "match"),
        [
            pytest.param({}, "video_detail", id="no-video-detail"),
            pytest.param({"video_detail": None, "video_details": []}, "video_detail", id="null-video-detail"),
            pytest.param({"video_details": [identity_post_data()["video_detail"]]}, "video_detail", id="plural-only"),
            pytest.param(identity_post_data(item_id=None), "item_id is missing", id="no-item-id"),
            pytest.param(identity_post_data(item_id="7380112233445567002"), "asked for", id="another-post"),
            pytest.param(identity_post_data(item_type="STORY"), "item_type", id="unknown-item-type"),
        ],
    )
    async def test_an_answer_without_the_post_asked_for_is_a_bad_response(
        self, scripted: ScriptedFactory, data: dict[str, object], match: str
    ) -> None:
        client, script = scripted(envelope(data), max_attempts=2)
        with pytest.raises(TikTokBadResponse, match=match):
            await own_info(client)
        assert len(script.requests) == 2  # parsed inside the attempt, so retried like any bad body

    async def test_every_text_field_is_made_storable(self, scripted: ScriptedFactory) -> None:
        bad = "\x00\ud800"
        data = identity_post_data(text="caption" + bad, status="ITEM_STATUS_HESITATE_RECOMMEND" + bad)
        data["video_detail"]["auth_info"] = {"ad_auth_status": "AUTHORIZED" + bad}
        body = json.dumps({"code": 0, "message": "OK", "request_id": "r", "data": data}).encode()
        client, _ = scripted(httpx.Response(200, content=body, headers={"Content-Type": "application/json"}))
        post = await own_info(client)
        for text in (post.caption, post.raw_status, post.ad_auth_status):
            assert text is not None
            assert text.endswith("\ufffd\ufffd")


# Text as JSON can carry it: NUL and lone surrogates come often, next to anything else Unicode has. Built from a
# list because st.text() and st.characters() leave surrogates out, whatever their arguments.
_SURROGATE = st.integers(min_value=0xD800, max_value=0xDFFF).map(chr)
_ANY_TEXT = st.lists(st.one_of(st.characters(), _SURROGATE, st.just("\x00"))).map("".join)
_WELL_FORMED_TEXT = st.text(st.characters(exclude_categories=["Cs"], exclude_characters=["\x00"]))


class TestStorableText:
    """Text TikTok sends must be storable in Postgres and serialisable as UTF-8, wherever it ends up."""

    @pytest.mark.parametrize(
        ("raw", "stored"),
        [
            ("a\x00b", "a\ufffdb"),
            ("\ud800", "\ufffd"),
            ("x\udfffy", "x\ufffdy"),
            ("\ud83d and the rest", "\ufffd and the rest"),  # half of an emoji's surrogate pair
            ("\x00\ud800\x00", "\ufffd\ufffd\ufffd"),
        ],
    )
    def test_nul_and_lone_surrogates_become_replacement_characters(self, raw: str, stored: str) -> None:
        assert storable_text(raw) == stored

    @pytest.mark.parametrize(
        "text",
        ["", "Unboxing the new trail shoes", "Cafés ☕ 中文 😀 👨\u200d👩\u200d👧 \U0010ffff", "tab\tnew\nline\x01"],
    )
    def test_well_formed_text_is_unchanged(self, text: str) -> None:
        assert storable_text(text) == text

    @given(_ANY_TEXT)
    def test_the_result_always_encodes_to_utf8_and_has_no_nul(self, text: str) -> None:
        stored = storable_text(text)
        stored.encode("utf-8")
        assert "\x00" not in stored
        assert len(stored) == len(text)  # one character for one: nothing else moves

    @given(_WELL_FORMED_TEXT)
    def test_well_formed_text_without_nul_always_comes_back_unchanged(self, text: str) -> None:
        assert storable_text(text) == text

    async def test_a_caption_with_nul_and_a_lone_surrogate_in_the_json_is_stored_replaced(
        self, scripted: ScriptedFactory
    ) -> None:
        """A real body: the escapes as TikTok would write them, which json.loads turns into NUL and a lone
        surrogate."""
        body = json.dumps({"code": 0, "message": "OK", "request_id": "r", "data": post_data(text="CAPTION")})
        body = body.replace("CAPTION", "Sale\\u0000 today \\ud800!")
        assert "\\u0000" in body
        assert "\\ud800" in body
        client, _ = scripted(httpx.Response(200, content=body.encode(), headers={"Content-Type": "application/json"}))
        post = await info(client)
        assert post.caption == "Sale\ufffd today \ufffd!"

    async def test_every_text_field_of_a_post_is_made_storable(self, scripted: ScriptedFactory) -> None:
        bad = "\x00\ud800"
        data = post_data(
            item_id="7380112233445566002" + bad,
            text="caption" + bad,
            status="HESITATE_RECOMMEND" + bad,
            duet_original_item_id="7380112233445566701" + bad,
            stitch_original_item_id="7380112233445566702" + bad,
            mentioned_item_ids=["1" + bad],
        )
        data["user_info"] = {key: value + bad for key, value in data["user_info"].items()}
        data["auth_info"]["ad_auth_status"] = "AUTHORIZED" + bad
        # json.dumps escapes what UTF-8 cannot carry ("\\ud800"), as a JSON body must.
        body = json.dumps({"code": 0, "message": "OK", "request_id": "r", "data": data}).encode()
        client, _ = scripted(httpx.Response(200, content=body, headers={"Content-Type": "application/json"}))
        post = await info(client)
        texts: list[str] = []
        for field in dataclasses.fields(post):
            value = getattr(post, field.name)
            if type(value) is str:  # not the enums, which are read, not kept
                texts.append(value)
            elif isinstance(value, tuple):
                texts.extend(value)
        assert len(texts) == 10
        for text in texts:
            assert text.endswith("\ufffd\ufffd")
            text.encode("utf-8")
        json.dumps(dataclasses.asdict(post), default=str, ensure_ascii=False).encode("utf-8")
