"""The project's own tooling: the image lints, its entrypoint migrates before it serves, `make test` passes
arguments on to pytest, and the run command a newcomer types works from start to Ctrl-C, keeping its data for the
next start."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent

READY_TIMEOUT_SECONDS = 60
STOP_TIMEOUT_SECONDS = 30


def _tool(name: str) -> str:
    """A tool from the venv pytest runs in, else from PATH."""
    candidate = VENV_BIN / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: `make test` installs it from requirements/dev.txt")
    return found


class TestDockerfile:
    def test_hadolint_finds_nothing(self) -> None:
        result = subprocess.run(
            [_tool("hadolint"), "Dockerfile"], cwd=REPO_ROOT, capture_output=True, text=True, check=False
        )
        assert result.returncode == 0, f"hadolint:\n{result.stdout}{result.stderr}"

    def test_entrypoint_migrates_then_execs_uvicorn(self, tmp_path: Path) -> None:
        entrypoint = _Entrypoint(tmp_path)
        process = entrypoint.start()
        _, stderr = process.communicate(timeout=30)
        assert process.returncode == 0, stderr
        assert entrypoint.calls() == ["alembic upgrade head", "uvicorn app.main:app --host 0.0.0.0 --port 8000"]
        # exec: uvicorn replaced the shell (so it is PID 1 in the container and receives SIGTERM itself).
        assert entrypoint.uvicorn_pid() == process.pid

    def test_entrypoint_stops_when_the_migration_fails(self, tmp_path: Path) -> None:
        entrypoint = _Entrypoint(tmp_path, alembic_exit=1)
        process = entrypoint.start()
        process.communicate(timeout=30)
        assert process.returncode != 0
        assert entrypoint.calls() == ["alembic upgrade head"]  # never serves a schema it does not match

    def test_entrypoint_runs_its_arguments_instead(self, tmp_path: Path) -> None:
        entrypoint = _Entrypoint(tmp_path)
        process = entrypoint.start("echo", "hi")
        stdout, stderr = process.communicate(timeout=30)
        assert (process.returncode, stdout) == (0, "hi\n"), stderr
        assert entrypoint.calls() == []  # neither migrates nor serves


class TestLayers:
    def test_the_adapter_stays_at_the_bottom_and_dev_stays_out_of_app(self) -> None:
        """The import-linter contracts in pyproject.toml: app/tiktok imports nothing above it, app/ never dev/."""
        result = subprocess.run(
            [_tool("lint-imports"), "--no-cache"], cwd=REPO_ROOT, capture_output=True, text=True, check=False
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert "0 broken" in result.stdout


class _Entrypoint:
    """docker-entrypoint.sh run by `sh`, with stub `alembic` and `uvicorn` first on PATH that log their calls."""

    def __init__(self, folder: Path, *, alembic_exit: int = 0) -> None:
        self.bin = folder / "bin"
        self.bin.mkdir()
        self.log = folder / "calls.log"
        self.pid_file = folder / "uvicorn.pid"
        log, pid_file = shlex.quote(str(self.log)), shlex.quote(str(self.pid_file))
        self._stub("alembic", f'echo "alembic $*" >> {log}\nexit {alembic_exit}\n')
        self._stub("uvicorn", f'echo "uvicorn $*" >> {log}\necho $$ > {pid_file}\n')

    def _stub(self, name: str, body: str) -> None:
        path = self.bin / name
        path.write_text("#!/bin/sh\n" + body)
        path.chmod(0o755)

    def start(self, *args: str) -> subprocess.Popen[str]:
        env = {**os.environ, "PATH": f"{self.bin}{os.pathsep}{os.environ.get('PATH', os.defpath)}"}
        return subprocess.Popen(
            ["sh", "docker-entrypoint.sh", *args],
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def calls(self) -> list[str]:
        return self.log.read_text().splitlines() if self.log.exists() else []

    def uvicorn_pid(self) -> int:
        return int(self.pid_file.read_text())


class TestCommands:
    def test_make_test_runs_pytest_with_extra_arguments(self) -> None:
        make = shutil.which("make")
        if make is None:
            pytest.fail("make is not installed: .ci/run installs it")
        # Without the flags of a `make test` this may run under, which would carry its ARGS along.
        env = {name: value for name, value in os.environ.items() if name not in {"MAKEFLAGS", "MFLAGS", "MAKELEVEL"}}
        result = subprocess.run(
            [make, "--dry-run", "test", "ARGS=-k some_test"],
            cwd=REPO_ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        assert re.search(r"-m pytest -k some_test$", result.stdout, re.MULTILINE), result.stdout


# The run command, end to end.


@dataclass
class _RunningDevserver:
    process: subprocess.Popen[bytes]
    base_url: str
    log: Path


def _free_port_pair() -> tuple[int, int]:
    # Both sockets stay open until both ports are known, so the two differ.
    with socket.socket() as first, socket.socket() as second:
        first.bind(("127.0.0.1", 0))
        second.bind(("127.0.0.1", 0))
        return first.getsockname()[1], second.getsockname()[1]


_PROVIDED_BY_THE_RUNNER = frozenset(
    {"DATABASE_URL", "TIKTOK_API_BASE_URL", "BOOTSTRAP_API_KEY", "ENCRYPTION_KEYS", "API_KEY_SECRET", "ENVIRONMENT"}
)


def _devserver_env(data_dir: Path) -> dict[str, str]:
    env = {
        name: value
        for name, value in os.environ.items()
        # Everything the runner would otherwise provide itself comes from it here, as for a newcomer.
        if name
        not in {
            "DATABASE_URL",
            "TIKTOK_API_BASE_URL",
            "BOOTSTRAP_API_KEY",
            "ENCRYPTION_KEYS",
            "API_KEY_SECRET",
            "ENVIRONMENT",
        }
    }
    port, sandbox_port = _free_port_pair()
    env |= {
        "DEV_DATA_DIR": str(data_dir),
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "SANDBOX_PORT": str(sandbox_port),
        "PYTHONUNBUFFERED": "1",
    }
    return env


def _log_tail(log: Path, lines: int = 60) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:]) if log.exists() else "(no output)"


def _postmaster_pid(pgdata: Path) -> int | None:
    """The pid of the Postgres serving `pgdata`, if one is running."""
    pid_file = pgdata / "postmaster.pid"
    if not pid_file.exists():
        return None
    pid = int(pid_file.read_text().splitlines()[0])
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    return pid


def _stop_leftover_postgres(pgdata: Path) -> None:
    # Only after a failed test: a Postgres left running would outlive the test run.
    pid = _postmaster_pid(pgdata)
    if pid is not None:
        os.kill(pid, signal.SIGTERM)  # "smart" shutdown


@contextmanager
def _devserver(data_dir: Path, log: Path) -> Iterator[_RunningDevserver]:
    env = _devserver_env(data_dir)
    with log.open("ab") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "dev.server"],
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            # Its own session, as `make run` in a terminal is: a Ctrl-C meant for pytest does not reach it.
            start_new_session=True,
        )
    running = _RunningDevserver(process, f"http://127.0.0.1:{env['PORT']}", log)
    try:
        _wait_until_ready(running)
        yield running
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        _stop_leftover_postgres(data_dir / "postgres")


def _wait_until_ready(running: _RunningDevserver) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    last = "no answer yet"
    while time.monotonic() < deadline:
        if running.process.poll() is not None:
            pytest.fail(f"the run command exited {running.process.returncode}:\n{_log_tail(running.log)}")
        try:
            response = httpx.get(f"{running.base_url}/readyz", timeout=2)
        except httpx.TransportError as exc:
            last = repr(exc)
        else:
            if response.status_code == 200:
                return
            last = f"{response.status_code} {response.text[:200]}"
        time.sleep(0.25)
    pytest.fail(f"not ready after {READY_TIMEOUT_SECONDS} s ({last}):\n{_log_tail(running.log)}")


def _wait_for_output(running: _RunningDevserver, text: str, what: str) -> None:
    # The API answers a moment before the runner sees that both servers are up and prints its banner.
    deadline = time.monotonic() + 10
    while text not in running.log.read_text(errors="replace"):
        if time.monotonic() > deadline:
            pytest.fail(f"no {what} in the output:\n{_log_tail(running.log)}")
        time.sleep(0.1)


def _stop_with_ctrl_c(running: _RunningDevserver) -> int:
    return _stop_with(running, signal.SIGINT)


def _stop_with(running: _RunningDevserver, sig: signal.Signals) -> int:
    running.process.send_signal(sig)
    try:
        return running.process.wait(STOP_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        pytest.fail(f"still running {STOP_TIMEOUT_SECONDS} s after {sig.name}:\n{_log_tail(running.log)}")


def _read_env_file(path: Path) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line and line[0] != "#")
    return {name.strip(): value.strip() for name, value in pairs}


def _a_demo_code_the_sandbox_accepts() -> str:
    from dev.sandbox.seed import DEMO_CODES

    code = "#SBX+video/30d="  # the one the README's session applies
    assert code in {demo.code for demo in DEMO_CODES}
    return code


@pytest.mark.slow
class TestRunCommand:
    def test_serves_the_readme_session_stops_on_ctrl_c_and_keeps_its_data(self, tmp_path: Path) -> None:
        data_dir = tmp_path / "data"
        log = tmp_path / "devserver.log"

        with _devserver(data_dir, log) as running:
            secrets_file = data_dir / "dev-secrets.env"
            assert secrets_file.stat().st_mode & 0o777 == 0o600
            api_key = _read_env_file(secrets_file)["BOOTSTRAP_API_KEY"]
            _wait_for_output(running, api_key, "the banner with the development API key")
            banner = log.read_text()
            assert f"{running.base_url}/docs" in banner, "the banner names where the docs are"
            assert "#SBX+video/30d=" in banner, "the banner offers sandbox codes to try"

            with httpx.Client(
                base_url=running.base_url, headers={"Authorization": f"Bearer {api_key}"}, timeout=30
            ) as client:
                advertiser = client.post(
                    "/v1/advertisers",
                    json={
                        "tiktok_advertiser_id": "7000000000000000001",
                        "access_token": "sandbox-token",
                        "name": "Demo",
                    },
                )
                assert advertiser.status_code == 201, advertiser.text
                authorization = client.post(
                    f"/v1/advertisers/{advertiser.json()['tiktok_advertiser_id']}/authorizations",
                    json={"auth_code": _a_demo_code_the_sandbox_accepts()},
                )
                assert authorization.status_code == 201, authorization.text
                authorization_id = authorization.json()["id"]
                assert client.get(f"/v1/authorizations/{authorization_id}").status_code == 200

            assert _stop_with_ctrl_c(running) == 0, _log_tail(log)
            assert _postmaster_pid(data_dir / "postgres") is None, "Postgres still runs after Ctrl-C"

        with _devserver(data_dir, log) as running:
            assert _read_env_file(secrets_file)["BOOTSTRAP_API_KEY"] == api_key, "restarts keep the secrets"
            again = httpx.get(
                f"{running.base_url}/v1/authorizations/{authorization_id}",
                headers={"Authorization": f"Bearer {api_key}"},
                timeout=30,
            )
            assert again.status_code == 200, again.text

            # SIGTERM, as a process manager stops it, ends it as cleanly as Ctrl-C.
            assert _stop_with(running, signal.SIGTERM) == 0, _log_tail(log)
            assert _postmaster_pid(data_dir / "postgres") is None, "Postgres still runs after SIGTERM"
