"""A stateful model of posts, authorizations and ads across two ad accounts, driven over HTTP (D6, D7, D10, D16).

Hypothesis runs random sequences of: apply a code (and apply it again after an un-authorize: a new
authorization), link an ad, link an ad already linked, remove an ad, let a window end on the clock, and
un-authorize; each against one of two ad accounts. A plain Python model predicts every answer (status and
`reason`), and after every step the service must agree with it on each post's deletion verdict (`safe`, `known`,
every blocker with its action) and on both ad accounts' Spark Ads quota.

The model's rules (D7): a post is safe iff no live authorization (anything not un-authorized: an expired one still
binds it) exists for it in any ad account, and no active ad uses it. An expired authorization blocks with action
`unauthorize`, and its active ads with `remove_ad`; it takes no new ad (`authorization_not_active`), and its code
is refused (`auth_code_expired`).

One clock for both sides: the sandbox is made with `now=` a mutable clock, and the service's `app.kit.clock.utcnow`
(which every request and every later phase of intake reads through the module) is replaced by the same clock, so a
step moves both by one assignment, to the second. time-machine would move them too (the sandbox's default clock is
`datetime.now`), but with every other wall clock in the process, and each jump would be a `travel` started in one
step and stopped in a later one.

Hypothesis cannot drive an async state machine, so the test is a plain function: each run owns an event loop,
starts the app (its lifespan, a client) in it, steps through `loop.run_until_complete`, and in teardown closes the
app and empties the tables with an engine made in that loop.
"""

from __future__ import annotations

import asyncio
import itertools
import os
from collections import Counter
from collections.abc import Coroutine
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import httpx
import pytest
import stamina
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy.ext.asyncio import create_async_engine

from app.kit import clock as service_clock
from app.kit.settings import Settings
from dev.sandbox.app import create_sandbox_app
from dev.sandbox.seed import DemoPost, demo_code
from tests.api.helpers import assert_problem
from tests.conftest import ADVERTISER_ID, ADVERTISER_TOKEN, register_advertiser, running, settings_for, truncate_all

T = TypeVar("T")

OTHER_ADVERTISER_ID = "7000000000000000002"
ADVERTISERS = (ADVERTISER_ID, OTHER_ADVERTISER_ID)
# Valid public videos, one post each, from two creators (identities), with windows of 7 to 365 days.
CODES = ("#SBX+video/7d=", "#SBX+video/30d=", "#SBX+video/30d-b=", "#SBX+video/60d=", "#SBX+video/365d=")
SPARK_ADS_LIMIT = 10_000  # the defaults; the model never reaches them
IDENTITY_ADS_LIMIT = 10_000
FIRST_AD_ID = 1_800_000_000_000_000_001


def _post(code: str) -> DemoPost:
    post = demo_code(code).post
    assert post is not None
    return post


ITEM_BY_CODE = {code: _post(code).item_id for code in CODES}


@dataclass
class Clock:
    """The one clock the sandbox and the service both read."""

    now: datetime

    def __call__(self) -> datetime:
        return self.now


@dataclass
class ModelAuthorization:
    id: str
    advertiser_id: str
    code: str
    item_id: str
    identity_id: str
    ends_at: datetime
    unauthorized: bool = False

    def status(self, now: datetime) -> str:
        if self.unauthorized:
            return "unauthorized"
        return "expired" if self.ends_at <= now else "active"  # D3: expired from the window's end on


@dataclass
class ModelAd:
    ad_id: str
    authorization_id: str
    active: bool = True


