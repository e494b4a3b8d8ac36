"""The adapter that speaks TikTok's Business API v1.3 for Spark Ads posts (docs/tiktok.md).

Every call goes through `TikTokClient._call`: one envelope reader (`classify`), one parser per answer (`parse`),
one retry policy. Transient faults are retried with exponential backoff and jitter (stamina) under a hard
deadline; permanent ones are raised at once. Nothing here decides policy (duration limits, windows, banned
posts): callers do.

Secrets: auth codes and access tokens never reach a log line or an exception message. Logs carry the API
path (never the URL, whose query string holds the code), TikTok's code and request id, and the attempt.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

import httpx
import stamina
import structlog

from app.tiktok.classify import About, read_envelope
from app.tiktok.errors import (
    TikTokBadResponse,
    TikTokError,
    TikTokNotReached,
    TikTokRateLimited,
    TikTokRequestRejected,
    TikTokTimeout,
    TikTokTransientError,
    TikTokUnavailable,
)
from app.tiktok.models import AdPage, IdentityType, ItemType, PostInfo, PostPage, TikTokAd
from app.tiktok.parse import JsonObject, parse_ad_page, parse_identity_post, parse_page, parse_post

__all__ = ["CallBudget", "CallObserver", "TikTokClient"]

log = structlog.get_logger(__name__)

T = TypeVar("T")

_PATH_INFO = "tt_video/info/"
_PATH_AUTHORIZE = "tt_video/authorize/"
_PATH_LIST = "tt_video/list/"
_PATH_UNBIND = "tt_video/unbind/"
_PATH_IDENTITY_VIDEO_INFO = "identity/video/info/"
_PATH_AD_GET = "ad/get/"

_MAX_PAGE_SIZE = 50  # tt_video/list's largest page
_MAX_AD_PAGE_SIZE = 1000  # ad/get's largest page

# What `ad/get` is asked for: enough to tell which posts an ad account's Spark Ads use, under which identity.
_AD_FIELDS = (
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
)
_STATUS_NOT_DELETE = "STATUS_NOT_DELETE"  # every ad but deleted ones: ad/get's default
_STATUS_DELETE = "STATUS_DELETE"


# Failures after which TikTok surely did nothing with a request, and which time may cure: what a request that is
# not idempotent (authorize) may be sent again after. (Running out of this service's own budget is not one:
# waiting longer is the caller's decision.)
_SAFE_TO_RESEND: tuple[type[TikTokError], ...] = (TikTokRateLimited, TikTokNotReached)


class CallBudget(Protocol):
    """Turns to call TikTok, shared by every replica (TikTok counts calls per developer app, not per process)."""

    async def take_turn(self, *, max_wait_seconds: float) -> None:
        """Return when this call may be sent; raise TikTokBudgetExhausted if no turn frees within the wait."""


class CallObserver(Protocol):
    """Told of every call once it ends: its path, `ok` or the error's class name, and how long it took (retries
    and waits for a turn included). The service's metrics (app/kit/metrics.py) are one."""

    def observe(self, *, endpoint: str, outcome: str, seconds: float) -> None: ...


