"""D14: why a Spark Ad using this authorization may not be running, by the guide's checklist.

In phases, like intake, so that no database connection is held while TikTok answers:

1. **Read** (one short session, no write): the authorization, its ad account and its active ads.
2. **Ask TikTok** (no connection held), through the shared client and its rate budget: first the ad account's
   access (`tt_video/list`, one post); only if TikTok accepts it, the code read back (`tt_video/info`) and the
   post as TikTok shows it now (`tt_video/list` for a creator's post, `identity/video/info` for an own post),
   concurrently. An ad account TikTok refuses, or a TikTok that cannot be reached, is one failed call, not three.
3. **Decide** each item: `ok`, `failing` (with what to do), or `unknown` (TikTok could not be asked).

Nothing is written: a diagnosis reports what it finds, and reconciliation is what records TikTok's view.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TypeVar

import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.ads import repository as ads_repository
from app.ads.models import Ad, CampaignType
from app.advertisers.models import Advertiser
from app.api_keys.access import Caller
from app.authorizations import repository
from app.authorizations.models import Authorization, AuthorizationState, AuthorizationStatus, IdentityType
from app.authorizations.service import visible
from app.diagnosis.schemas import Diagnosis, DiagnosisCheck, DiagnosisCheckName, DiagnosisStatus
from app.kit.crypto import SecretBox
from app.kit.errors import TikTokDetails
from app.tiktok.client import TikTokClient
from app.tiktok.errors import (
    TikTokAccessTokenInvalid,
    TikTokBadResponse,
    TikTokBudgetExhausted,
    TikTokError,
    TikTokNotReached,
    TikTokPermissionDenied,
    TikTokRateLimited,
    TikTokRefusal,
    TikTokRequestRejected,
    TikTokTimeout,
)
from app.tiktok.models import PostInfo, PostStatus

log = structlog.get_logger(__name__)

T = TypeVar("T")
U = TypeVar("U")

# A window that ends this soon is still `ok`, with an action: ask the creator to extend it before it ends.
ENDING_SOON = timedelta(days=3)

_OWN = frozenset({IdentityType.tt_user.value, IdentityType.bc_auth_tt.value})
_BANNED = frozenset({PostStatus.banned, PostStatus.removed})
_PRIVATE = frozenset({PostStatus.private, PostStatus.friends_only})

_AGAIN_LATER = "Run the diagnosis again shortly."
_SEE_ACCESS = "Fix `ad_account_access` first, then run the diagnosis again."
_NEW_CODE = "Ask the creator for a new code (or to extend the authorization), then apply it."
_POST_GONE = (
    "This post cannot run any more: remove its ads (removeAd) and un-authorize it (unauthorize); use another post."
)
_CODE_REFUSALS: dict[TikTokRefusal, tuple[str, str]] = {
    TikTokRefusal.auth_code_expired: ("TikTok says the code has expired", _NEW_CODE),
    TikTokRefusal.auth_code_not_found: (
        "TikTok no longer knows the code: its creator deleted it, or it never existed",
        "Ask the creator for a new code and apply it.",
    ),
    TikTokRefusal.auth_code_format_error: (
        "TikTok does not read the stored code as a code",
        "Apply the creator's code again, exactly as copied from TikTok.",
    ),
    TikTokRefusal.video_deleted: ("TikTok says the code's post was deleted (D8)", _POST_GONE),
    TikTokRefusal.video_unavailable: ("TikTok says the code's post is no longer available (D8)", _POST_GONE),
    TikTokRefusal.illegal_item_status_error: ("TikTok says the code's post was removed by moderation (D8)", _POST_GONE),
}


@dataclass(frozen=True, slots=True)
class _Failed:
    """A TikTok call that failed; `asked` False: not made, because the ad account's check failed with `error`."""

    error: TikTokError
    asked: bool = True


async def _ask(call: Awaitable[T]) -> T | _Failed:
    try:
        return await call
    except TikTokError as error:
        return _Failed(error)


