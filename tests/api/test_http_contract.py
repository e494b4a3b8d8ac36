"""HTTP as a generated client meets it: what the service answers before any route runs (authentication, body
limits, media types, unknown paths and methods), strictly typed bodies, `Location` on every 201, offline /docs,
and an OpenAPI document that says all of it."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.api.helpers import apply, assert_problem, count_rows
from tests.conftest import ADVERTISER_ID, ADVERTISER_TOKEN

ROOT = Path(__file__).resolve().parents[2]
DOCUMENT: dict[str, Any] = yaml.safe_load((ROOT / "openapi.yaml").read_text())
ANA_30D = "#SBX+video/30d="
AD = {"ad_id": "1800000000000000001", "campaign_type": "STANDARD", "only_show_as_ad": True}


def _operations() -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, operations in DOCUMENT["paths"].items():
        for method, operation in operations.items():
            yield path, method, operation


class TestAuthenticationComesFirst:
    async def test_no_key_and_a_broken_body_is_401_not_422(self, anonymous: httpx.AsyncClient) -> None:
        response = await anonymous.post(
            "/v1/advertisers", content=b"{not json", headers={"Content-Type": "application/json"}
        )
        problem = assert_problem(response, 401, "not_authenticated")
        assert response.headers["www-authenticate"] == "Bearer"
        assert problem["instance"] == "/v1/advertisers"

    async def test_no_key_and_a_body_too_large_or_not_json_is_401(self, anonymous: httpx.AsyncClient) -> None:
        huge = await anonymous.post("/v1/advertisers", content=b"x" * 200_000)
        assert_problem(huge, 401, "not_authenticated")
        text = await anonymous.post("/v1/advertisers", content=b"hello", headers={"Content-Type": "text/plain"})
        assert_problem(text, 401, "not_authenticated")

    async def test_a_read_only_key_writing_a_broken_body_is_403(
        self, client: httpx.AsyncClient, anonymous: httpx.AsyncClient
    ) -> None:
        made = await client.post("/v1/api-keys", json={"name": "reader", "scopes": ["read"]})
        headers = {"Authorization": f"Bearer {made.json()['key']}", "Content-Type": "application/json"}
        response = await anonymous.post("/v1/advertisers", content=b"{not json", headers=headers)
        assert_problem(response, 403, "scope_required")

    async def test_a_scheme_other_than_bearer_is_not_a_key(
        self, anonymous: httpx.AsyncClient, client: httpx.AsyncClient
    ) -> None:
        key = client.headers["authorization"].removeprefix("Bearer ")
        response = await anonymous.get("/v1/advertisers", headers={"Authorization": f"Basic {key}"})
        assert_problem(response, 401, "not_authenticated")


class TestBodies:
    async def test_a_body_over_the_limit_is_413_before_it_is_read(
        self, client: httpx.AsyncClient, db: AsyncEngine
    ) -> None:
        body = json.dumps({"tiktok_advertiser_id": ADVERTISER_ID, "access_token": "t" * 70_000}).encode()
        response = await client.post("/v1/advertisers", content=body, headers={"Content-Type": "application/json"})
        problem = assert_problem(response, 413, "request_too_large")
        assert "65536" in problem["detail"]
        assert await count_rows(db, "advertisers") == 0

    async def test_a_streamed_body_without_a_length_is_cut_off_at_the_limit(self, client: httpx.AsyncClient) -> None:
        sent: list[int] = []

        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(100):  # 100 KiB in all, never announced
                sent.append(1)
                yield b" " * 1024

        response = await client.post("/v1/advertisers", content=chunks(), headers={"Content-Type": "application/json"})
        assert_problem(response, 413, "request_too_large")
        assert "content-length" not in {name.lower() for name in response.request.headers}
        assert len(sent) <= 65  # read no further than the limit

    @pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded", "json"])
    async def test_a_body_that_is_not_json_is_415(
        self, client: httpx.AsyncClient, content_type: str | None, db: AsyncEngine
    ) -> None:
        body = json.dumps({"tiktok_advertiser_id": ADVERTISER_ID, "access_token": ADVERTISER_TOKEN}).encode()
        headers = {"Content-Type": content_type} if content_type else {}
        request = client.build_request("POST", "/v1/advertisers", content=body, headers=headers)
        assert request.headers.get("content-type") == content_type  # raw content: httpx adds none of its own
        response = await client.send(request)
        assert_problem(response, 415, "unsupported_media_type")
        assert await count_rows(db, "advertisers") == 0

    @pytest.mark.parametrize("content_type", ["application/json; charset=utf-8", "application/merge-patch+json"])
    async def test_json_by_any_of_its_names_is_accepted(self, client: httpx.AsyncClient, content_type: str) -> None:
        body = json.dumps({"tiktok_advertiser_id": ADVERTISER_ID, "access_token": ADVERTISER_TOKEN}).encode()
        response = await client.post("/v1/advertisers", content=body, headers={"Content-Type": content_type})
        assert response.status_code == 201, response.text

    async def test_a_write_without_a_body_needs_no_content_type(
        self, client: httpx.AsyncClient, advertiser: dict[str, Any]
    ) -> None:
        authorization = (await apply(client, ANA_30D)).json()
        response = await client.post(f"/v1/authorizations/{authorization['id']}/unauthorize")
        assert response.status_code == 200, response.text


def _wrong_values(schema: dict[str, Any]) -> list[Any]:
    """Values of another JSON type than the property's, that lax parsing would once have accepted."""
    kinds = {option.get("type") for option in schema.get("anyOf", [schema])}
    if "$ref" in schema or "enum" in schema:
        return [1, True]
    wrong: list[Any] = []
    if "boolean" in kinds:
        wrong += ["true", "yes", 1, 0]
    if "integer" in kinds:
        wrong += ["5", 5.5, True]
    if "string" in kinds:
        wrong += [5, True]
    if "array" in kinds:
        wrong += ["a", {"a": 1}]
    return wrong


