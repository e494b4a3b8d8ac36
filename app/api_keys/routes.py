from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response, status

from app.api_keys import service
from app.api_keys.access import Caller
from app.api_keys.dependencies import CurrentCaller
from app.api_keys.errors import AdminRequired, ApiKeyNotFound, CannotRevokeOwnKey
from app.api_keys.models import Scope
from app.api_keys.schemas import ApiKeyCreate, ApiKeyCreated, ApiKeyPage, ApiKeyRead, ApiKeyUpdate
from app.kit.crypto import KeyHasher
from app.kit.db import DbSession
from app.kit.errors import CursorInvalid, problem_responses
from app.kit.pagination import PageParams, page_params

router = APIRouter(prefix="/api-keys", tags=["api keys"])


async def _admin(caller: CurrentCaller) -> Caller:
    service.require_scope(caller, Scope.admin, doing="Managing API keys")
    return caller


AdminCaller = Annotated[Caller, Depends(_admin)]


@router.post(
    "",
    operation_id="createApiKey",
    status_code=status.HTTP_201_CREATED,
    summary="Make an API key",
    responses=problem_responses(AdminRequired),
)
async def create_api_key(
    body: ApiKeyCreate, request: Request, response: Response, session: DbSession, admin: AdminCaller
) -> ApiKeyCreated:
    """A new key for another system, with its scopes and the ad accounts it may touch. Its value is in this answer
    only; the service keeps just a keyed hash."""
    hasher: KeyHasher = request.app.state.key_hasher
    api_key, grants, value = await service.create(
        session,
        hasher,
        name=body.name,
        scopes=body.scopes,
        admin=body.admin,
        advertiser_ids=body.advertiser_ids,
        by=admin,
    )
    response.headers["Location"] = f"/v1/api-keys/{api_key.id}"
    return ApiKeyCreated(**ApiKeyRead.from_model(api_key, grants).model_dump(), key=value)


@router.get(
    "",
    operation_id="listApiKeys",
    summary="List API keys",
    responses=problem_responses(AdminRequired, CursorInvalid),
)
async def list_api_keys(
    session: DbSession, _: AdminCaller, page: Annotated[PageParams, Depends(page_params)]
) -> ApiKeyPage:
    """Every key, revoked ones included, oldest first, a page at a time; never their values."""
    rows, next_cursor = await service.list_page(session, page=page)
    return ApiKeyPage(
        items=[ApiKeyRead.from_model(api_key, grants) for api_key, grants in rows], next_cursor=next_cursor
    )


@router.get(
    "/{api_key_id}",
    operation_id="getApiKey",
    summary="Read an API key",
    responses=problem_responses(AdminRequired, ApiKeyNotFound),
)
async def get_api_key(api_key_id: uuid.UUID, session: DbSession, _: AdminCaller) -> ApiKeyRead:
    return ApiKeyRead.from_model(*await service.get(session, api_key_id=api_key_id))


@router.patch(
    "/{api_key_id}",
    operation_id="updateApiKey",
    summary="Change an API key's scopes or ad accounts",
    responses=problem_responses(AdminRequired, ApiKeyNotFound),
)
async def update_api_key(api_key_id: uuid.UUID, body: ApiKeyUpdate, session: DbSession, _: AdminCaller) -> ApiKeyRead:
    """Fields left out (or null) stay as they are; `advertiser_ids` replaces the list. Takes effect at the key's
    next request."""
    api_key, grants = await service.update(
        session, api_key_id=api_key_id, name=body.name, scopes=body.scopes, advertiser_ids=body.advertiser_ids
    )
    return ApiKeyRead.from_model(api_key, grants)


@router.delete(
    "/{api_key_id}",
    operation_id="revokeApiKey",
    summary="Revoke an API key",
    responses=problem_responses(AdminRequired, ApiKeyNotFound, CannotRevokeOwnKey),
)
async def revoke_api_key(api_key_id: uuid.UUID, session: DbSession, admin: AdminCaller) -> ApiKeyRead:
    """The key stops working at once. Revoking a revoked key answers it as it is."""
    return ApiKeyRead.from_model(*await service.revoke(session, api_key_id=api_key_id, by=admin))
