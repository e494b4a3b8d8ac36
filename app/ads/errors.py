"""Why an ad cannot be linked or found. Each reason is stable: callers switch on it."""

from __future__ import annotations

from app.kit.errors import ProblemError


class AdNotFound(ProblemError):
    status = 404
    reason = "ad_not_found"
    title = "This authorization has no ad with this id"


class AuthorizationNotActive(ProblemError):
    status = 409
    reason = "authorization_not_active"
    title = "The authorization cannot be used by a new ad (expired, un-authorized, pending, or its post unusable)"


class AdLinkedElsewhere(ProblemError):
    status = 409
    reason = "ad_linked_elsewhere"
    title = "This ad is already linked to another authorization"


class AdRemoved(ProblemError):
    status = 409
    reason = "ad_removed"
    title = "This ad was recorded as removed from Ads Manager; TikTok never brings a deleted ad back"


class SparkAdsLimitReached(ProblemError):
    status = 409
    reason = "spark_ads_limit_reached"
    title = "The ad account uses all the Spark Ads its limit allows (D10)"


class IdentityAdsLimitReached(ProblemError):
    status = 409
    reason = "identity_ads_limit_reached"
    title = "The post's identity is used by as many ads as TikTok allows one identity"


LINK_REFUSALS: tuple[type[ProblemError], ...] = (
    AuthorizationNotActive,
    AdLinkedElsewhere,
    AdRemoved,
    SparkAdsLimitReached,
    IdentityAdsLimitReached,
)
