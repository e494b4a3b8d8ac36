"""A request id on every request (asgi-correlation-id): the caller's own `X-Request-ID` when it is a sane token,
so that one id can follow a request across services, else a new one; in the response's `X-Request-ID`, and in
every log event of the request (`add_request_id`, a structlog processor)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

from asgi_correlation_id import CorrelationIdMiddleware, correlation_id

HEADER = "X-Request-ID"
PATTERN = r"[A-Za-z0-9._:-]{1,128}"
_SANE = re.compile(PATTERN)


def _is_sane(value: str) -> bool:
    return _SANE.fullmatch(value) is not None


@dataclass
class RequestIdMiddleware(CorrelationIdMiddleware):
    header_name: str = HEADER
    generator: Callable[[], str] = field(default=lambda: uuid.uuid4().hex)
    validator: Callable[[str], bool] | None = field(default=_is_sane)


def current() -> str | None:
    """The id of the request being served, if any."""
    return correlation_id.get()


def add_request_id(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    request_id = correlation_id.get()
    if request_id is not None:
        event_dict.setdefault("request_id", request_id)
    return event_dict