async def diagnose(
    sessions: async_sessionmaker[AsyncSession],
    tiktok: TikTokClient,
    box: SecretBox,
    *,
    authorization_id: uuid.UUID,
    caller: Caller,
    now: datetime,
) -> Diagnosis:
    """The checklist for one authorization; AuthorizationNotFound when it does not exist or the key may not
    touch its ad account. TikTok failing makes only the items that need it `unknown`."""
    async with sessions() as session:
        authorization = visible(await repository.get(session, authorization_id), authorization_id, caller)
        ads = await ads_repository.list_active(session, [authorization.id])
    advertiser = authorization.advertiser
    own = authorization.identity_type in _OWN

    token = box.decrypt(advertiser.access_token_encrypted)
    access = await _ask(
        tiktok.list_posts(advertiser_id=advertiser.tiktok_advertiser_id, access_token=token, page_size=1)
    )
    code_read: PostInfo | _Failed | None
    post_read: PostInfo | _Failed | None
    if isinstance(access, _Failed):
        code_read = post_read = _Failed(access.error, asked=False)
    else:
        code_read, post_read = await _both(
            _read_code(tiktok, box, advertiser, token, authorization),
            _read_post(tiktok, advertiser, token, authorization),
        )

    checks = [
        _check_access(advertiser, access.error if isinstance(access, _Failed) else None),
        _check_own_code(authorization) if own else _check_code(authorization, code_read, now),
        _check_window(authorization, now),
        _check_post(authorization, post_read, ads),
        _check_limit(advertiser),
        *(_check_ad(authorization, ad, now) for ad in ads),
    ]
    statuses = {check.status for check in checks}
    overall = next(
        (status for status in (DiagnosisStatus.failing, DiagnosisStatus.unknown) if status in statuses),
        DiagnosisStatus.ok,
    )
    log.info(
        "authorization.diagnosed",
        authorization_id=str(authorization.id),
        status=overall.value,
        failing=[check.check.value for check in checks if check.status is DiagnosisStatus.failing],
        unknown=[check.check.value for check in checks if check.status is DiagnosisStatus.unknown],
    )
    return Diagnosis(
        authorization_id=authorization.id,
        advertiser_id=advertiser.tiktok_advertiser_id,
        item_id=authorization.item_id,
        identity_type=IdentityType(authorization.identity_type),
        authorization_status=authorization.status_at(now),
        status=overall,
        checks=checks,
        checked_at=now,
    )


# -- asking TikTok


async def _both(first: Awaitable[T], second: Awaitable[U]) -> tuple[T, U]:
    """Both at once. Anything but TikTok's failures (which `_ask` keeps) is raised as it is, for its usual
    answer (Postgres gone under the rate budget: 503), and the other call is cancelled rather than left running."""
    tasks = (asyncio.ensure_future(first), asyncio.ensure_future(second))
    try:
        await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        raise
    return tasks[0].result(), tasks[1].result()


async def _read_code(
    tiktok: TikTokClient, box: SecretBox, advertiser: Advertiser, token: str, authorization: Authorization
) -> PostInfo | _Failed | None:
    """The post the stored code authorizes, as TikTok describes it now; None for an own post (no code)."""
    if authorization.identity_type in _OWN or authorization.auth_code_encrypted is None:
        return None
    return await _ask(
        tiktok.post_info(
            advertiser_id=advertiser.tiktok_advertiser_id,
            access_token=token,
            auth_code=box.decrypt(authorization.auth_code_encrypted),
        )
    )


async def _read_post(
    tiktok: TikTokClient, advertiser: Advertiser, token: str, authorization: Authorization
) -> PostInfo | _Failed | None:
    """The post as TikTok shows it now: a creator's post as bound to the ad account (None: not bound any more);
    an own post under its identity."""
    if authorization.identity_type in _OWN:
        return await _ask(
            tiktok.own_post_info(
                advertiser_id=advertiser.tiktok_advertiser_id,
                access_token=token,
                identity_type=authorization.identity_type,
                identity_id=authorization.identity_id or "",
                item_id=authorization.item_id,
                identity_authorized_bc_id=authorization.identity_authorized_bc_id,
            )
        )
    return await _ask(
        tiktok.find_bound_post(
            advertiser_id=advertiser.tiktok_advertiser_id, access_token=token, item_id=authorization.item_id
        )
    )


# -- the checks


