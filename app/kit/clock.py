"""One clock for the whole service: a request reads it once, so every decision in that request sees one `now`.

Routes take `now: Now` and pass it down; code outside a request (commands, the intake flow's later phases) calls
`clock.utcnow()` through the module, so a test can replace this one function.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import Depends


def utcnow() -> datetime:
    """The current time, timezone-aware, in UTC."""
    return datetime.now(UTC)


async def _request_now() -> datetime:
    # Looked up through the module at call time, so that replacing `utcnow` (tests) takes effect here too.
    return utcnow()


# FastAPI caches a dependency per request: however many parameters ask for it, `now` is read once.
Now = Annotated[datetime, Depends(_request_now)]
