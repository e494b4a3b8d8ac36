from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, Field

from app.api_keys.models import ApiKey, Scope
from app.kit.bodies import FromText, RequestBody
from app.kit.pagination import Page

ApiKeyName = Annotated[
    str, Field(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]*$", description="Who uses the key.")
]
AdvertiserIds = Annotated[
    list[Annotated[str, Field(pattern=r"^[0-9]{1,32}$")]],
    Field(max_length=10_000, description="The TikTok ad account ids the key may touch (an admin key: every one)."),
]


class ApiKeyCreate(RequestBody):
    name: ApiKeyName = Field(examples=["campaign-tool"])
    scopes: list[FromText[Scope]] = Field(
        default=[Scope.read, Scope.write],
        description="`read` to read, `write` to write, `admin` to manage keys and touch every ad account.",
    )
    admin: bool = Field(default=False, description="The same as `admin` in `scopes` (kept for older callers).")
    advertiser_ids: AdvertiserIds = []


class ApiKeyUpdate(RequestBody):
    """What may change about a key; fields left out (or null) stay as they are."""

    name: ApiKeyName | None = None
    scopes: list[FromText[Scope]] | None = None
    advertiser_ids: AdvertiserIds | None = None


class ApiKeyRead(BaseModel):
    id: uuid.UUID
    name: str
    admin: bool
    scopes: list[Scope]
    advertiser_ids: list[str] = Field(description="The ad accounts it may touch; an admin key touches every one.")
    created_by_api_key_id: uuid.UUID | None = Field(description="The key that made it (none: BOOTSTRAP_API_KEY).")
    created_at: datetime
    revoked_at: datetime | None

    @classmethod
    def from_model(cls, api_key: ApiKey, advertiser_ids: list[str]) -> ApiKeyRead:
        return cls(
            id=api_key.id,
            name=api_key.name,
            admin=api_key.is_admin,
            scopes=[Scope(scope) for scope in api_key.scopes],
            advertiser_ids=advertiser_ids,
            created_by_api_key_id=api_key.created_by_api_key_id,
            created_at=api_key.created_at,
            revoked_at=api_key.revoked_at,
        )


class ApiKeyCreated(ApiKeyRead):
    key: str = Field(description="The key itself. Shown only in this answer: store it now.")


class ApiKeyPage(Page[ApiKeyRead]):
    """A page of API keys; `next_cursor` fetches the next."""