def _item(
    check: DiagnosisCheckName,
    status: DiagnosisStatus,
    detail: str,
    action: str | None = None,
    *,
    ad_id: str | None = None,
    error: TikTokError | None = None,
) -> DiagnosisCheck:
    tiktok = None
    if error is not None and (error.code is not None or error.request_id is not None):
        tiktok = TikTokDetails(code=error.code, message=error.message, request_id=error.request_id)
    return DiagnosisCheck(check=check, status=status, detail=detail, action=action, ad_id=ad_id, tiktok=tiktok)


def _tiktok_said(error: TikTokError) -> str:
    return f"{error.message} (TikTok code {error.code})" if error.code is not None else error.message


def _could_not_ask(error: TikTokError) -> str:
    """Why TikTok could not be asked, for a failure that is not TikTok's answer about the request."""
    if isinstance(error, TikTokBudgetExhausted):
        why = "this service's budget of TikTok calls (TIKTOK_QPS) had no turn free in time"
    elif isinstance(error, TikTokRateLimited):
        why = "TikTok's rate limit was reached"
    elif isinstance(error, TikTokTimeout):
        why = "TikTok did not answer in time"
    elif isinstance(error, TikTokNotReached):
        why = "TikTok could not be reached"
    elif isinstance(error, TikTokBadResponse):
        why = "TikTok answered with something that is not its API's envelope"
    else:
        why = "TikTok is unavailable"
    return f"TikTok could not be asked: {why} ({error.message})"


def _not_asked(error: TikTokError) -> str:
    if isinstance(error, (TikTokAccessTokenInvalid, TikTokPermissionDenied, TikTokRequestRejected)):
        return "Not checked: TikTok refused the ad account's access (see `ad_account_access`)"
    return f"Not checked: {_could_not_ask(error)}"


def _check_access(advertiser: Advertiser, error: TikTokError | None) -> DiagnosisCheck:
    """The ad account's token and permissions, checked with TikTok now (the guide's first and fourth items)."""
    name = DiagnosisCheckName.ad_account_access
    account = advertiser.tiktok_advertiser_id
    if error is None:
        return _item(
            name, DiagnosisStatus.ok, f"TikTok accepts the ad account's access token for ad account {account}."
        )
    if isinstance(error, TikTokAccessTokenInvalid):
        return _item(
            name,
            DiagnosisStatus.failing,
            f"TikTok refused the ad account's access token: {_tiktok_said(error)}.",
            f"Reconnect the ad account: PUT /v1/advertisers/{account}/access-token with a new access token "
            "(reconnectAdvertiser).",
            error=error,
        )
    if isinstance(error, TikTokPermissionDenied):
        return _item(
            name,
            DiagnosisStatus.failing,
            f"TikTok says the access token may not act for ad account {account}: {_tiktok_said(error)}.",
            "Check in TikTok Business Center that the token's user has access to this ad account, with the "
            f"permission level Spark Ads need; or reconnect it with a token that has them (PUT /v1/advertisers/"
            f"{account}/access-token).",
            error=error,
        )
    if isinstance(error, TikTokRequestRejected):
        return _item(
            name,
            DiagnosisStatus.failing,
            f"TikTok refused to list the posts authorized to ad account {account}: {_tiktok_said(error)}.",
            "Quote TikTok's code and request id to TikTok support.",
            error=error,
        )
    return _item(
        name,
        DiagnosisStatus.unknown,
        f"{_could_not_ask(error)}: whether it accepts the ad account's access token is not known.",
        _AGAIN_LATER,
        error=error,
    )


def _check_own_code(authorization: Authorization) -> DiagnosisCheck:
    return _item(
        DiagnosisCheckName.code,
        DiagnosisStatus.ok,
        f"An own post ({authorization.identity_type}) runs without a creator's code (D1): there is no code to check.",
    )


def _code_name(authorization: Authorization) -> str:
    hint = authorization.auth_code_hint
    return f"the code {hint}" if hint and hint != "…" else "the stored code"