class TikTokClient:
    """TikTok's Spark Ads post endpoints, with retries, a deadline and typed errors.

    One instance per process, sharing the process's `httpx.AsyncClient` (opened and closed by the lifespan).
    """

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        base_url: str,
        deadline_seconds: float = 15.0,
        request_timeout_seconds: float = 5.0,
        max_attempts: int = 4,
        wait_initial_seconds: float = 1.0,
        wait_max_seconds: float = 5.0,
        wait_jitter_seconds: float = 0.5,
        budget: CallBudget | None = None,
        observer: CallObserver | None = None,
    ) -> None:
        """`budget`: every attempt of every call waits for a turn from it first; None sends at once. `observer`:
        told of every call when it ends."""
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self._http = http
        self._base_url = base_url if base_url.endswith("/") else base_url + "/"
        self._deadline_seconds = deadline_seconds
        self._request_timeout_seconds = request_timeout_seconds
        self._max_attempts = max_attempts
        # 40100 means "retry next second" (section 6): by default the first wait is 1 to 1.5 s.
        self._wait_initial_seconds = wait_initial_seconds
        self._wait_max_seconds = wait_max_seconds
        self._wait_jitter_seconds = wait_jitter_seconds
        self._budget = budget
        self._observer = observer

    async def post_info(self, *, advertiser_id: str, access_token: str, auth_code: str) -> PostInfo:
        """The post a code authorizes, as TikTok describes it (`GET tt_video/info/`)."""
        return await self._call(
            "GET",
            _PATH_INFO,
            access_token=access_token,
            params={"advertiser_id": advertiser_id, "auth_code": auth_code},
            secrets=(auth_code,),
            about=About.auth_code,
            parse=parse_post,
        )

    async def authorize(
        self,
        *,
        advertiser_id: str,
        access_token: str,
        auth_code: str,
        original_post_auth_code: str | None = None,
    ) -> None:
        """Apply a code to an ad account (`POST tt_video/authorize/`); D12: a Duet/Stitch also needs the
        original post's code."""
        body: JsonObject = {"advertiser_id": advertiser_id, "auth_code": auth_code}
        secrets: tuple[str, ...] = (auth_code,)
        if original_post_auth_code is not None:
            body["original_post_auth_code"] = original_post_auth_code
            secrets += (original_post_auth_code,)
        await self._call(
            "POST",
            _PATH_AUTHORIZE,
            access_token=access_token,
            json_body=body,
            secrets=secrets,
            about=About.auth_code,
            parse=_ignore_data,
            # Not confirmed idempotent: tried again only when TikTok surely did nothing with the first attempt.
            # A timeout or a system error may come after the code was applied; the caller settles those by
            # reading TikTok (`find_bound_post`) instead of applying the code twice.
            retry_on=_SAFE_TO_RESEND,
        )

    async def list_posts(
        self,
        *,
        advertiser_id: str,
        access_token: str,
        item_types: Sequence[ItemType] | None = None,
        keyword: str | None = None,
        page: int = 1,
        page_size: int = 20,
    ) -> PostPage:
        """One page of the posts authorized to an ad account (`GET tt_video/list/`)."""
        params: dict[str, str] = {
            "advertiser_id": advertiser_id,
            "page": str(page),
            "page_size": str(page_size),
        }
        if item_types is not None:
            params["item_types"] = json.dumps([ItemType(t).value for t in item_types], separators=(",", ":"))
        if keyword is not None:
            params["keyword"] = keyword

        def parse(data: JsonObject) -> PostPage:
            return parse_page(data, page=page, page_size=page_size)

        return await self._call(
            "GET",
            _PATH_LIST,
            access_token=access_token,
            params=params,
            secrets=(),
            about=About.nothing_refusable,
            parse=parse,
        )

    async def find_bound_post(self, *, advertiser_id: str, access_token: str, item_id: str) -> PostInfo | None:
        """The post as TikTok lists it if it is authorized to the ad account right now, else None.

        Read from `tt_video/list` with `keyword=item_id`. The keyword also matches caption text, so a post whose
        caption holds those digits may come back too: only an entry with exactly this item_id counts, and the
        pages are read until it is found or they end. Each page is one call, with its own retries and deadline.
        """
        page_number = 1
        while True:
            page = await self.list_posts(
                advertiser_id=advertiser_id,
                access_token=access_token,
                keyword=item_id,
                page=page_number,
                page_size=_MAX_PAGE_SIZE,
            )
            for post in page.posts:
                if post.item_id == item_id:
                    return post
            # Counted here rather than trusting page_info's `page`, so a TikTok that ignored `page` cannot loop.
            if not page.posts or page_number >= page.total_page:
                return None
            page_number += 1

    async def unbind(self, *, advertiser_id: str, access_token: str, item_id: str) -> None:
        """Un-authorize a post from an ad account (`POST tt_video/unbind/`, D16).

        Retried after transient faults like a read: its effect is the same however often it is sent. A second
        unbind of a post no longer bound is refused (40007 in the sandbox), which the caller can read back
        (`find_bound_post`) as done.
        """
        await self._call(
            "POST",
            _PATH_UNBIND,
            access_token=access_token,
            json_body={"advertiser_id": advertiser_id, "item_id": item_id},
            secrets=(),
            about=About.nothing_refusable,
            parse=_ignore_data,
        )

    async def own_post_info(
        self,
        *,
        advertiser_id: str,
        access_token: str,
        identity_type: IdentityType | str,
        identity_id: str,
        item_id: str,
        identity_authorized_bc_id: str | None = None,
    ) -> PostInfo:
        """One post of one of the ad account's identities, as TikTok describes it (`GET identity/video/info/`).

        For the brand's own posts (D1: `TT_USER`, or `BC_AUTH_TT` with the Business Center's id), which need no
        code. The post's identity is the one asked about (the answer does not say); there is a window only for an
        `AUTH_CODE` identity. A post that is not that identity's (or does not exist) is `TikTokRequestRejected`
        with `refusal` `post_not_found_for_identity`. A read: retried like the others. `identity_type` must be
        one of `IdentityType`'s values (ValueError otherwise, before TikTok is asked).
        """
        kind = IdentityType(identity_type)
        params: dict[str, str] = {
            "advertiser_id": advertiser_id,
            "identity_type": kind.value,
            "identity_id": identity_id,
            "item_id": item_id,
        }
        if identity_authorized_bc_id is not None:
            params["identity_authorized_bc_id"] = identity_authorized_bc_id

        def parse(data: JsonObject) -> PostInfo:
            return parse_identity_post(data, item_id=item_id, identity_id=identity_id, identity_type=kind.value)

        return await self._call(
            "GET",
            _PATH_IDENTITY_VIDEO_INFO,
            access_token=access_token,
            params=params,
            secrets=(),
            about=About.own_post,
            parse=parse,
        )

    async def list_ads(
        self,
        *,
        advertiser_id: str,
        access_token: str,
        primary_status: str = _STATUS_NOT_DELETE,
        modified_after: datetime | None = None,
        page: int = 1,
        page_size: int = _MAX_AD_PAGE_SIZE,
    ) -> AdPage:
        """One page of an ad account's ads (`GET ad/get/`), Spark Ads or not.

        `primary_status`: `STATUS_NOT_DELETE` (TikTok's default), `STATUS_DELETE` or `STATUS_ALL`.
        `modified_after` is sent as TikTok's `"YYYY-MM-DD HH:MM:SS"` in UTC (a naive datetime is taken as UTC;
        the fraction of a second is dropped). Whether TikTok reads it as exclusive, and at whole seconds, is
        unconfirmed: the sandbox takes the harsh reading (an ad modified in that very second is not returned),
        so a caller that must see everything modified since T passes T minus a second. A read: retried like
        the others.
        """
        filtering: dict[str, str] = {"primary_status": primary_status}
        if modified_after is not None:
            filtering["modified_after"] = _tiktok_time(modified_after)
        params: dict[str, str] = {
            "advertiser_id": advertiser_id,
            "fields": json.dumps(list(_AD_FIELDS), separators=(",", ":")),
            "filtering": json.dumps(filtering, separators=(",", ":")),
            "page": str(page),
            "page_size": str(page_size),
        }

        def parse(data: JsonObject) -> AdPage:
            return parse_ad_page(data, page=page, page_size=page_size)

        return await self._call(
            "GET",
            _PATH_AD_GET,
            access_token=access_token,
            params=params,
            secrets=(),
            about=About.nothing_refusable,
            parse=parse,
        )

    async def spark_ads(
        self,
        *,
        advertiser_id: str,
        access_token: str,
        deleted: bool = False,
        modified_after: datetime | None = None,
    ) -> list[TikTokAd]:
        """Every Spark Ad of an ad account (the ads that carry a `tiktok_item_id`), read from `ad/get`.

        `deleted` reads the deleted ones (`STATUS_DELETE`) instead of the others (`STATUS_NOT_DELETE`);
        `modified_after` as in `list_ads`. Every page is read, 1,000 ads at a time (10 pages at TikTok's limit of
        10,000 Spark Ads per ad account), each one call with its own retries and deadline. The pages are counted
        here, up to `total_page`, rather than trusting page_info's `page`, and reading stops at a page that brings
        no ad not already seen: a TikTok that ignored `page` cannot make it loop. An ad listed twice (the list
        shifted while it was read) is returned once, as last read. Ads are in TikTok's order.
        """
        status = _STATUS_DELETE if deleted else _STATUS_NOT_DELETE
        seen: dict[str, TikTokAd] = {}
        page_number = 1
        while True:
            page = await self.list_ads(
                advertiser_id=advertiser_id,
                access_token=access_token,
                primary_status=status,
                modified_after=modified_after,
                page=page_number,
                page_size=_MAX_AD_PAGE_SIZE,
            )
            new = [ad for ad in page.ads if ad.ad_id not in seen]
            for ad in page.ads:
                seen[ad.ad_id] = ad
            if not new or page_number >= page.total_page:
                break
            page_number += 1
        return [ad for ad in seen.values() if ad.tiktok_item_id is not None]

    async def _call(
        self,
        method: str,
        path: str,
        *,
        access_token: str,
        params: Mapping[str, str] | None = None,
        json_body: JsonObject | None = None,
        secrets: tuple[str, ...],
        about: About,
        parse: Callable[[JsonObject], T],
        retry_on: tuple[type[TikTokError], ...] = (TikTokTransientError,),
    ) -> T:
        loop = asyncio.get_running_loop()
        started = loop.time()
        outcome = "ok"
        try:
            return await self._call_within_deadline(
                method,
                path,
                access_token=access_token,
                params=params,
                json_body=json_body,
                secrets=secrets,
                about=about,
                parse=parse,
                retry_on=retry_on,
            )
        except BaseException as error:
            outcome = type(error).__name__
            raise
        finally:
            if self._observer is not None:
                self._observer.observe(endpoint=path, outcome=outcome, seconds=loop.time() - started)

    async def _call_within_deadline(
        self,
        method: str,
        path: str,
        *,
        access_token: str,
        params: Mapping[str, str] | None,
        json_body: JsonObject | None,
        secrets: tuple[str, ...],
        about: About,
        parse: Callable[[JsonObject], T],
        retry_on: tuple[type[TikTokError], ...],
    ) -> T:
        secrets = (*secrets, access_token)
        attempt_number = 0
        loop = asyncio.get_running_loop()
        deadline_at = loop.time() + self._deadline_seconds

        async def once() -> T:
            if self._budget is not None:
                # Each attempt is a call TikTok counts: each takes its turn, within what is left of the deadline.
                await self._budget.take_turn(max_wait_seconds=max(deadline_at - loop.time(), 0.0))
            data = await self._send(
                method,
                path,
                access_token=access_token,
                params=params,
                json_body=json_body,
                secrets=secrets,
                about=about,
            )
            # Parsed inside the attempt: data TikTok sent in the wrong shape is as retryable as a bad body.
            return parse(data)

        try:
            async with asyncio.timeout(self._deadline_seconds):
                async for attempt in stamina.retry_context(
                    on=retry_on,
                    attempts=self._max_attempts,
                    timeout=self._deadline_seconds,
                    wait_initial=self._wait_initial_seconds,
                    wait_max=self._wait_max_seconds,
                    wait_jitter=self._wait_jitter_seconds,
                ):
                    with attempt:
                        attempt_number = attempt.num
                        result = await _logged_attempt(once(), path=path, attempt=attempt_number)
                        log.debug("tiktok.request.succeeded", path=path, attempt=attempt_number)
                        return result
        except TimeoutError as exc:
            # stamina's own timeout only stops retrying after a failure; this one also cuts a hanging
            # request or a backoff sleep short, so the caller hears back within the deadline.
            error = TikTokTimeout(
                f"the deadline of {self._deadline_seconds:g}s ran out after {attempt_number} attempt(s)"
            )
            _log_failure(error, path=path, attempt=attempt_number)
            raise error from exc
        except TikTokError as error:
            _log_failure(error, path=path, attempt=attempt_number)
            raise
        raise AssertionError("unreachable: stamina either returns or raises")

    async def _send(
        self,
        method: str,
        path: str,
        *,
        access_token: str,
        params: Mapping[str, str] | None,
        json_body: JsonObject | None,
        secrets: tuple[str, ...],
        about: About,
    ) -> JsonObject:
        """One HTTP request; returns the envelope's `data` or raises the taxonomy's error."""
        try:
            response = await self._http.request(
                method,
                f"{self._base_url}v1.3/{path}",
                params=params,
                json=json_body,
                headers={"Access-Token": access_token},
                timeout=self._request_timeout_seconds,
            )
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            raise TikTokNotReached(f"could not connect to TikTok ({type(exc).__name__})") from None
        except httpx.TimeoutException as exc:
            # The exception's text and request can hold the URL, and so the code: only its type is kept.
            raise TikTokTimeout(f"no answer within {self._request_timeout_seconds:g}s ({type(exc).__name__})") from None
        except httpx.TransportError as exc:
            raise TikTokUnavailable(f"could not reach TikTok ({type(exc).__name__})") from None
        except httpx.DecodingError as exc:
            raise TikTokBadResponse(f"the body could not be decoded ({type(exc).__name__})") from None
        return read_envelope(response, secrets=secrets, about=about)


