"""`python -m app.worker`: the worker on its own, for deployments that run it apart from the API
(set WORKER_IN_PROCESS=false on the API then). Stops on SIGTERM or SIGINT, letting jobs in flight finish."""

from __future__ import annotations

import asyncio
import signal

import structlog

from app.kit.logging import configure_logging
from app.kit.resources import open_resources
from app.kit.settings import LogFormat, get_settings
from app.worker.queue import running_worker

log = structlog.get_logger(__name__)


async def main() -> None:
    settings = get_settings()
    configure_logging(level=settings.log_level, json=settings.log_format is LogFormat.json)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signal_number in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signal_number, stop.set)
    async with open_resources(settings) as resources, running_worker(resources, name="standalone"):
        await stop.wait()


if __name__ == "__main__":
    asyncio.run(main())