def _body_fields() -> list[tuple[str, str, Any]]:
    """(request body schema, property, a wrong value) for every property of every request body."""
    schemas = DOCUMENT["components"]["schemas"]
    cases = []
    for name, schema in schemas.items():
        if not (name.endswith("Create") or name.endswith("Update")):
            continue
        for field, spec in schema["properties"].items():
            cases.extend((name, field, value) for value in _wrong_values(spec))
    return cases


# A valid body for each request schema, and where to send it.
_VALID: dict[str, dict[str, Any]] = {
    "AdvertiserCreate": {"tiktok_advertiser_id": ADVERTISER_ID, "access_token": ADVERTISER_TOKEN},
    "AdvertiserUpdate": {"name": "x"},
    "AccessTokenUpdate": {"access_token": ADVERTISER_TOKEN},
    "ApiKeyCreate": {"name": "x"},
    "ApiKeyUpdate": {"name": "x"},
    "AuthorizationCreate": {"auth_code": ANA_30D},
    "AuthorizationBatchCreate": {"items": [{"auth_code": ANA_30D}]},
    "TtUserPostCreate": {"item_id": "7380112233445567001", "identity_type": "TT_USER", "identity_id": "1"},
    "BcAuthTtPostCreate": {
        "item_id": "7380112233445567001",
        "identity_type": "BC_AUTH_TT",
        "identity_id": "1",
        "identity_authorized_bc_id": "1",
    },
    "AdCreate": AD,
    "WebhookCreate": {"url": "https://receiver.example.internal/hooks", "event_types": []},
}