def _check_code(authorization: Authorization, read: PostInfo | _Failed | None, now: datetime) -> DiagnosisCheck:
    """The creator's code as applied, read back from TikTok now (the guide's second item)."""
    name = DiagnosisCheckName.code
    code = _code_name(authorization)
    if read is None:
        return _item(name, DiagnosisStatus.unknown, "No code is stored for this authorization.", None)
    if isinstance(read, _Failed):
        error = read.error
        if not read.asked:
            return _item(name, DiagnosisStatus.unknown, f"{_not_asked(error)}.", _SEE_ACCESS)
        if isinstance(error, TikTokRequestRejected):
            said, action = (_CODE_REFUSALS.get(error.refusal) if error.refusal else None) or (
                "TikTok refused to describe the code's post",
                "Check the code with the creator; quote TikTok's code and request id to TikTok support.",
            )
            return _item(name, DiagnosisStatus.failing, f"{said} ({code}): {_tiktok_said(error)}.", action, error=error)
        if isinstance(error, (TikTokAccessTokenInvalid, TikTokPermissionDenied)):
            return _item(
                name,
                DiagnosisStatus.unknown,
                f"Not checked: TikTok refused the ad account's access while reading {code}: {_tiktok_said(error)}.",
                _SEE_ACCESS,
                error=error,
            )
        return _item(name, DiagnosisStatus.unknown, f"{_could_not_ask(error)}.", _AGAIN_LATER, error=error)
    if read.item_id != authorization.item_id:
        return _item(
            name,
            DiagnosisStatus.failing,
            f"TikTok describes post {read.item_id} for {code}, not post {authorization.item_id}.",
            "Apply the creator's code for this post again.",
        )
    tiktok_status = read.ad_auth_status or "none"
    if tiktok_status.upper() == "EXPIRED" or (read.auth_end_at is not None and read.auth_end_at <= now):
        return _item(
            name,
            DiagnosisStatus.failing,
            f"TikTok reports {code} expired (ad_auth_status {tiktok_status}, window end {_when(read.auth_end_at)}).",
            _NEW_CODE,
        )
    detail = (
        f"TikTok describes post {read.item_id} for {code} (ad_auth_status {tiktok_status}, window end "
        f"{_when(read.auth_end_at)})."
    )
    extend: str | None = None
    if read.auth_end_at != authorization.code_end_at:
        detail += (
            f" The end stored here is {_when(authorization.code_end_at)}, as TikTok reported it when the code was "
            "applied: `window` reads that one."
        )
        stored_end = authorization.auth_end_at
        if stored_end is not None and stored_end <= now:
            # The creator extended it after it ended here: applying the code again reads TikTok's window anew (D2
            # answers a code from the store only while its stored window is open).
            extend = "The creator extended the authorization: apply the code again to record TikTok's window."
    return _item(name, DiagnosisStatus.ok, detail, extend)


def _check_window(authorization: Authorization, now: datetime) -> DiagnosisCheck:
    """The window as stored (D3), and whether the authorization still holds (the guide's third item)."""
    name = DiagnosisCheckName.window
    status = authorization.status_at(now)
    end = authorization.auth_end_at
    if status is AuthorizationStatus.unauthorized:
        return _item(
            name,
            DiagnosisStatus.failing,
            f"Un-authorized at {_when(authorization.unauthorized_at)} (D16): the post is no longer authorized to "
            "the ad account.",
            "Authorize the post again: apply a new code from the creator (or register the own post again).",
        )
    if status is AuthorizationStatus.unauthorizing:
        return _item(
            name,
            DiagnosisStatus.failing,
            "Being un-authorized: TikTok was asked to unbind the post and its answer is not known yet (D16).",
            "Send the un-authorize again to finish it, or apply a new code if the post should stay authorized.",
        )
    if status is AuthorizationStatus.pending:
        return _item(
            name,
            DiagnosisStatus.unknown,
            "The code was being applied when TikTok's answer was lost: whether it was applied is settled at the "
            "next apply of the post, or by `python -m app.cli settle`.",
            "Apply the code again: it settles the authorization without applying the code twice.",
        )
    if status is AuthorizationStatus.revoked:
        return _item(
            name,
            DiagnosisStatus.failing,
            f"TikTok no longer has the post authorized to the ad account: the creator revoked it (found at "
            f"{_when(authorization.revoked_at)}).",
            "Ask the creator for a new code and apply it.",
        )
    if status is AuthorizationStatus.expired:
        return _item(
            name,
            DiagnosisStatus.failing,
            f"The authorization ended at {_when(end)} (D3): ads using the post stop delivering then.",
            _NEW_CODE,
        )
    if end is None:
        if authorization.identity_type in _OWN:
            return _item(name, DiagnosisStatus.ok, "An own post has no window: its authorization does not expire (D1).")
        return _item(name, DiagnosisStatus.ok, "Active; TikTok reported no end for the window.")
    covered = " (the part both codes of the Duet/Stitch cover, D12)" if authorization.original_item_id else ""
    if end - now <= ENDING_SOON:
        return _item(
            name,
            DiagnosisStatus.ok,
            f"Active until {_when(end)}{covered}: it ends within {ENDING_SOON.days} days.",
            f"Ask the creator to extend the authorization (or for a new code) and apply it before {_when(end)}, or "
            "ads using the post stop delivering then.",
        )
    return _item(name, DiagnosisStatus.ok, f"Active until {_when(end)}{covered} (D3).")


