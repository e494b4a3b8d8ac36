"""Keyset (cursor) pagination: stable under inserts, cheap at any depth.

A cursor is signed by the service (`SecretBox.sign`): callers pass it back unchanged and cannot make or alter
one, so whatever it holds was written by this service. Anything else is `cursor_invalid`.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Generic, TypeVar

from fastapi import Query
from pydantic import BaseModel, Field
from pydantic.json_schema import SkipJsonSchema

from app.kit.crypto import SecretBox, SignatureInvalid
from app.kit.deps import Secrets
from app.kit.errors import CursorInvalid

T = TypeVar("T")

_PURPOSE = "pagination-cursor"


@dataclass(frozen=True, slots=True)
class Cursor:
    """The position after the last row of a page, in (created_at, id) order."""

    created_at: datetime
    id: uuid.UUID

    def encode(self, box: SecretBox) -> str:
        return box.sign([self.created_at.isoformat(), str(self.id)], purpose=_PURPOSE)

    @classmethod
    def decode(cls, box: SecretBox, value: str) -> Cursor:
        try:
            payload = box.unsign(value, purpose=_PURPOSE)
        except SignatureInvalid as exc:
            raise CursorInvalid() from exc
        match payload:
            case [str(created_at), str(row_id)]:
                try:
                    cursor = cls(datetime.fromisoformat(created_at), uuid.UUID(row_id))
                except ValueError as exc:
                    raise CursorInvalid() from exc
            case _:
                raise CursorInvalid()
        if cursor.created_at.tzinfo is None:  # only a change of this code could make one: refuse, do not guess
            raise CursorInvalid()
        return cursor


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = Field(description="Pass as `cursor` to get the next page; null on the last page.")


@dataclass(frozen=True, slots=True)
class PageParams:
    limit: int
    cursor: Cursor | None
    box: SecretBox

    def next_cursor(self, last_created_at: datetime, last_id: uuid.UUID) -> str:
        return Cursor(last_created_at, last_id).encode(self.box)


async def page_params(
    box: Secrets,
    limit: Annotated[int, Query(ge=1, le=200, description="Items per page.")] = 50,
    # Absent, or a cursor: never empty, never null (the schema says a string; `?cursor=` is refused).
    cursor: Annotated[
        str | SkipJsonSchema[None],
        Query(min_length=1, max_length=500, description="`next_cursor` of the previous page, unchanged."),
    ] = None,
) -> PageParams:
    return PageParams(limit=limit, cursor=Cursor.decode(box, cursor) if cursor is not None else None, box=box)
