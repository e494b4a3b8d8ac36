"""Operator commands, runnable against production at any time: `python -m app.cli --help`.

They read the same settings as the service (DATABASE_URL, TIKTOK_API_BASE_URL, ENCRYPTION_KEYS, ...).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

import structlog
from tqdm import tqdm  # type: ignore[import-untyped]

from app import rotation
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


async def _rotate_secrets(batch_size: int) -> int:
    settings = get_settings()
    show_progress = sys.stderr.isatty()  # a bar for a person; nothing but the report for a script or a log
    async with open_resources(settings) as resources:
        total = await rotation.count_secrets(resources.engine) if show_progress else None
        with tqdm(total=total, unit=" values", file=sys.stderr, disable=not show_progress) as bar:

            def advance(table: rotation.TableReport, rows: int) -> None:
                bar.set_description(table.table)
                bar.update(rows)

            report = await rotation.rotate_secrets(
                resources.engine, resources.secret_box, batch_size=batch_size, on_batch=advance
            )
    print("\n".join(report.lines()))
    return 1 if report.unreadable else 0


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


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
    rotate = commands.add_parser(
        "rotate-secrets",
        help="re-encrypt every stored code and access token under the first key of ENCRYPTION_KEYS, so that the "
        "others can be removed",
        description="Re-encrypts every advertiser's access token and every creator's code that is not under the "
        "first key of ENCRYPTION_KEYS, and makes their fingerprints again under it, in batches, each row in a "
        "statement of its own that never overwrites a value the service wrote meanwhile. Safe while the service "
        "runs, idempotent, and resumable (stopped, run it again). Calls no TikTok. Prints what it did per table "
        "(and a progress bar when stderr is a terminal). Exits 1 if some value decrypts under no configured key "
        "(their row ids are printed).",
    )
    rotate.add_argument(
        "--batch-size",
        type=_positive_int,
        default=rotation.DEFAULT_BATCH_SIZE,
        metavar="N",
        help=f"rows read at a time (default {rotation.DEFAULT_BATCH_SIZE})",
    )
    args = parser.parse_args(argv)
    settings = get_settings()
    configure_logging(level=settings.log_level, json=settings.log_format is LogFormat.json)
    if args.command == "settle":
        return asyncio.run(_settle())
    if args.command == "rotate-secrets":
        return asyncio.run(_rotate_secrets(args.batch_size))
    raise AssertionError(f"unknown command {args.command}")


if __name__ == "__main__":
    sys.exit(main())
