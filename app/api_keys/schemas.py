from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field


class ApiKeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(
        min_length=1,
        max_length=200,
        pattern=r"^[^\x00-\x1f\x7f]*$",
        description="Who uses the key, e.g. `campaign-tool`.",
    )
    admin: bool = Field(default=False, description="Whether the key may manage API keys.")


class ApiKeyRead(BaseModel):
    id: uuid.UUID
    name: str
    admin: bool
    created_at: datetime
    revoked_at: datetime | None


class ApiKeyCreated(ApiKeyRead):
    key: str = Field(description="The key itself. Shown only in this answer: store it now.")
