"""Structured logging: events with fields, never sentences, and never a secret in clear.

Everything (structlog and the standard library's loggers, uvicorn's included) goes through one renderer.
A processor drops the values of fields whose names say they hold a secret, as a last line of defence; the
first line is not to pass secrets to a logger at all.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

from app.kit.request_id import add_request_id

_SECRET_FIELDS = frozenset(
    {"auth_code", "original_post_auth_code", "access_token", "authorization", "api_key", "token", "code_text"}
)


def _redact_secrets(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key in event_dict.keys() & _SECRET_FIELDS:
        event_dict[key] = "[redacted]"
    return event_dict


def configure_logging(*, level: str = "INFO", json: bool = True) -> None:
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        add_request_id,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _redact_secrets,
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        # Not cached: loggers stay reconfigurable (tests capture them), at the cost of a lookup per call.
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # httpx logs every request URL at INFO, and TikTok's GET URLs carry the creator's code in the query string.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)
    # procrastinate logs every job's start and end at INFO: three lines every 5 seconds for the webhook dispatcher
    # alone. Its warnings and errors (a job that failed, a stalled worker) still come through; the jobs log what
    # they did themselves (authorizations.swept, reconcile.*, webhook.*).
    logging.getLogger("procrastinate").setLevel(logging.WARNING)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
        # uvicorn sets INFO on its own loggers: LOG_LEVEL decides for them too (WARNING silences access lines).
        logging.getLogger(name).setLevel(logging.NOTSET)