def _check_post(authorization: Authorization, read: PostInfo | _Failed | None, ads: Sequence[Ad]) -> DiagnosisCheck:
    """The post as TikTok shows it now (the guide's fifth item, D8; and D5)."""
    name = DiagnosisCheckName.post
    item = authorization.item_id
    stored = f"As last reported, its status is {PostStatus.parse(authorization.post_status).value}."
    if isinstance(read, _Failed):
        error = read.error
        if not read.asked:
            return _item(name, DiagnosisStatus.unknown, f"{_not_asked(error)}. {stored}", _SEE_ACCESS)
        if isinstance(error, TikTokRequestRejected) and error.refusal is TikTokRefusal.post_not_found_for_identity:
            return _item(
                name,
                DiagnosisStatus.failing,
                f"TikTok shows no post {item} under {authorization.identity_type} identity "
                f"{authorization.identity_id}: it was deleted, or the identity is not the ad account's any more "
                f"({_tiktok_said(error)}).",
                "Check the identity in Ads Manager (and its Business Center); use another post.",
                error=error,
            )
        if isinstance(error, (TikTokAccessTokenInvalid, TikTokPermissionDenied, TikTokRequestRejected)):
            return _item(
                name,
                DiagnosisStatus.unknown,
                f"Not checked: TikTok refused to show the post: {_tiktok_said(error)}. {stored}",
                _SEE_ACCESS,
                error=error,
            )
        return _item(name, DiagnosisStatus.unknown, f"{_could_not_ask(error)}. {stored}", _AGAIN_LATER, error=error)
    if read is None:
        if authorization.state == AuthorizationState.unauthorized:
            detail = f"Post {item} is not authorized to the ad account: it was un-authorized here (D16)."
        else:
            detail = (
                f"TikTok no longer lists post {item} as authorized to ad account "
                f"{authorization.advertiser.tiktok_advertiser_id}: the creator revoked the authorization, or it was "
                "un-authorized outside this service."
            )
        return _item(name, DiagnosisStatus.failing, detail, "Ask the creator for a new code and apply it.")
    status = read.status
    raw = read.raw_status or status.value
    changed = (
        f" (stored here: {PostStatus.parse(authorization.post_status).value}, as last reported)"
        if PostStatus.parse(authorization.post_status) is not status
        else ""
    )
    if status is PostStatus.deleted:
        return _item(
            name,
            DiagnosisStatus.failing,
            f"TikTok shows post {item} deleted by its creator ({raw}){changed}.",
            _POST_GONE,
        )
    if status in _BANNED:
        return _item(
            name,
            DiagnosisStatus.failing,
            f"TikTok shows post {item} removed by TikTok ({raw}){changed}: a banned post cannot be used in ads (D8).",
            _POST_GONE,
        )
    if status in _PRIVATE:
        seen_by = "only by its author" if status is PostStatus.private else "only by the creator's friends"
        public_ads = [ad.ad_id for ad in ads if not ad.only_show_as_ad]
        if public_ads:
            return _item(
                name,
                DiagnosisStatus.failing,
                f"Post {item} is seen {seen_by} ({raw}){changed}, and ad(s) {', '.join(public_ads)} are not set to "
                "'only show as ad': the post becomes public while they run (D5).",
                "Turn on 'only show as ad' (dark_post_status ON) for those ads in Ads Manager, or have the creator "
                "make the post public if that is intended.",
            )
        if ads:
            detail = (
                f"Post {item} is seen {seen_by} ({raw}){changed}; every active ad only shows it as an ad, so it stays "
                "private (D5)."
            )
        else:
            detail = (
                f"Post {item} is seen {seen_by} ({raw}){changed}; an ad using it must be set to 'only show as ad', or "
                "the post becomes public while the ad runs (D5)."
            )
        return _item(name, DiagnosisStatus.ok, detail)
    if status is PostStatus.review_pending:
        detail = f"TikTok shows post {item} under review ({raw}){changed}: ads may not deliver until the review ends."
    elif status is PostStatus.unknown:
        detail = f"TikTok shows post {item} with a status this service does not know ({raw}){changed}."
    else:
        detail = f"TikTok shows post {item} public ({raw}){changed}."
    return _item(name, DiagnosisStatus.ok, detail)