def _ignore_data(_data: JsonObject) -> None:
    return None


def _tiktok_time(moment: datetime) -> str:
    """TikTok's `"YYYY-MM-DD HH:MM:SS"`, in UTC; a naive datetime is taken to be UTC already."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S")


async def _logged_attempt(call: Awaitable[T], *, path: str, attempt: int) -> T:
    try:
        return await call
    except TikTokTransientError as error:
        # Whether another attempt follows is stamina's decision (attempts and time left); it logs
        # `stamina.retry_scheduled` when one does.
        log.warning(
            "tiktok.request.attempt_failed",
            path=path,
            attempt=attempt,
            error=type(error).__name__,
            tiktok_code=error.code,
            http_status=error.http_status,
            tiktok_request_id=error.request_id,
        )
        raise


def _log_failure(error: TikTokError, *, path: str, attempt: int) -> None:
    fields: dict[str, Any] = {
        "path": path,
        "attempt": attempt,
        "error": type(error).__name__,
        "tiktok_code": error.code,
        "http_status": error.http_status,
        "tiktok_request_id": error.request_id,  # request_id is the caller's, bound by the middleware
    }
    if isinstance(error, TikTokRequestRejected):
        fields["refusal"] = error.refusal.value if error.refusal else None
    if isinstance(error, TikTokTransientError):
        log.error("tiktok.request.failed", **fields)
    else:
        # A rejection is TikTok's answer about the request, not an outage: worth recording, not alarming.
        log.info("tiktok.request.rejected", **fields)
