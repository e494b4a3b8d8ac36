"""Safe retries: `Idempotency-Key` on every /v1 write, on real Postgres, through the app.

The first answer for (API key, Idempotency-Key) is replayed byte for byte for 24 hours, with no TikTok call and no
write; the same key for another request is 422, while the first still runs 409; answers that say "try again" are
not kept, so that the retry can succeed.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from typing import Any

import httpx
import pytest
import time_machine
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine

from app.kit import clock
from app.kit.crypto import KeyHasher
from app.kit.idempotency import RETENTION, purge_expired
from tests.api.helpers import (
    CountingTransport,
    GatedTransport,
    assert_problem,
    count_rows,
    dump_database,
)
from tests.conftest import (
    ADVERTISER_ID,
    API_KEY,
    API_KEY_SECRET,
    RESCANNING_PLANNER,
    SHORT_DEADLINE_SECONDS,
    Running,
)

VIDEO_30D = "#SBX+video/30d="
VIDEO_7D = "#SBX+video/7d="
EXPIRED = "#SBX+expired/error="
TIMES_OUT = "#SBX+authorize/times-out="
AD_ID = "1800000000000000001"
APPLY_PATH = f"/v1/advertisers/{ADVERTISER_ID}/authorizations"
_caller = KeyHasher(API_KEY_SECRET).hash  # how the idempotency table names a caller

Service = Callable[..., Any]


@pytest.fixture(autouse=True)
async def _no_keys_left(engine: AsyncEngine) -> AsyncIterator[None]:
    """The suite's truncation does not know this table: every test here starts and ends without keys."""
    await _truncate_keys(engine)
    yield
    await _truncate_keys(engine)


async def _truncate_keys(engine: AsyncEngine) -> None:
    async with engine.begin() as connection:
        await connection.execute(text("TRUNCATE idempotency_keys"))


def _key() -> str:
    return str(uuid.uuid4())


async def _apply(client: httpx.AsyncClient, code: str, key: str | None) -> httpx.Response:
    headers = {"Idempotency-Key": key} if key is not None else {}
    return await client.post(APPLY_PATH, json={"auth_code": code}, headers=headers)


async def _entries(db: AsyncEngine) -> list[dict[str, Any]]:
    async with db.connect() as connection:
        rows = await connection.execute(text("SELECT * FROM idempotency_keys ORDER BY created_at, key"))
        return [dict(row._mapping) for row in rows]


async def _set_state(db: AsyncEngine, state: str) -> None:
    async with db.begin() as connection:
        await connection.execute(text("UPDATE authorizations SET state = :state"), {"state": state})


def _counting(sandbox: Any) -> CountingTransport:
    return CountingTransport(httpx.ASGITransport(app=sandbox))


def assert_replay_of(replay: httpx.Response, first: httpx.Response) -> None:
    """The same answer, byte for byte, marked as a replay."""
    assert replay.status_code == first.status_code, replay.text
    assert replay.content == first.content
    assert replay.headers.get("content-type") == first.headers.get("content-type")
    assert replay.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers


async def _client_for(app: Any, api_key: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://service.test",
        headers={"Authorization": f"Bearer {api_key}"},
    )


