"""The hot reads (app/kit/hot_reads.py) answer exactly as their routes do.

The plain case of a polled read (a GET with no query string) is served without FastAPI's per-request work; anything
else goes to the operation's route. A route ignores a query parameter it does not declare, and the verdict's
`confirm=false` is its default, so the same request with such a query string is served by the route: each request
here is sent both ways and the two answers compared, status, headers and bytes (the request id aside).
"""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.ext.asyncio import create_async_engine

from app.kit import clock, hot_reads
from tests.api.helpers import apply
from tests.conftest import ADVERTISER_ID, MakeKey, register_advertiser

pytestmark = pytest.mark.asyncio

CODE = "#SBX+video/30d="
OTHER_ACCOUNT = "7000000000000000077"
# What the route serves the same request as, with a query string the hot read leaves to it.
_ROUTED = {"getAuthorization": "?routed=1", "getSparkAdsQuota": "?routed=1", "getDeletionSafety": "?confirm=false"}


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The operations the hot reads served, in order (the handlers are wrapped to count)."""
    calls: list[str] = []
    for operation_id, handler in list(hot_reads._HANDLERS.items()):

        async def counted(
            request: hot_reads.HotRequest, handler: Any = handler, operation_id: str = operation_id
        ) -> Any:
            result = await handler(request)
            calls.append(operation_id)
            return result

        monkeypatch.setitem(hot_reads._HANDLERS, operation_id, counted)
    return calls


def _without_request_id(response: httpx.Response) -> list[tuple[str, str]]:
    return sorted((name, value) for name, value in response.headers.items() if name != "x-request-id")


async def assert_answered_alike(client: httpx.AsyncClient, operation_id: str, path: str) -> httpx.Response:
    hot = await client.get(path)
    routed = await client.get(path + _ROUTED[operation_id])
    assert (hot.status_code, _without_request_id(hot), hot.content) == (
        routed.status_code,
        _without_request_id(routed),
        routed.content,
    ), path
    return hot


@pytest.fixture
async def world(client: httpx.AsyncClient, make_key: MakeKey) -> dict[str, Any]:
    """An authorization with an ad in one ad account and none in another; a key that sees only the other one."""
    await register_advertiser(client)
    registered = await client.post(
        "/v1/advertisers", json={"tiktok_advertiser_id": OTHER_ACCOUNT, "access_token": "t" * 20}
    )
    assert registered.status_code == 201, registered.text
    here = (await apply(client, CODE)).json()
    there = (await apply(client, CODE, advertiser_id=OTHER_ACCOUNT)).json()
    ad = {"ad_id": "1800000000000000001", "campaign_type": "STANDARD", "only_show_as_ad": True}
    assert (await client.post(f"/v1/authorizations/{here['id']}/ads", json=ad)).status_code == 201
    other = await make_key("other", scopes=["read"], advertiser_ids=[OTHER_ACCOUNT])
    return {"here": here, "there": there, "other_key": other}


@pytest.fixture(autouse=True)
def stopped_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """Both ways of a request read the same `now` (the verdict says when it was checked)."""
    now = clock.utcnow()
    monkeypatch.setattr(clock, "utcnow", lambda: now)


async def test_each_answer_of_the_plain_case_is_the_routes(
    client: httpx.AsyncClient, world: dict[str, Any], served: list[str]
) -> None:
    here, there, other = world["here"], world["there"], world["other_key"]
    item_id = here["item_id"]
    cases = [
        ("getAuthorization", f"/v1/authorizations/{here['id']}", 200),
        ("getAuthorization", f"/v1/authorizations/{here['id'].upper()}", 200),
        ("getAuthorization", f"/v1/authorizations/{uuid.uuid4()}", 404),
        ("getSparkAdsQuota", f"/v1/advertisers/{ADVERTISER_ID}/spark-ads-quota", 200),
        ("getSparkAdsQuota", "/v1/advertisers/7000000000000000999/spark-ads-quota", 404),
        ("getDeletionSafety", f"/v1/posts/{item_id}/deletion-safety", 200),
        ("getDeletionSafety", "/v1/posts/7000000000000000999/deletion-safety", 200),  # never seen: safe, unknown
    ]
    for operation_id, path, status in cases:
        served.clear()
        assert (await assert_answered_alike(client, operation_id, path)).status_code == status, path
        assert served == ([operation_id] if status == 200 else []), f"{path} was not served by its hot read"

    # A key that sees only the other ad account: this one's authorization and quota do not exist for it, and the
    # verdict names only the blockers it may see.
    other_client = other.client
    assert (
        await assert_answered_alike(other_client, "getAuthorization", f"/v1/authorizations/{here['id']}")
    ).status_code == 404
    assert (
        await assert_answered_alike(other_client, "getAuthorization", f"/v1/authorizations/{there['id']}")
    ).status_code == 200
    quota = f"/v1/advertisers/{ADVERTISER_ID}/spark-ads-quota"
    assert (await assert_answered_alike(other_client, "getSparkAdsQuota", quota)).status_code == 404
    verdict = (
        await assert_answered_alike(other_client, "getDeletionSafety", f"/v1/posts/{item_id}/deletion-safety")
    ).json()
    assert verdict["other_ad_accounts"] == 1


async def test_what_is_not_the_plain_case_is_left_to_the_route(
    client: httpx.AsyncClient, world: dict[str, Any], served: list[str]
) -> None:
    """Parameters the route refuses (422) or spells otherwise: the hot read leaves each to it."""
    compact = uuid.UUID(world["here"]["id"]).hex
    for operation_id, path, status in [
        ("getAuthorization", "/v1/authorizations/not-a-uuid", 422),
        ("getAuthorization", f"/v1/authorizations/{compact}", 200),  # the route takes it; the hot read does not
        ("getSparkAdsQuota", "/v1/advertisers/ad-account/spark-ads-quota", 422),
        ("getSparkAdsQuota", f"/v1/advertisers/{'9' * 33}/spark-ads-quota", 422),
        ("getDeletionSafety", "/v1/posts/12x/deletion-safety", 422),
        ("getDeletionSafety", f"/v1/posts/{'1' * 33}/deletion-safety", 422),
    ]:
        assert (await assert_answered_alike(client, operation_id, path)).status_code == status, path
    assert served == []


async def test_a_key_without_the_read_scope_is_refused_before_any_read(
    client: httpx.AsyncClient, world: dict[str, Any], make_key: MakeKey, served: list[str]
) -> None:
    writer = await make_key("writer", scopes=["write"])
    for operation_id, path in [
        ("getAuthorization", f"/v1/authorizations/{world['here']['id']}"),
        ("getSparkAdsQuota", f"/v1/advertisers/{ADVERTISER_ID}/spark-ads-quota"),
        ("getDeletionSafety", f"/v1/posts/{world['here']['item_id']}/deletion-safety"),
    ]:
        assert (await assert_answered_alike(writer.client, operation_id, path)).status_code == 403
    assert served == []


async def test_postgres_out_of_reach_is_the_same_503(
    app: FastAPI, client: httpx.AsyncClient, world: dict[str, Any], served: list[str]
) -> None:
    """The key is already cached; then the pool's Postgres is a closed port on loopback."""
    real = app.state.engine
    app.state.engine = create_async_engine("postgresql+asyncpg://nobody@127.0.0.1:1/none")
    try:
        for operation_id, path in [
            ("getAuthorization", f"/v1/authorizations/{world['here']['id']}"),
            ("getSparkAdsQuota", f"/v1/advertisers/{ADVERTISER_ID}/spark-ads-quota"),
            ("getDeletionSafety", f"/v1/posts/{world['here']['item_id']}/deletion-safety"),
        ]:
            answered = await assert_answered_alike(client, operation_id, path)
            assert (answered.status_code, answered.json()["reason"]) == (503, "database_unavailable")
    finally:
        await app.state.engine.dispose()
        app.state.engine = real
    assert served == []


_SEGMENT = st.one_of(
    st.text(alphabet="0123456789abcdefABCDEF-", min_size=0, max_size=40),
    st.text(min_size=1, max_size=12).filter(lambda text: "/" not in text),
    st.from_regex(r"[0-9]{1,34}", fullmatch=True),
    st.uuids().map(str),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(segment=_SEGMENT)
async def test_any_path_segment_is_answered_as_the_route_answers_it(
    client: httpx.AsyncClient, world: dict[str, Any], segment: str
) -> None:
    """Whatever the segment (empty, malformed, too long, percent-encoded), both ways answer alike."""
    encoded = quote(segment, safe="")
    for operation_id, path in [
        ("getAuthorization", f"/v1/authorizations/{encoded}"),
        ("getSparkAdsQuota", f"/v1/advertisers/{encoded}/spark-ads-quota"),
        ("getDeletionSafety", f"/v1/posts/{encoded}/deletion-safety"),
    ]:
        await assert_answered_alike(client, operation_id, path)