class TestStrictBodies:
    def test_every_request_schema_is_covered(self) -> None:
        schemas = {name for name in DOCUMENT["components"]["schemas"] if name.endswith(("Create", "Update"))}
        assert schemas == set(_VALID)
        assert all(
            schema.get("additionalProperties") is False
            for name, schema in DOCUMENT["components"]["schemas"].items()
            if name in _VALID
        )

    @pytest.mark.parametrize(("schema", "field", "value"), _body_fields())
    async def test_no_field_takes_a_value_of_another_type(
        self, client: httpx.AsyncClient, advertiser: dict[str, Any], schema: str, field: str, value: Any
    ) -> None:
        authorization_id = str(uuid.uuid4())
        key_id = str(uuid.uuid4())
        method, path = {
            "AdvertiserCreate": ("POST", "/v1/advertisers"),
            "AdvertiserUpdate": ("PATCH", f"/v1/advertisers/{ADVERTISER_ID}"),
            "AccessTokenUpdate": ("PUT", f"/v1/advertisers/{ADVERTISER_ID}/access-token"),
            "ApiKeyCreate": ("POST", "/v1/api-keys"),
            "ApiKeyUpdate": ("PATCH", f"/v1/api-keys/{key_id}"),
            "AuthorizationCreate": ("POST", f"/v1/advertisers/{ADVERTISER_ID}/authorizations"),
            "AuthorizationBatchCreate": ("POST", f"/v1/advertisers/{ADVERTISER_ID}/authorizations/batch"),
            "TtUserPostCreate": ("POST", f"/v1/advertisers/{ADVERTISER_ID}/own-posts"),
            "BcAuthTtPostCreate": ("POST", f"/v1/advertisers/{ADVERTISER_ID}/own-posts"),
            "AdCreate": ("POST", f"/v1/authorizations/{authorization_id}/ads"),
            "WebhookCreate": ("POST", "/v1/webhooks"),
        }[schema]
        response = await client.request(method, path, json={**_VALID[schema], field: value})
        problem = assert_problem(response, 422, "request_invalid")
        # (A body that is one of several, told apart by a field, names the one it was read as: body, TT_USER, field.)
        assert any(
            error["loc"][0] == "body" and (field in error["loc"][1:3] or error["type"].startswith("union_tag"))
            for error in problem["errors"]
        ), problem

    async def test_unknown_fields_are_refused(self, client: httpx.AsyncClient) -> None:
        response = await client.post("/v1/api-keys", json={"name": "x", "is_admin": True})
        problem = assert_problem(response, 422, "request_invalid")
        assert problem["errors"][0]["loc"] == ["body", "is_admin"]


class TestQueryStrings:
    async def test_a_mistyped_query_parameter_is_refused_not_ignored(
        self, client: httpx.AsyncClient, advertiser: dict[str, Any]
    ) -> None:
        response = await client.get(f"/v1/advertisers/{ADVERTISER_ID}/authorizations", params={"stauts": "active"})
        problem = assert_problem(response, 422, "request_invalid")
        assert problem["errors"] == [
            {"loc": ["query", "stauts"], "msg": "Not a parameter of this operation", "type": "extra_forbidden"}
        ]

    async def test_an_empty_cursor_is_refused(self, client: httpx.AsyncClient) -> None:
        assert_problem(await client.get("/v1/advertisers", params={"cursor": ""}), 422, "request_invalid")

    async def test_an_operation_without_query_parameters_ignores_the_query_string(
        self, client: httpx.AsyncClient, anonymous: httpx.AsyncClient
    ) -> None:
        assert (await anonymous.get("/healthz", params={"probe": "1"})).status_code == 200
        assert (await client.get("/v1/posts/1", params={"x": "1"})).status_code == 200


class TestPathsAndMethods:
    async def test_a_405_lists_every_method_the_path_serves(self, client: httpx.AsyncClient) -> None:
        response = await client.put(f"/v1/api-keys/{uuid.uuid4()}", json={})
        assert_problem(response, 405, "method_not_allowed")
        assert response.headers["allow"] == "DELETE, GET, HEAD, PATCH"
        response = await client.delete("/v1/advertisers")
        assert response.headers["allow"] == "GET, HEAD, POST"

    @pytest.mark.parametrize("path", ["/v1/advertisers/", f"/v1/advertisers/{ADVERTISER_ID}/", "/v1/api-keys/"])
    async def test_a_trailing_slash_is_a_404_that_names_the_path(self, client: httpx.AsyncClient, path: str) -> None:
        response = await client.get(path)
        problem = assert_problem(response, 404, "not_found")
        assert path.rstrip("/") in problem["detail"]
        assert "location" not in response.headers

    async def test_an_unknown_path_is_a_problem(self, client: httpx.AsyncClient) -> None:
        problem = assert_problem(await client.get("/v1/nothing-here"), 404, "not_found")
        assert (problem["instance"], problem["retryable"]) == ("/v1/nothing-here", False)