class TestReplay:
    async def test_a_201_apply_is_replayed_byte_for_byte_without_tiktok_or_writes(
        self, service: Service, sandbox: Any, db: AsyncEngine
    ) -> None:
        tiktok = _counting(sandbox)
        client = (await service(tiktok)).client
        key = _key()
        first = await _apply(client, VIDEO_30D, key)
        assert first.status_code == 201, first.text
        calls, database, entries = len(tiktok.paths), await dump_database(db), await _entries(db)

        replay = await _apply(client, VIDEO_30D, key)

        assert_replay_of(replay, first)
        assert replay.headers["x-request-id"] != first.headers["x-request-id"]  # this request's own id
        assert len(tiktok.paths) == calls  # no TikTok call
        assert await dump_database(db) == database  # nothing written...
        assert await _entries(db) == entries  # ...not even to the stored answer
        assert await count_rows(db, "authorizations") == 1
        (entry,) = entries
        assert (entry["state"], entry["status"], bytes(entry["body"])) == ("done", 201, first.content)
        assert entry["caller"] == _caller(API_KEY)
        assert entry["headers"] == {"content-type": "application/json", "location": first.headers["location"]}
        assert replay.headers["location"] == first.headers["location"]

    async def test_every_write_method_replays_its_first_answer(
        self, service: Service, sandbox: Any, db: AsyncEngine
    ) -> None:
        tiktok = _counting(sandbox)
        client = (await service(tiktok)).client
        authorization = (await _apply(client, VIDEO_30D, None)).json()
        advertiser_path = f"/v1/advertisers/{ADVERTISER_ID}"
        ads_path = f"/v1/authorizations/{authorization['id']}/ads"
        ad = {"ad_id": AD_ID, "campaign_type": "STANDARD", "only_show_as_ad": True}

        # POST: the ad is linked once (201); the replay is that 201, not the 200 of "linked already".
        key = _key()
        linked = await client.post(ads_path, json=ad, headers={"Idempotency-Key": key})
        assert linked.status_code == 201, linked.text
        assert_replay_of(await client.post(ads_path, json=ad, headers={"Idempotency-Key": key}), linked)

        # PATCH: the replay is the first answer even after another change.
        key = _key()
        renamed = await client.patch(advertiser_path, json={"name": "First"}, headers={"Idempotency-Key": key})
        assert renamed.status_code == 200, renamed.text
        assert (await client.patch(advertiser_path, json={"name": "Second"})).status_code == 200
        assert_replay_of(
            await client.patch(advertiser_path, json={"name": "First"}, headers={"Idempotency-Key": key}), renamed
        )
        assert (await client.get(advertiser_path)).json()["name"] == "Second"  # the replay changed nothing

        # PUT: TikTok checks the new token once.
        key, token = _key(), {"access_token": "another-sandbox-token"}
        reconnected = await client.put(f"{advertiser_path}/access-token", json=token, headers={"Idempotency-Key": key})
        assert reconnected.status_code == 200, reconnected.text
        calls = len(tiktok.paths)
        replay = await client.put(f"{advertiser_path}/access-token", json=token, headers={"Idempotency-Key": key})
        assert_replay_of(replay, reconnected)
        assert len(tiktok.paths) == calls

        # DELETE: 204 with no body, replayed as 204 with no body.
        key = _key()
        removed = await client.delete(f"{ads_path}/{AD_ID}", headers={"Idempotency-Key": key})
        assert (removed.status_code, removed.content) == (204, b"")
        replay = await client.delete(f"{ads_path}/{AD_ID}", headers={"Idempotency-Key": key})
        assert_replay_of(replay, removed)
        assert replay.content == b""
        assert "content-type" not in replay.headers

        assert await count_rows(db, "ads") == 1
        assert [entry["status"] for entry in await _entries(db)] == [201, 200, 200, 204]

    async def test_a_refusal_is_kept_and_replayed(self, service: Service, sandbox: Any, db: AsyncEngine) -> None:
        tiktok = _counting(sandbox)
        client = (await service(tiktok)).client
        key = _key()
        refused = await _apply(client, EXPIRED, key)
        assert_problem(refused, 422, "auth_code_expired")
        calls = len(tiktok.paths)

        assert_replay_of(await _apply(client, EXPIRED, key), refused)
        assert len(tiktok.paths) == calls
        assert [(entry["state"], entry["status"]) for entry in await _entries(db)] == [("done", 422)]


