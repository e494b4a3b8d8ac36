"""Operator commands, runnable against production at any time: `python -m app.cli --help`.

They read the same settings as the service (DATABASE_URL, TIKTOK_API_BASE_URL, ENCRYPTION_KEYS, ...).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

import structlog

from app.authorizations import intake
from app.kit.logging import configure_logging
from app.kit.resources import open_resources
from app.kit.settings import LogFormat, get_settings

log = structlog.get_logger(__name__)


async def _settle() -> int:
    settings = get_settings()
    async with open_resources(settings) as resources:
        report = await intake.settle(
            resources.sessionmaker, resources.tiktok, resources.secret_box, intake.Policy.from_settings(settings)
        )
    print(
        f"settled: {report.activated} activated (bound on TikTok), {report.forgotten} forgotten (not bound), "
        f"{report.released} renewals checked, {report.unbound} unbound, {report.still_bound} still bound after an "
        f"unbind, {report.failed} left for later (TikTok could not be asked)"
    )
    return 1 if report.failed else 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app.cli", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser(
        "settle",
        help="settle authorizations whose outcome on TikTok is unknown (pending, unauthorizing), by reading what "
        "TikTok has bound",
        description="An apply or an un-authorize whose TikTok answer was lost, or whose process died, leaves its "
        "authorization pending or unauthorizing. This reads each one back from TikTok (tt_video/list): a pending "
        "one bound becomes active, not bound is dropped; an unauthorizing one not bound becomes unauthorized, "
        "still bound becomes active again. Safe at any time, on any number of replicas. Exits 1 if some could "
        "not be settled because TikTok could not be asked (run it again later).",
    )
    args = parser.parse_args(argv)
    settings = get_settings()
    configure_logging(level=settings.log_level, json=settings.log_format is LogFormat.json)
    if args.command == "settle":
        return asyncio.run(_settle())
    raise AssertionError(f"unknown command {args.command}")


if __name__ == "__main__":
    sys.exit(main())
