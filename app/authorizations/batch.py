"""Batches of up to 20 codes (D11, D13), each item through the same phases as a single code (see `intake`).

1. Every code's form is checked first: one that is not a code refuses the whole request, and nothing is done.
2. Items already applied as given answer from what is stored, without TikTok.
3. TikTok describes every other distinct code (`tt_video/info`), concurrently, bounded, each call taking its turn
   from the shared budget.
4. The two codes of one Duet/Stitch given as two separate items are recognised as a pair (D12) and applied
   together, with one `authorize`; both items report the same authorization.
5. Each plan is claimed, applied and activated on its own, concurrently, bounded: a failure late in the batch loses
   none of the earlier ones, and one bad code never spoils the others. The same code twice gives one
   authorization, reported by both items.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import TypeVar

from app.advertisers import service as advertisers
from app.advertisers.models import Advertiser
from app.authorizations import intake
from app.authorizations.errors import AuthCodeInvalid
from app.authorizations.models import Authorization
from app.kit.crypto import SecretBox
from app.kit.errors import ProblemError
from app.tiktok.client import TikTokClient
from app.tiktok.models import PostInfo

MAX_ITEMS = 20  # D11: what Ads Manager takes at once
# TikTok calls of one batch in flight at once: one per item, so that a batch takes about as long as one code when
# the budget allows; the shared budget (TIKTOK_QPS) decides how fast they really go, across every replica.
CONCURRENCY = MAX_ITEMS

T = TypeVar("T")


class Outcome(StrEnum):
    created = "created"  # applied now: a new authorization
    existing = "existing"  # already authorized here (D2), or the same code earlier in this batch
    rejected = "rejected"  # refused for a reason that sending it again will not change
    failed = "failed"  # could not be done now (TikTok or Postgres unavailable...): `retryable`, send it again


@dataclass(frozen=True, slots=True)
class ItemResult:
    outcome: Outcome
    applied: intake.Applied | None = None
    problem: ProblemError | None = None
    paired_with: int | None = None  # the other item of a Duet/Stitch pair given as two items


@dataclass(frozen=True, slots=True)
class _Item:
    code: str
    original_code: str | None


async def apply_batch(
    sessions: intake.Sessions,
    tiktok: TikTokClient,
    box: SecretBox,
    policy: intake.Policy,
    *,
    tiktok_advertiser_id: str,
    items: Sequence[tuple[str, str | None]],
    now: datetime,
    concurrency: int = CONCURRENCY,
) -> list[ItemResult]:
    """One result per item, in input order. At most `concurrency` TikTok calls of the batch are in flight."""
    cleaned = _clean(items)
    async with sessions() as session:
        advertiser = await advertisers.get(session, tiktok_advertiser_id=tiktok_advertiser_id)
        known = {
            item: await intake.applied_already(
                session, box, advertiser, code=item.code, original_code=item.original_code, now=now
            )
            for item in dict.fromkeys(cleaned)
        }
    token = box.decrypt(advertiser.access_token_encrypted)
    bounded = asyncio.Semaphore(concurrency)

    # What TikTok says of every code still to apply (each distinct code read once).
    to_read = {code for item in cleaned if known[item] is None for code in (item.code, item.original_code) if code}
    reads = await _gather(bounded, {code: _reader(tiktok, advertiser, token, code) for code in to_read})

    # Plans: pairs given as two items are joined; identical items share one plan.
    plans: dict[_Item, intake.Plan | ProblemError] = {}
    partner: dict[int, int] = _pairs(cleaned, known, reads)
    for index, item in enumerate(cleaned):
        if known[item] is not None or item in plans or index in partner.values():
            continue
        original_index = partner.get(index)
        original_item = cleaned[original_index] if original_index is not None else None
        plans[item] = _plan(item, reads, policy, now, original=original_item)

    applied = await _gather(
        bounded,
        {
            item: _applier(sessions, tiktok, box, policy, advertiser, token, plan)
            for item, plan in plans.items()
            if isinstance(plan, intake.Plan)
        },
    )
    return _results(cleaned, known, plans, applied, partner)


def _clean(items: Sequence[tuple[str, str | None]]) -> list[_Item]:
    cleaned, errors = [], []
    for index, (code, original_code) in enumerate(items):
        try:
            cleaned.append(
                _Item(
                    intake.clean_code(code, field="auth_code"),
                    intake.clean_code(original_code, field="original_post_auth_code") if original_code else None,
                )
            )
        except AuthCodeInvalid as error:
            field = str(error.extensions.get("field"))
            errors.append({"loc": ["body", "items", index, field], "msg": error.title, "type": error.reason})
    if errors:
        # The single-code call's reason for the same mistake; `errors` says which items.
        raise AuthCodeInvalid("Some items are not TikTok video codes: nothing was applied.", errors=errors)
    return cleaned


def _reader(tiktok: TikTokClient, advertiser: Advertiser, token: str, code: str) -> Callable[[], Awaitable[PostInfo]]:
    return lambda: intake.read_post(tiktok, advertiser, token, code)


def _applier(
    sessions: intake.Sessions,
    tiktok: TikTokClient,
    box: SecretBox,
    policy: intake.Policy,
    advertiser: Advertiser,
    token: str,
    plan: intake.Plan,
) -> Callable[[], Awaitable[intake.Applied]]:
    return lambda: intake.apply_plan(sessions, tiktok, box, policy, advertiser=advertiser, token=token, plan=plan)


async def _gather(bounded: asyncio.Semaphore, calls: dict[T, Callable[[], Awaitable[object]]]) -> dict[T, object]:
    """Run the calls concurrently, at most `bounded` at once; each one's result, or the ProblemError it raised."""

    async def run(call: Callable[[], Awaitable[object]]) -> object:
        async with bounded:
            try:
                return await call()
            except ProblemError as problem:
                return problem

    keys = list(calls)
    results = await asyncio.gather(*(run(calls[key]) for key in keys))
    return dict(zip(keys, results, strict=True))