class TestKeyBindsOneRequest:
    async def test_another_body_is_422_and_runs_nothing(self, service: Service, sandbox: Any, db: AsyncEngine) -> None:
        tiktok = _counting(sandbox)
        client = (await service(tiktok)).client
        key = _key()
        assert (await _apply(client, VIDEO_30D, key)).status_code == 201
        calls = len(tiktok.paths)

        body = assert_problem(await _apply(client, VIDEO_7D, key), 422, "idempotency_key_reused")

        assert body["retryable"] is False
        assert len(tiktok.paths) == calls
        assert await count_rows(db, "authorizations") == 1

    async def test_another_path_or_method_is_422(self, client: httpx.AsyncClient, advertiser: dict[str, Any]) -> None:
        key = _key()
        path = f"/v1/advertisers/{ADVERTISER_ID}"
        assert (await client.patch(path, json={"name": "A"}, headers={"Idempotency-Key": key})).status_code == 200

        other_path = await client.patch(f"{path}0", json={"name": "A"}, headers={"Idempotency-Key": key})
        other_query = await client.patch(f"{path}?x=1", json={"name": "A"}, headers={"Idempotency-Key": key})
        for response in (other_path, other_query):
            assert_problem(response, 422, "idempotency_key_reused")
        assert (await client.get(path)).json()["name"] == "A"

        # Another method on one path: a key's PATCH, then its DELETE.
        api_key = (await client.post("/v1/api-keys", json={"name": "tool"})).json()
        key_path = f"/v1/api-keys/{api_key['id']}"
        headers = {"Idempotency-Key": _key()}
        assert (await client.patch(key_path, json={"name": "renamed"}, headers=headers)).status_code == 200
        assert_problem(await client.delete(key_path, headers=headers), 422, "idempotency_key_reused")
        assert (await client.get(key_path)).json()["revoked_at"] is None

    async def test_a_method_the_path_does_not_serve_is_405_whatever_the_key(
        self, client: httpx.AsyncClient, advertiser: dict[str, Any], db: AsyncEngine
    ) -> None:
        """No operation, nothing to keep: the key is not looked at, let alone claimed."""
        key = _key()
        path = f"/v1/advertisers/{ADVERTISER_ID}"
        assert (await client.patch(path, json={"name": "A"}, headers={"Idempotency-Key": key})).status_code == 200
        entries = await _entries(db)
        response = await client.put(path, json={"name": "A"}, headers={"Idempotency-Key": key})
        assert_problem(response, 405, "method_not_allowed")
        assert await _entries(db) == entries

    async def test_keys_of_two_api_keys_are_independent(self, service: Service, sandbox: Any, db: AsyncEngine) -> None:
        started: Running = await service(_counting(sandbox))
        created = await started.client.post(
            "/v1/api-keys", json={"name": "campaign-tool", "advertiser_ids": [ADVERTISER_ID]}
        )
        assert created.status_code == 201, created.text
        key = _key()
        async with await _client_for(started.app, created.json()["key"]) as other:
            first = await _apply(started.client, VIDEO_30D, key)
            assert first.status_code == 201

            # The same key from the other API key: its own request, run (the post is authorized already: 200).
            theirs = await _apply(other, VIDEO_30D, key)
            assert (theirs.status_code, theirs.headers.get("idempotent-replayed")) == (200, None)
            # ...and bound to that request only for that API key.
            assert_problem(await _apply(other, VIDEO_7D, key), 422, "idempotency_key_reused")
            assert_replay_of(await _apply(other, VIDEO_30D, key), theirs)
            assert_replay_of(await _apply(started.client, VIDEO_30D, key), first)

        callers = {entry["caller"] for entry in await _entries(db)}
        assert callers == {_caller(API_KEY), _caller(created.json()["key"])}


