from __future__ import annotations

import re
from typing import Annotated

from fastapi import APIRouter, Path, Query

from app.ads.schemas import AdRead
from app.api_keys.dependencies import CurrentCaller, caller_of
from app.authorizations.models import Authorization
from app.authorizations.schemas import AuthorizationRead
from app.kit.contract import CALLS_TIKTOK
from app.kit.db import DbEngine, Sessions
from app.kit.deps import Secrets, TikTok
from app.kit.errors import problem_responses
from app.kit.hot_reads import HotRequest, NotPlain, hot_read
from app.posts import service
from app.posts.schemas import AuthorizationWithAds, DeletionSafety, PostRead

router = APIRouter(prefix="/posts", tags=["posts"])

ITEM_ID_PATTERN = r"^[0-9]{1,32}$"
ItemIdPath = Annotated[str, Path(pattern=ITEM_ID_PATTERN, description="The TikTok post id.")]
_ITEM_ID = re.compile(ITEM_ID_PATTERN)


@router.get(
    "/{item_id}/deletion-safety",
    operation_id="getDeletionSafety",
    summary="May the creator delete this post?",
    responses=problem_responses(),
    openapi_extra={CALLS_TIKTOK: True},  # with `confirm`; TikTok's failures make the answer unconfirmed, not a problem
)
async def get_deletion_safety(
    item_id: ItemIdPath,
    engine: DbEngine,
    sessions: Sessions,
    caller: CurrentCaller,
    tiktok: TikTok,
    box: Secrets,
    confirm: Annotated[
        bool,
        Query(
            description="Read the ads of every ad account concerned from TikTok before answering, so that ads made "
            "or deleted in Ads Manager since the last reconciliation count. If TikTok cannot be reached for one, "
            "the answer is not `safe` (`confirmed: false`)."
        ),
    ] = False,
) -> DeletionSafety:
    """D7: `safe` only when, in every ad account the service knows, no active ad uses the post and no authorization
    still binds it, nor a Duet/Stitch made from it. Otherwise every blocker, with the action that clears it. A post
    the service has never seen is safe with `known: false`. Every ad account counts; the blockers are named only in
    the ad accounts this API key may see, and the others counted (`other_ad_accounts`). `ad_accounts` says when
    each visible ad account's ads were last read from TikTok; `?confirm=true` reads them now."""
    post = await service.verdict_view(engine, item_id=item_id)
    if not confirm:
        return service.deletion_safety(post, caller)
    unconfirmed = await service.confirm_ads(sessions, tiktok, box, service.ad_accounts_concerned(post))
    return service.deletion_safety(await service.verdict_view(engine, item_id=item_id), caller, unconfirmed=unconfirmed)


@hot_read("getDeletionSafety")
async def get_deletion_safety_plainly(request: HotRequest) -> DeletionSafety:
    """`get_deletion_safety`'s plain case (without `confirm`), without FastAPI's per-request work
    (app.kit.hot_reads)."""
    if not _ITEM_ID.fullmatch(request.params["item_id"]):
        raise NotPlain()
    caller = caller_of(request.scope)
    post = await service.verdict_view(request.app.state.engine, item_id=request.params["item_id"])
    return service.deletion_safety(post, caller)


@router.get(
    "/{item_id}",
    operation_id="getPost",
    summary="A post across every ad account",
    responses=problem_responses(),
)
async def get_post(item_id: ItemIdPath, sessions: Sessions, caller: CurrentCaller) -> PostRead:
    """The post's authorizations in every ad account (un-authorized ones included), the Duets/Stitches made from
    it, and every ad of each, in the ad accounts this API key may see. With none to show, `known: false`."""
    post = service.visible_to(await service.view(sessions, item_id=item_id), caller)

    def with_ads(rows: list[Authorization]) -> list[AuthorizationWithAds]:
        return [
            AuthorizationWithAds(
                **AuthorizationRead.from_model(row, post.now).model_dump(),
                ads=[AdRead.from_model(ad, row) for ad in post.ads.get(row.id, [])],
            )
            for row in rows
        ]

    return PostRead(
        item_id=item_id, known=post.known, authorizations=with_ads(post.authorizations), pairs=with_ads(post.pairs)
    )
