"""Every table, imported in one place so that Alembic sees the whole schema."""

from app.ads.models import Ad, IdentityUsage
from app.advertisers.models import Advertiser
from app.api_keys.models import ApiKey
from app.authorizations.models import Authorization
from app.kit.db import Base

__all__ = ["Ad", "Advertiser", "ApiKey", "Authorization", "Base", "IdentityUsage"]