class TestRetryableAnswersAreNotKept:
    async def test_a_tiktok_outage_is_not_kept_and_the_retry_succeeds(
        self, service: Service, sandbox: Any, db: AsyncEngine
    ) -> None:
        inner = httpx.ASGITransport(app=sandbox)
        outage = [False]

        async def handle(request: httpx.Request) -> httpx.Response:
            if outage[0]:
                return httpx.Response(
                    200, json={"code": 50000, "message": "System error", "request_id": "r", "data": {}}
                )
            return await inner.handle_async_request(request)

        started = await service(httpx.MockTransport(handle))  # registers the ad account while TikTok is up
        outage[0] = True
        key = _key()

        failed = await _apply(started.client, VIDEO_30D, key)

        body = assert_problem(failed, 503, "tiktok_unavailable")
        assert body["retryable"] is True
        assert await _entries(db) == []
        outage[0] = False
        succeeded = await _apply(started.client, VIDEO_30D, key)
        assert succeeded.status_code == 201, succeeded.text
        assert_replay_of(await _apply(started.client, VIDEO_30D, key), succeeded)

    @pytest.mark.tiktok_deadline(SHORT_DEADLINE_SECONDS)
    async def test_a_lost_authorize_answer_is_not_kept_and_the_retry_settles_it(
        self, service: Service, sandbox: Any, db: AsyncEngine
    ) -> None:
        tiktok = _counting(sandbox)
        client = (await service(tiktok)).client
        key = _key()

        assert_problem(await _apply(client, TIMES_OUT, key), 504, "tiktok_timeout")
        assert await _entries(db) == []

        settled = await _apply(client, TIMES_OUT, key)
        assert settled.status_code == 201, settled.text
        assert tiktok.count("authorize") == 1
        assert_replay_of(await _apply(client, TIMES_OUT, key), settled)

    async def test_a_retryable_409_is_not_kept(self, service: Service, sandbox: Any, db: AsyncEngine) -> None:
        """Not a 5xx, but `retryable: true`: the authorization's last apply is not settled yet."""
        client = (await service(_counting(sandbox))).client
        created = (await _apply(client, VIDEO_30D, None)).json()
        path = f"/v1/authorizations/{created['id']}/unauthorize"
        await _set_state(db, "pending")
        key = _key()

        busy = await client.post(path, headers={"Idempotency-Key": key})

        assert assert_problem(busy, 409, "authorization_in_progress")["retryable"] is True
        assert await _entries(db) == []
        await _set_state(db, "active")
        retried = await client.post(path, headers={"Idempotency-Key": key})
        assert (retried.status_code, retried.json()["status"]) == (200, "unauthorized")
        assert_replay_of(await client.post(path, headers={"Idempotency-Key": key}), retried)

    async def test_a_refused_caller_is_not_kept(
        self, service: Service, sandbox: Any, anonymous: httpx.AsyncClient, db: AsyncEngine
    ) -> None:
        started: Running = await service(_counting(sandbox))
        key = _key()
        unknown = await anonymous.post(
            APPLY_PATH,
            json={"auth_code": VIDEO_30D},
            headers={"Authorization": "Bearer not-a-key", "Idempotency-Key": key},
        )
        assert_problem(unknown, 401, "not_authenticated")
        created = await started.client.post("/v1/api-keys", json={"name": "not-admin"})
        async with await _client_for(started.app, created.json()["key"]) as not_admin:
            refused = await not_admin.post("/v1/api-keys", json={"name": "x"}, headers={"Idempotency-Key": key})
        assert_problem(refused, 403, "admin_required")

        assert await _entries(db) == []


class TestConcurrency:
    async def test_a_retry_while_the_first_runs_is_409_then_the_replay(
        self, service: Service, sandbox: Any, db: AsyncEngine
    ) -> None:
        gate = GatedTransport(httpx.ASGITransport(app=sandbox), "authorize")
        started: Running = await service(gate)
        client = started.client
        key = _key()
        first = asyncio.create_task(_apply(client, VIDEO_30D, key))
        await gate.wait_for(1)
        assert started.app.state.engine.pool.checkedout() == 0  # the claim holds no connection while the app runs

        busy = await _apply(client, VIDEO_30D, key)

        body = assert_problem(busy, 409, "idempotency_key_in_use")
        assert body["retryable"] is True
        assert busy.headers["retry-after"] == "1"
        gate.open()
        answered = await first
        assert answered.status_code == 201, answered.text
        assert_replay_of(await _apply(client, VIDEO_30D, key), answered)

    async def test_fifty_requests_with_one_key_make_one_side_effect_and_one_answer(
        self, service: Service, sandbox: Any, db: AsyncEngine
    ) -> None:
        gate = GatedTransport(httpx.ASGITransport(app=sandbox), "authorize")
        tiktok = CountingTransport(gate)
        client = (await service(tiktok)).client
        key = _key()

        tasks = [asyncio.create_task(_apply(client, VIDEO_30D, key)) for _ in range(50)]
        await gate.wait_for(1)
        early: list[httpx.Response] = []
        pending = set(tasks)
        async with asyncio.timeout(60):
            while len(early) < 49:  # all but the one TikTok holds
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                early.extend(task.result() for task in done)
        for response in early:
            assert_problem(response, 409, "idempotency_key_in_use")
        gate.open()
        answers = await asyncio.gather(*tasks)
        async with asyncio.timeout(60):
            for index, answer in enumerate(answers):
                while answer.status_code == 409:
                    await asyncio.sleep(0.01)
                    answer = answers[index] = await _apply(client, VIDEO_30D, key)

        assert {(answer.status_code, answer.content, answer.headers["content-type"]) for answer in answers} == {
            (201, answers[0].content, "application/json")
        }
        assert sum("idempotent-replayed" not in answer.headers for answer in answers) == 1
        assert tiktok.count("authorize") == 1
        assert await count_rows(db, "authorizations") == 1


