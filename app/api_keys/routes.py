from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, status

from app.api_keys import service
from app.api_keys.dependencies import require_api_key
from app.api_keys.errors import AdminRequired, ApiKeyNotFound, CannotRevokeOwnKey
from app.api_keys.models import ApiKey
from app.api_keys.schemas import ApiKeyCreate, ApiKeyCreated, ApiKeyRead
from app.kit.db import DbSession
from app.kit.errors import problem_responses

router = APIRouter(prefix="/api-keys", tags=["api keys"])


async def _admin(api_key: Annotated[ApiKey, Depends(require_api_key)]) -> ApiKey:
    service.require_admin(api_key)
    return api_key


AdminKey = Annotated[ApiKey, Depends(_admin)]


def _read(api_key: ApiKey) -> ApiKeyRead:
    return ApiKeyRead(
        id=api_key.id,
        name=api_key.name,
        admin=api_key.is_admin,
        created_at=api_key.created_at,
        revoked_at=api_key.revoked_at,
    )


@router.post(
    "",
    operation_id="createApiKey",
    status_code=status.HTTP_201_CREATED,
    summary="Make an API key",
    responses=problem_responses(AdminRequired),
)
async def create_api_key(body: ApiKeyCreate, session: DbSession, _: AdminKey) -> ApiKeyCreated:
    """A new key for another system. Its value is in this answer only; the service keeps just a hash."""
    api_key, value = await service.create(session, name=body.name, is_admin=body.admin)
    return ApiKeyCreated(**_read(api_key).model_dump(), key=value)


@router.get(
    "",
    operation_id="listApiKeys",
    summary="List API keys",
    responses=problem_responses(AdminRequired),
)
async def list_api_keys(session: DbSession, _: AdminKey) -> list[ApiKeyRead]:
    """Every key, revoked ones included, oldest first; never their values."""
    return [_read(api_key) for api_key in await service.list_all(session)]


@router.delete(
    "/{api_key_id}",
    operation_id="revokeApiKey",
    summary="Revoke an API key",
    responses=problem_responses(AdminRequired, ApiKeyNotFound, CannotRevokeOwnKey),
)
async def revoke_api_key(api_key_id: uuid.UUID, session: DbSession, admin: AdminKey) -> ApiKeyRead:
    """The key stops working at once. Revoking a revoked key answers it as it is."""
    return _read(await service.revoke(session, api_key_id=api_key_id, by=admin))
