"""Write the app's OpenAPI document: `python -m dev.openapi > openapi.yaml` (or `make openapi`).

The committed `openapi.yaml` is what other systems generate their clients from; a test fails when it differs
from what the app generates.
"""

from __future__ import annotations

import sys
from typing import Any

import yaml

from app.main import create_app


def render() -> str:
    schema: dict[str, Any] = create_app().openapi()
    rendered: str = yaml.safe_dump(schema, sort_keys=False, allow_unicode=True, width=120)
    return rendered


if __name__ == "__main__":
    sys.stdout.write(render())