class PostsAndAds(RuleBasedStateMachine):
    def __init__(self, settings: Settings) -> None:
        super().__init__()
        # Whole seconds, as the sandbox's windows are (it drops the microseconds of its creation time).
        self.clock = Clock(datetime.now(UTC).replace(microsecond=0))
        self.sandbox_created_at = self.clock.now
        self.settings = settings
        self.model: dict[str, ModelAuthorization] = {}
        self.model_ads: dict[str, ModelAd] = {}
        self.touched: set[str] = set()  # posts a code was applied for, refused or not
        self.ad_ids = itertools.count(FIRST_AD_ID)
        self.patch = pytest.MonkeyPatch()
        self.patch.setattr(service_clock, "utcnow", self.clock)
        self.loop = asyncio.new_event_loop()
        self.stack = AsyncExitStack()
        self.engine = create_async_engine(settings.database_url)
        try:
            self.client = self.run(self._start())
        except BaseException:
            self.teardown()
            raise

    # -- the run's app, in the run's event loop

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coroutine)

    async def _start(self) -> httpx.AsyncClient:
        await truncate_all(self.engine)  # before the app starts: its lifespan stores the bootstrap API key
        sandbox = create_sandbox_app(slow_seconds=30.0, now=self.clock)
        started = await self.stack.enter_async_context(running(self.settings, httpx.ASGITransport(app=sandbox)))
        await register_advertiser(started.client)
        response = await started.client.post(
            "/v1/advertisers",
            json={"tiktok_advertiser_id": OTHER_ADVERTISER_ID, "access_token": ADVERTISER_TOKEN, "name": "Other"},
        )
        assert response.status_code == 201, response.text
        return started.client

    async def _stop(self) -> None:
        try:
            await self.stack.aclose()
        finally:
            try:
                await truncate_all(self.engine)
            finally:
                await self.engine.dispose()

    def teardown(self) -> None:
        try:
            self.run(self._stop())
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
        finally:
            self.loop.close()
            self.patch.undo()

    # -- the model

    def window_end(self, code: str) -> datetime:
        """Where the sandbox puts the code's window: from a day before its creation, `window_days` long."""
        return self.sandbox_created_at - timedelta(days=1) + timedelta(days=demo_code(code).window_days)

    def live(self, advertiser_id: str, item_id: str) -> ModelAuthorization | None:
        found = [
            row
            for row in self.model.values()
            if row.advertiser_id == advertiser_id and row.item_id == item_id and not row.unauthorized
        ]
        assert len(found) <= 1, found
        return found[0] if found else None

    def reappliable(self) -> list[tuple[str, str]]:
        """(ad account, code) whose post was un-authorized there, is not authorized again, and is in its window."""
        return [
            (advertiser_id, code)
            for advertiser_id in ADVERTISERS
            for code in CODES
            if self.clock.now < self.window_end(code)
            and self.live(advertiser_id, ITEM_BY_CODE[code]) is None
            and any(row.advertiser_id == advertiser_id and row.code == code for row in self.model.values())
        ]

    def with_status(self, *statuses: str) -> list[str]:
        return [key for key, row in self.model.items() if row.status(self.clock.now) in statuses]

    def open_windows(self) -> list[datetime]:
        """The window ends, still ahead, of the active authorizations: what moving the clock may expire."""
        now = self.clock.now
        return sorted({row.ends_at for row in self.model.values() if row.status(now) == "active"})

    def active_ads_of(self, authorization_id: str) -> set[str]:
        return {ad.ad_id for ad in self.model_ads.values() if ad.authorization_id == authorization_id and ad.active}

    # -- the steps

    @rule(advertiser_id=st.sampled_from(ADVERTISERS), code=st.sampled_from(CODES))
    def apply(self, advertiser_id: str, code: str) -> None:
        """Apply a code: new (201), already authorized here (200, D2), or its window over (422)."""
        self._apply(advertiser_id, code)

    @precondition(lambda self: bool(self.reappliable()))
    @rule(data=st.data())
    def reapply(self, data: st.DataObject) -> None:
        """Apply again a code whose authorization was un-authorized (D16): a new authorization."""
        self._apply(*data.draw(st.sampled_from(self.reappliable()), label="ad account, code"))

    @precondition(lambda self: bool(self.with_status("active")))
    @rule(data=st.data(), campaign_type=st.sampled_from(["STANDARD", "SMART_PLUS"]))
    def link(self, data: st.DataObject, campaign_type: str) -> None:
        """Link a new ad to an active authorization (D6, D10)."""
        authorization = self.model[data.draw(st.sampled_from(self.with_status("active")), label="authorization")]
        ad_id = str(next(self.ad_ids))
        response = self.run(self._link(authorization.id, ad_id, campaign_type))
        assert response.status_code == 201, response.text
        body = response.json()
        assert (body["ad_id"], body["authorization_id"], body["state"]) == (ad_id, authorization.id, "active"), body
        assert (body["advertiser_id"], body["item_id"]) == (authorization.advertiser_id, authorization.item_id)
        self.model_ads[ad_id] = ModelAd(ad_id, authorization.id)

    @precondition(lambda self: bool(self.with_status("expired", "unauthorized")))
    @rule(data=st.data())
    def link_refused(self, data: st.DataObject) -> None:
        """A new ad on an expired or un-authorized authorization: 409 `authorization_not_active`."""
        key = data.draw(st.sampled_from(self.with_status("expired", "unauthorized")), label="authorization")
        authorization = self.model[key]
        response = self.run(self._link(authorization.id, str(next(self.ad_ids)), "STANDARD"))
        body = assert_problem(response, 409, "authorization_not_active")
        assert body["authorization_status"] == authorization.status(self.clock.now), body

    @precondition(lambda self: bool(self.model_ads))
    @rule(data=st.data(), same=st.booleans())
    def link_again(self, data: st.DataObject, same: bool) -> None:
        """Link an ad id already linked: to its own authorization (200, or 409 `ad_removed`), or to another
        (409 `ad_linked_elsewhere`), whatever either authorization's status."""
        ad = self.model_ads[data.draw(st.sampled_from(list(self.model_ads)), label="ad")]
        others = [key for key in self.model if key != ad.authorization_id]
        if same or not others:
            authorization_id = ad.authorization_id
        else:
            authorization_id = data.draw(st.sampled_from(others), label="another authorization")
        response = self.run(self._link(authorization_id, ad.ad_id, "STANDARD"))
        if authorization_id != ad.authorization_id:
            assert_problem(response, 409, "ad_linked_elsewhere")
        elif not ad.active:
            assert_problem(response, 409, "ad_removed")
        else:  # the same link, even once its authorization has expired
            assert response.status_code == 200, response.text
            assert response.json()["state"] == "active"

    @precondition(lambda self: bool(self.model_ads))
    @rule(data=st.data())
    def remove_ad(self, data: st.DataObject) -> None:
        """Record an ad removed from Ads Manager (active mostly; removing one again answers the same)."""
        active = [key for key, ad in self.model_ads.items() if ad.active]
        ad = self.model_ads[data.draw(st.sampled_from(active or list(self.model_ads)), label="ad")]
        response = self.run(self.client.delete(f"/v1/authorizations/{ad.authorization_id}/ads/{ad.ad_id}"))
        assert response.status_code == 204, response.text
        ad.active = False

    @precondition(lambda self: bool(self.open_windows()))
    @rule(past=st.sampled_from([0, 1, 3600]))
    def expire(self, past: int) -> None:
        """Move the shared clock to the earliest window's end among the active authorizations, or `past` seconds
        after it (0: the very end, which D3 reads as expired already)."""
        self.clock.now = self.open_windows()[0] + timedelta(seconds=past)

    @precondition(lambda self: bool(self.model))
    @rule(data=st.data(), again=st.sampled_from([False, False, False, True]))
    def unauthorize(self, data: st.DataObject, again: bool) -> None:
        """D16: refused while the ad account runs ads on the post; an expired authorization may be un-authorized;
        `again`: one already un-authorized, which answers the same."""
        choices = self.with_status("unauthorized") if again else self.with_status("active", "expired")
        key = data.draw(st.sampled_from(choices or list(self.model)), label="authorization")
        self._unauthorize(self.model[key])

    def _apply(self, advertiser_id: str, code: str) -> None:
        post = _post(code)
        ends_at = self.window_end(code)
        live = self.live(advertiser_id, post.item_id)
        self.touched.add(post.item_id)
        response = self.run(
            self.client.post(f"/v1/advertisers/{advertiser_id}/authorizations", json={"auth_code": code})
        )
        if ends_at <= self.clock.now:  # the creator's window has ended: refused, whatever is stored
            assert_problem(response, 422, "auth_code_expired")
            return
        body = response.json()
        assert body["status"] == "active", body
        assert datetime.fromisoformat(body["auth_end_at"]) == ends_at, body
        assert (body["advertiser_id"], body["item_id"]) == (advertiser_id, post.item_id), body
        if live is not None:
            assert response.status_code == 200, response.text
            assert body["id"] == live.id, (body, live)
            return
        assert response.status_code == 201, response.text
        assert body["id"] not in self.model, body
        self.model[body["id"]] = ModelAuthorization(
            id=body["id"],
            advertiser_id=advertiser_id,
            code=code,
            item_id=post.item_id,
            identity_id=post.creator.identity_id,
            ends_at=ends_at,
        )

    def _unauthorize(self, authorization: ModelAuthorization) -> None:
        active = self.active_ads_of(authorization.id)
        response = self.run(self.client.post(f"/v1/authorizations/{authorization.id}/unauthorize"))
        if not authorization.unauthorized and active:
            body = assert_problem(response, 409, "ads_still_active")
            assert {ad["ad_id"] for ad in body["ads"]} == active, body
            return
        assert response.status_code == 200, response.text
        body = response.json()
        assert (body["id"], body["status"]) == (authorization.id, "unauthorized"), body
        authorization.unauthorized = True

    def _link(self, authorization_id: str, ad_id: str, campaign_type: str) -> Coroutine[Any, Any, httpx.Response]:
        return self.client.post(
            f"/v1/authorizations/{authorization_id}/ads",
            json={"ad_id": ad_id, "campaign_type": campaign_type, "only_show_as_ad": True},
        )

    # -- after every step

    @invariant()
    def posts_and_quotas_agree(self) -> None:
        self.run(self._check())

    async def _check(self) -> None:
        """Every post this run has applied a code of (refused or not), and both ad accounts' quotas, read together."""
        touched = sorted(self.touched)
        answers = await asyncio.gather(
            *(self.client.get(f"/v1/posts/{item_id}/deletion-safety") for item_id in touched),
            *(self.client.get(f"/v1/advertisers/{advertiser_id}/spark-ads-quota") for advertiser_id in ADVERTISERS),
        )
        for item_id, response in zip(touched, answers[: len(touched)], strict=True):
            assert response.status_code == 200, response.text
            self._check_verdict(item_id, response.json())
        for advertiser_id, response in zip(ADVERTISERS, answers[len(touched) :], strict=True):
            assert response.status_code == 200, response.text
            self._check_quota(advertiser_id, response.json())

    def _check_verdict(self, item_id: str, verdict: dict[str, Any]) -> None:
        now = self.clock.now
        expected = self._blockers(item_id, now)
        actual = Counter(
            (
                blocker["kind"],
                blocker["action"],
                blocker["authorization_id"],
                blocker["ad_id"],
                blocker["advertiser_id"],
                blocker["authorization_status"],
                blocker["relation"],
            )
            for blocker in verdict["blockers"]
        )
        assert actual == expected, (item_id, verdict)
        assert verdict["safe"] is (not expected), (item_id, verdict)
        assert verdict["known"] is any(row.item_id == item_id for row in self.model.values()), (item_id, verdict)
        assert datetime.fromisoformat(verdict["checked_at"]) == now, verdict  # the service reads the shared clock

    def _check_quota(self, advertiser_id: str, quota: dict[str, Any]) -> None:
        used = sum(
            1
            for ad in self.model_ads.values()
            if ad.active and self.model[ad.authorization_id].advertiser_id == advertiser_id
        )
        assert (quota["limit"], quota["used"], quota["remaining"]) == (SPARK_ADS_LIMIT, used, SPARK_ADS_LIMIT - used), (
            advertiser_id,
            quota,
        )
        identities = [
            (identity["identity_type"], identity["identity_id"], identity["used"], identity["remaining"])
            for identity in quota["identities"]
        ]
        assert identities == self._identities(advertiser_id), (advertiser_id, quota)

    def _blockers(self, item_id: str, now: datetime) -> Counter[tuple[str, str, str, str | None, str, str, str]]:
        """D7: every live authorization of the post, in any ad account, and every active ad of each."""
        expected: Counter[tuple[str, str, str, str | None, str, str, str]] = Counter()
        for row in self.model.values():
            if row.item_id != item_id or row.unauthorized:
                continue
            status = row.status(now)
            expected[("authorization", "unauthorize", row.id, None, row.advertiser_id, status, "post")] += 1
            for ad_id in self.active_ads_of(row.id):
                expected[("ad", "remove_ad", row.id, ad_id, row.advertiser_id, status, "post")] += 1
        return expected

    def _identities(self, advertiser_id: str) -> list[tuple[str, str, int, int]]:
        """The creators of the ad account's live authorizations, each with its active ads in every ad account."""
        identities = sorted(
            {
                row.identity_id
                for row in self.model.values()
                if row.advertiser_id == advertiser_id and not row.unauthorized
            }
        )
        used = {
            identity_id: sum(
                1
                for ad in self.model_ads.values()
                if ad.active and self.model[ad.authorization_id].identity_id == identity_id
            )
            for identity_id in identities
        }
        return [
            ("AUTH_CODE", identity_id, used[identity_id], IDENTITY_ADS_LIMIT - used[identity_id])
            for identity_id in identities
        ]


def test_posts_ads_and_quotas_follow_the_model(database_url: str) -> None:
    app_settings = settings_for(database_url, log_level="WARNING")  # the failures' report stays readable
    with stamina.set_testing(True, attempts=100, cap=True):
        run_state_machine_as_test(
            lambda: PostsAndAds(app_settings),
            # Random exploration on a developer's machine; the same sequences on every CI run.
            settings=hypothesis_settings(
                max_examples=25,
                stateful_step_count=30,
                deadline=None,
                suppress_health_check=list(HealthCheck),
                derandomize=bool(os.environ.get("CI")),
            ),
        )