class TestExpiry:
    async def test_after_24_hours_the_key_is_purged_and_can_be_used_afresh(
        self, service: Service, sandbox: Any, db: AsyncEngine
    ) -> None:
        client = (await service(_counting(sandbox))).client
        key = _key()
        first = await _apply(client, VIDEO_30D, key)
        assert first.status_code == 201

        with time_machine.travel(clock.utcnow() + RETENTION - timedelta(minutes=1), tick=True):
            assert_replay_of(await _apply(client, VIDEO_30D, key), first)
        with time_machine.travel(clock.utcnow() + RETENTION + timedelta(minutes=1), tick=True):
            afresh = await _apply(client, VIDEO_7D, key)  # another request: no longer `idempotency_key_reused`

        assert afresh.status_code == 201, afresh.text
        assert "idempotent-replayed" not in afresh.headers
        (entry,) = await _entries(db)
        assert bytes(entry["body"]) == afresh.content

    async def test_a_callers_expired_keys_are_purged_when_it_claims_one(
        self, service: Service, sandbox: Any, db: AsyncEngine
    ) -> None:
        started: Running = await service(_counting(sandbox))
        created = await started.client.post(
            "/v1/api-keys", json={"name": "campaign-tool", "advertiser_ids": [ADVERTISER_ID]}
        )
        async with await _client_for(started.app, created.json()["key"]) as other:
            for client in (started.client, other):
                for name in ("a", "b"):
                    path = f"/v1/advertisers/{ADVERTISER_ID}"
                    response = await client.patch(path, json={"name": name}, headers={"Idempotency-Key": name})
                    assert response.status_code == 200
        async with db.begin() as connection:
            await connection.execute(text("UPDATE idempotency_keys SET expires_at = now() - interval '1 second'"))

        assert (await _apply(started.client, VIDEO_30D, "c")).status_code == 201

        remaining = {(bytes(entry["caller"]), entry["key"]) for entry in await _entries(db)}
        other_caller = _caller(created.json()["key"])
        assert remaining == {(_caller(API_KEY), "c"), (other_caller, "a"), (other_caller, "b")}

    async def test_a_purge_deletes_at_most_its_batch_whatever_plan_postgres_chooses(
        self, client: httpx.AsyncClient, advertiser: dict[str, Any], db: AsyncEngine, database_url: str
    ) -> None:
        """The batch bounds each claim's work, under any plan: a bare `IN (... LIMIT 1 FOR UPDATE SKIP LOCKED)`, run
        again for every row, skipped what it had just deleted each time and deleted all three."""
        for name in ("a", "b", "c"):
            path = f"/v1/advertisers/{ADVERTISER_ID}"
            response = await client.patch(path, json={"name": name}, headers={"Idempotency-Key": name})
            assert response.status_code == 200
        async with db.begin() as connection:
            await connection.execute(
                text("UPDATE idempotency_keys SET expires_at = now() - interval '1 second' * (200 - ascii(key))")
            )
        engine = create_async_engine(database_url, connect_args={"server_settings": RESCANNING_PLANNER})
        try:
            async with async_sessionmaker(engine).begin() as session:
                purged = await purge_expired(session, now=clock.utcnow(), limit=1)
        finally:
            await engine.dispose()

        assert purged == 1
        assert sorted(entry["key"] for entry in await _entries(db)) == ["b", "c"]  # "a" expired first


