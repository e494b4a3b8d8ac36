"""Who is writing: the API key of the request, recorded on every row it creates or changes.

The API key dependency sets it for the request (a context variable, so every task the request starts sees it);
a `before_flush` hook stamps `created_by_api_key_id` and `updated_by_api_key_id` on the rows of the tables that
carry them (`WrittenByMixin`). Writes made outside a request (commands such as `settle`) are stamped with nothing.
"""

from __future__ import annotations

import uuid
from contextvars import ContextVar
from typing import Any

from sqlalchemy import ForeignKey, event
from sqlalchemy.orm import Mapped, Session, declared_attr, mapped_column

_current: ContextVar[uuid.UUID | None] = ContextVar("api_key_id", default=None)


def act_as(api_key_id: uuid.UUID | None) -> None:
    """The API key the current request (and every task it starts from now on) writes as."""
    _current.set(api_key_id)


def current() -> uuid.UUID | None:
    return _current.get()


class WrittenByMixin:
    """The API key that created the row, and the one that last changed it (null: written by a command)."""

    @declared_attr
    def created_by_api_key_id(cls) -> Mapped[uuid.UUID | None]:
        return mapped_column(ForeignKey("api_keys.id", ondelete="SET NULL"))

    @declared_attr
    def updated_by_api_key_id(cls) -> Mapped[uuid.UUID | None]:
        return mapped_column(ForeignKey("api_keys.id", ondelete="SET NULL"))


@event.listens_for(Session, "before_flush")
def _stamp(session: Session, _context: Any, _instances: Any) -> None:
    actor = _current.get()
    if actor is None:
        return
    for row in session.new:
        if isinstance(row, WrittenByMixin):
            row.created_by_api_key_id = actor
            row.updated_by_api_key_id = actor
    for row in session.dirty:
        if isinstance(row, WrittenByMixin) and session.is_modified(row, include_collections=False):
            row.updated_by_api_key_id = actor