class TestLocation:
    async def test_every_201_says_where_the_new_thing_is(self, client: httpx.AsyncClient) -> None:
        created = [
            await client.post("/v1/api-keys", json={"name": "tool"}),
            await client.post(
                "/v1/advertisers", json={"tiktok_advertiser_id": ADVERTISER_ID, "access_token": ADVERTISER_TOKEN}
            ),
        ]
        created.append(await apply(client, ANA_30D))
        created.append(await client.post(f"/v1/authorizations/{created[-1].json()['id']}/ads", json=AD))
        created.append(
            await client.post(
                f"/v1/advertisers/{ADVERTISER_ID}/own-posts",
                json={
                    "item_id": "7380112233445567001",
                    "identity_type": "TT_USER",
                    "identity_id": "7302000000000000001",
                },
            )
        )
        for response in created:
            assert response.status_code == 201, response.text
            read = await client.get(response.headers["location"])
            assert read.status_code == 200, (response.headers["location"], read.text)
            identity = ("id", "tiktok_advertiser_id", "ad_id", "created_at")
            assert {name: read.json().get(name) for name in identity} == {
                name: response.json().get(name) for name in identity
            }

    def test_the_document_promises_location_on_every_201(self) -> None:
        for path, method, operation in _operations():
            if "201" in operation["responses"]:
                assert "Location" in operation["responses"]["201"]["headers"], (method, path)


class TestTheDocument:
    def test_problem_reasons_are_an_enum_every_problem_refers_to(self) -> None:
        schemas = DOCUMENT["components"]["schemas"]
        reasons = schemas["ProblemReason"]["enum"]
        assert {"not_found", "method_not_allowed", "request_too_large", "unsupported_media_type"} <= set(reasons)
        assert {"internal_error", "database_unavailable", "scope_required", "auth_code_expired"} <= set(reasons)
        problem = schemas["Problem"]
        assert problem["properties"]["reason"]["$ref"] == "#/components/schemas/ProblemReason"
        assert set(problem["required"]) == {"type", "title", "status", "detail", "instance", "reason", "retryable"}
        for member in ("tiktok", "errors", "field", "item_id", "original_item_id", "duration_seconds", "scope"):
            assert "default" not in problem["properties"][member]
        assert schemas["AuthorizationWarning"]["properties"]["reason"]["$ref"].endswith("WarningReason")

    def test_every_operation_documents_what_it_can_answer(self) -> None:
        for path, method, operation in _operations():
            responses = operation["responses"]
            where = f"{method.upper()} {path}"
            assert "500" in responses, where
            if operation["operationId"] != "getHealth":
                assert "503" in responses, where
            has_input = any(parameter.get("in") in {"path", "query"} for parameter in operation.get("parameters", []))
            assert ("422" in responses) == (has_input or "requestBody" in operation), where
            if path.startswith("/v1"):
                assert {"401", "403"} <= set(responses), where
                assert "WWW-Authenticate" in responses["401"]["headers"]
            if path.startswith("/v1") and method in {"post", "put", "patch", "delete"}:
                assert {"413", "415"} <= set(responses), where
            for status, response in responses.items():
                assert "X-Request-ID" in response["headers"], (where, status)
                if status.startswith(("4", "5")):
                    assert "application/problem+json" in response["content"], (where, status)
                    assert "`reason` is one of:" in response["description"], (where, status)
            assert {"$ref": "#/components/parameters/XRequestId"} in operation["parameters"], where

    def test_schema_names_are_for_people(self) -> None:
        names = set(DOCUMENT["components"]["schemas"])
        assert {"AuthorizationPage", "AdPage", "AdvertiserPage", "ApiKeyPage"} <= names
        assert not [name for name in names if "_" in name or "[" in name], names

    def test_servers_and_timeouts_are_stated(self) -> None:
        assert DOCUMENT["servers"]
        assert "TIKTOK_DEADLINE_SECONDS" in DOCUMENT["info"]["description"]


class TestOfflineDocs:
    async def test_docs_use_only_assets_the_service_serves(self, anonymous: httpx.AsyncClient) -> None:
        page = await anonymous.get("/docs")
        assert page.status_code == 200
        assert "http://" not in page.text and "https://" not in page.text.replace("https://swagger.io", "")
        for asset in ("swagger-ui-bundle.js", "swagger-ui.css"):
            served = await anonymous.get(f"/docs/assets/{asset}")
            assert served.status_code == 200 and len(served.content) > 10_000


class TestRequestIds:
    async def test_a_sane_request_id_is_kept_and_an_insane_one_replaced(self, anonymous: httpx.AsyncClient) -> None:
        kept = await anonymous.get("/v1/advertisers", headers={"X-Request-ID": "portal-42"})
        assert kept.headers["x-request-id"] == "portal-42"  # a 401, and still the caller's id
        replaced = await anonymous.get("/v1/advertisers", headers={"X-Request-ID": "bad id with spaces"})
        assert replaced.headers["x-request-id"] != "bad id with spaces"