class TestAbandoned:
    async def test_an_entry_in_progress_for_too_long_is_taken_over_by_the_same_request(
        self, client: httpx.AsyncClient, advertiser: dict[str, Any], db: AsyncEngine
    ) -> None:
        path = f"/v1/advertisers/{ADVERTISER_ID}"
        key = _key()
        assert (await client.patch(path, json={"name": "A"}, headers={"Idempotency-Key": key})).status_code == 200
        # As a process that died mid-request leaves it.
        async with db.begin() as connection:
            await connection.execute(
                text("UPDATE idempotency_keys SET state = 'in_progress', status = NULL, headers = NULL, body = NULL")
            )
        assert_problem(
            await client.patch(path, json={"name": "A"}, headers={"Idempotency-Key": key}),
            409,
            "idempotency_key_in_use",
        )
        async with db.begin() as connection:
            await connection.execute(text("UPDATE idempotency_keys SET created_at = created_at - interval '1 hour'"))

        assert_problem(
            await client.patch(path, json={"name": "B"}, headers={"Idempotency-Key": key}),
            422,
            "idempotency_key_reused",
        )
        again = await client.patch(path, json={"name": "A"}, headers={"Idempotency-Key": key})

        assert again.status_code == 200, again.text
        assert "idempotent-replayed" not in again.headers
        assert [(entry["state"], entry["status"]) for entry in await _entries(db)] == [("done", 200)]


class TestHeader:
    @pytest.mark.parametrize(
        "value",
        [b"", b"x" * 256, b"has space", b"caf\xc3\xa9", b"tab\there"],
        ids=["empty", "too-long", "space", "non-ascii", "control"],
    )
    async def test_a_malformed_key_is_422_and_runs_nothing(
        self, client: httpx.AsyncClient, advertiser: dict[str, Any], db: AsyncEngine, value: bytes
    ) -> None:
        response = await client.post(APPLY_PATH, json={"auth_code": VIDEO_30D}, headers=[(b"Idempotency-Key", value)])

        assert_problem(response, 422, "idempotency_key_invalid")
        assert await count_rows(db, "authorizations") == 0
        assert await _entries(db) == []

    async def test_two_keys_in_one_request_are_422(self, client: httpx.AsyncClient, advertiser: dict[str, Any]) -> None:
        headers = [(b"Idempotency-Key", b"one"), (b"Idempotency-Key", b"two")]
        response = await client.post(APPLY_PATH, json={"auth_code": VIDEO_30D}, headers=headers)
        assert_problem(response, 422, "idempotency_key_invalid")

    async def test_the_longest_key_and_any_visible_character_are_accepted(
        self, client: httpx.AsyncClient, advertiser: dict[str, Any]
    ) -> None:
        for key in ("k" * 255, '"8e03978e-40d5-43e8-bc93-6894a57f9324"', "!~{}[]<>"):
            response = await _apply(client, VIDEO_30D, key)
            assert response.status_code in (200, 201), response.text

    async def test_without_the_header_nothing_changes(
        self, client: httpx.AsyncClient, advertiser: dict[str, Any], db: AsyncEngine
    ) -> None:
        first = await _apply(client, VIDEO_30D, None)
        second = await _apply(client, VIDEO_30D, None)

        assert (first.status_code, second.status_code) == (201, 200)  # the service's own answers (D2)
        assert "idempotent-replayed" not in second.headers
        assert await _entries(db) == []

    async def test_a_read_ignores_the_header(
        self, client: httpx.AsyncClient, advertiser: dict[str, Any], db: AsyncEngine
    ) -> None:
        for value in ("a-key", "not a valid key"):
            response = await client.get(APPLY_PATH, headers={"Idempotency-Key": value})
            assert response.status_code == 200, response.text
            assert "idempotent-replayed" not in response.headers
        assert await _entries(db) == []

    async def test_postgres_unreachable_is_503_database_unavailable(
        self, client: httpx.AsyncClient, advertiser: dict[str, Any], app: Any
    ) -> None:
        # A port where nothing listens: connecting is refused at once.
        unreachable = create_async_engine("postgresql+asyncpg://nobody:nothing@127.0.0.1:9/none")
        reachable = app.state.sessionmaker
        app.state.sessionmaker = async_sessionmaker(unreachable)
        try:
            response = await _apply(client, VIDEO_30D, _key())
        finally:
            app.state.sessionmaker = reachable
            await unreachable.dispose()

        body = assert_problem(response, 503, "database_unavailable")
        assert body["retryable"] is True
        assert response.headers["retry-after"] == "2"
