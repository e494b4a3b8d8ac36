"""The committed openapi.yaml is what other systems build their clients from: it must be what the app serves."""

from __future__ import annotations

from pathlib import Path

import yaml

from app.main import create_app
from dev.openapi import render

ROOT = Path(__file__).resolve().parent.parent


class TestOpenApiDocument:
    def test_committed_document_matches_the_app(self) -> None:
        committed = (ROOT / "openapi.yaml").read_text()
        assert committed == render(), "openapi.yaml is stale: run `make openapi`"

    def test_every_operation_has_a_stable_id_and_documents_problems(self) -> None:
        schema = create_app().openapi()
        seen = set()
        for path, operations in schema["paths"].items():
            for method, operation in operations.items():
                operation_id = operation.get("operationId")
                assert operation_id and "_" not in operation_id, f"{method} {path} needs a camelCase operationId"
                assert operation_id not in seen
                seen.add(operation_id)
                if path.startswith("/v1"):
                    assert "401" in operation["responses"], f"{method} {path} does not document 401"
                    assert "422" in operation["responses"], f"{method} {path} does not document 422"
                    problem = operation["responses"]["422"]["content"]["application/problem+json"]
                    assert problem["schema"]["$ref"] == "#/components/schemas/Problem"

    def test_apply_documents_every_refusal_reason(self) -> None:
        schema = yaml.safe_load(render())
        apply = schema["paths"]["/v1/advertisers/{tiktok_advertiser_id}/authorizations"]["post"]
        described = apply["responses"]["422"]["description"]
        for reason in (
            "auth_code_invalid",
            "auth_code_not_found",
            "auth_code_expired",
            "post_deleted",
            "post_banned",
            "video_too_long",
            "multi_level_duet_stitch",
            "mentions_multiple_videos",
            "original_post_code_required",
            "access_token_invalid",
        ):
            assert f"`{reason}`" in described
        assert set(apply["responses"]) >= {"200", "201", "401", "404", "422", "502", "503", "504"}
