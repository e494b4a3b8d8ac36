from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, Field

from app.ads.schemas import AdRead
from app.authorizations.models import AuthorizationStatus
from app.authorizations.schemas import AuthorizationRead


class Relation(StrEnum):
    """How the authorization that blocks relates to the post asked about."""

    post = "post"  # the post itself
    duet = "duet"  # a Duet made from it: the original is blocked while the Duet is bound (D12)
    stitch = "stitch"  # a Stitch made from it


class Action(StrEnum):
    remove_ad = "remove_ad"  # DELETE /v1/authorizations/{authorization_id}/ads/{ad_id}, once removed in Ads Manager
    unauthorize = "unauthorize"  # POST /v1/authorizations/{authorization_id}/unauthorize, once its ads are removed
    settle = "settle"  # an apply or un-authorize whose outcome is unknown: retry it, or run `app.cli settle`


class BlockerKind(StrEnum):
    ad = "ad"
    authorization = "authorization"


class Blocker(BaseModel):
    kind: BlockerKind = Field(description="An active ad on the post, or an authorization that still binds it.")
    action: Action = Field(description="What clears this blocker.")
    advertiser_id: str = Field(description="TikTok's advertiser (ad account) id.")
    authorization_id: uuid.UUID
    item_id: str = Field(description="The post bound: the one asked about, or a Duet/Stitch made from it.")
    relation: Relation
    authorization_status: AuthorizationStatus
    ad_id: str | None = Field(description="For an ad: TikTok's ad id.")


class AdAccountCheck(BaseModel):
    advertiser_id: str = Field(description="TikTok's advertiser (ad account) id.")
    ads_reconciled_at: datetime | None = Field(
        description="When this ad account's ads were last read from TikTok (`ad/get`): ads made or deleted in Ads "
        "Manager since then are not known yet. Null: never."
    )
    confirmed: bool | None = Field(
        description="With `?confirm=true`: whether its ads were read from TikTok just now (false: TikTok could not "
        "be reached, so ads made outside the service may be missed). Null when not asked."
    )


class DeletionSafety(BaseModel):
    item_id: str
    known: bool = Field(
        description="Whether the service has ever tracked this post (or a Duet/Stitch of it), in any ad account. An "
        "unknown post is "
        "`safe`: nothing here blocks it; `known` tells that apart from 'checked and clear'."
    )
    safe: bool = Field(
        description="True only when, in every ad account the service knows, no active ad uses the post and no "
        "authorization still binds it (an expired one that was never un-authorized still does) (D7)."
    )
    blockers: list[Blocker] = Field(
        description="Every ad and authorization that blocks deletion, with its action, in the ad accounts this API "
        "key may see."
    )
    other_ad_accounts: int = Field(
        description="Ad accounts this key may not see where the post is blocked too: counted, not named. `safe` "
        "counts them."
    )
    checked_at: datetime = Field(
        description="The moment the answer describes: one consistent view of every ad account."
    )
    ad_accounts: list[AdAccountCheck] = Field(
        default_factory=list,
        description="The ad accounts this API key may see where the post (or a Duet/Stitch of it) is still bound, "
        "each with when its ads were last read from TikTok.",
    )
    confirmed: bool | None = Field(
        default=None,
        description="With `?confirm=true`: true when the ads of every ad account concerned (hidden ones too) were "
        "read from TikTok before answering; false when TikTok could not be reached for one or more, and then `safe` "
        "is false whatever else is found. Null when confirmation was not asked for.",
    )
    unconfirmed_ad_accounts: int = Field(
        default=0,
        description="How many ad accounts concerned (hidden ones included) could not be confirmed with TikTok; "
        "the visible ones are named in `ad_accounts` with `confirmed: false`.",
    )


class AuthorizationWithAds(AuthorizationRead):
    ads: list[AdRead] = Field(description="Every ad linked to it, removed ones included, oldest first.")


class PostRead(BaseModel):
    item_id: str
    known: bool
    authorizations: list[AuthorizationWithAds] = Field(
        description="The post's authorizations in every ad account, un-authorized ones included, oldest first."
    )
    pairs: list[AuthorizationWithAds] = Field(
        description="Authorizations of Duets/Stitches made from this post (D12), in every ad account."
    )