def _check_limit(advertiser: Advertiser) -> DiagnosisCheck:
    """D10: the ad account's Spark Ads, as recorded here, against its limit."""
    name = DiagnosisCheckName.spark_ads_limit
    used, limit = advertiser.spark_ads_used, advertiser.spark_ads_limit
    account = advertiser.tiktok_advertiser_id
    if used >= limit:
        return _item(
            name,
            DiagnosisStatus.failing,
            f"Ad account {account} uses {used} Spark Ads and its limit is {limit} (D10).",
            "No new Spark Ad can use this account until ads are removed (removeAd) or the limit is raised "
            f"(PATCH /v1/advertisers/{account}, `spark_ads_limit`).",
        )
    return _item(
        name,
        DiagnosisStatus.ok,
        f"Ad account {account} uses {used} of its {limit} Spark Ads; {limit - used} remain (D10).",
    )


def _check_ad(authorization: Authorization, ad: Ad, now: datetime) -> DiagnosisCheck:
    """One active ad: its schedule against the window (D6), and Smart+'s own set-up (D15)."""
    name = DiagnosisCheckName.ad
    window_end = authorization.auth_end_at
    smart_plus = (
        " It is in a Smart+ campaign, which has its own Spark Ads set-up flow (D15): check the ad's set-up in "
        "Ads Manager's Smart+ flow."
        if ad.campaign_type == CampaignType.smart_plus
        else ""
    )
    if ad.ends_at is not None and ad.ends_at <= now:
        return _item(
            name,
            DiagnosisStatus.failing,
            f"Ad {ad.ad_id} was scheduled to end at {_when(ad.ends_at)}: its schedule is over.{smart_plus}",
            "Extend the ad's schedule in Ads Manager, or record it as removed (removeAd) if it is over.",
            ad_id=ad.ad_id,
        )
    if ad.ends_at is not None and window_end is not None and ad.ends_at > window_end:
        return _item(
            name,
            DiagnosisStatus.failing,
            f"Ad {ad.ad_id} is scheduled until {_when(ad.ends_at)}, but the authorization ends at {_when(window_end)}: "
            f"the ad stops delivering at the window's end.{smart_plus}",
            f"Shorten the ad's schedule to end by {_when(window_end)}, or ask the creator to extend the authorization "
            "(a new code) and apply it.",
            ad_id=ad.ad_id,
        )
    if ad.ends_at is None:
        schedule = (
            f"has no scheduled end; it stops delivering when the authorization ends at {_when(window_end)}"
            if window_end is not None
            else "has no scheduled end"
        )
    else:
        schedule = f"is scheduled until {_when(ad.ends_at)}" + (", within the window" if window_end else "")
    return _item(name, DiagnosisStatus.ok, f"Ad {ad.ad_id} {schedule}.{smart_plus}", ad_id=ad.ad_id)


def _when(moment: datetime | None) -> str:
    return moment.isoformat() if moment is not None else "none"
