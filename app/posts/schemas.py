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
