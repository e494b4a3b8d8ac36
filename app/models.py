"""Every table, imported in one place so that Alembic sees the whole schema."""

from app.ads.models import Ad, IdentityUsage
from app.advertisers.models import Advertiser
from app.api_keys.models import ApiKey, ApiKeyGrant
from app.authorizations.models import Authorization
from app.events.models import Event
from app.kit.db import Base
from app.kit.idempotency import IdempotencyKey
from app.kit.rate_budget import CallTurns
from app.webhooks.models import WebhookDelivery, WebhookSubscription

__all__ = [
    "Ad",
    "Advertiser",
    "ApiKey",
    "ApiKeyGrant",
    "Authorization",
    "Base",
    "CallTurns",
    "Event",
    "IdempotencyKey",
    "IdentityUsage",
    "WebhookDelivery",
    "WebhookSubscription",
]