def _pairs(items: list[_Item], known: dict[_Item, Authorization | None], reads: dict[str, object]) -> dict[int, int]:
    """D12: a Duet/Stitch item without its original's code, and another item whose code is that original's (and
    nothing else): {index of the Duet/Stitch: index of its original}."""
    by_post: dict[str, int] = {}
    for index, item in enumerate(items):
        post = reads.get(item.code)
        if known[item] is None and item.original_code is None and isinstance(post, PostInfo):
            by_post.setdefault(post.item_id, index)
    pairs: dict[int, int] = {}
    for index, item in enumerate(items):
        post = reads.get(item.code)
        if known[item] is not None or item.original_code is not None or not isinstance(post, PostInfo):
            continue
        original_index = by_post.get(post.original_item_id or "")
        if original_index is not None and original_index != index and original_index not in pairs.values():
            pairs[index] = original_index
    return pairs


def _plan(
    item: _Item, reads: dict[str, object], policy: intake.Policy, now: datetime, *, original: _Item | None
) -> intake.Plan | ProblemError:
    original_code = original.code if original is not None else item.original_code
    try:
        post = _read(reads, item.code)
        other = (original_code, _read(reads, original_code)) if original_code else None
        return intake.make_plan(item.code, post, other, policy=policy, now=now)
    except ProblemError as problem:
        return problem


def _read(reads: dict[str, object], code: str) -> PostInfo:
    read = reads[code]
    if isinstance(read, ProblemError):
        raise read
    assert isinstance(read, PostInfo)
    return read


def _results(
    items: list[_Item],
    known: dict[_Item, Authorization | None],
    plans: dict[_Item, intake.Plan | ProblemError],
    applied: dict[_Item, object],
    partner: dict[int, int],
) -> list[ItemResult]:
    original_of = {original: pair for pair, original in partner.items()}
    results: list[ItemResult] = []
    seen: set[_Item] = set()  # the same item again reports the same authorization, as already there
    for index, item in enumerate(items):
        source = items[original_of[index]] if index in original_of else item
        paired_with = partner.get(index, original_of.get(index))
        stored = known[item]
        if stored is not None:
            results.append(ItemResult(Outcome.existing, intake.Applied(stored, created=False)))
            continue
        plan = plans[source]
        outcome = applied.get(source, plan)
        if isinstance(outcome, ProblemError):
            failed = outcome.retryable or outcome.status >= 500
            results.append(ItemResult(Outcome.failed if failed else Outcome.rejected, problem=outcome))
            continue
        assert isinstance(outcome, intake.Applied)
        created = outcome.created and item not in seen
        seen.add(item)
        results.append(
            ItemResult(
                Outcome.created if created else Outcome.existing,
                intake.Applied(outcome.authorization, created=created, reordered=outcome.reordered),
                paired_with=paired_with,
            )
        )
    return results
