"""Query strings: an operation that takes query parameters refuses one it does not take.

A mistyped `?stauts=active` must not quietly list everything. Operations that take no query parameters do not
read the query string at all, so there is nothing to mistype there, and they ignore it.
"""

from __future__ import annotations

from fastapi import Request

from app.kit import operations as documented
from app.kit.errors import RequestInvalid


async def refuse_undeclared_query_parameters(request: Request) -> None:
    if not request.scope["query_string"]:
        return  # nothing to refuse, and no need to look the operation up (most requests: the hot reads)
    operation = documented.operation(request.app, request.method, request.url.path)
    if operation is None:
        return
    declared = {parameter["name"] for parameter in operation.get("parameters", []) if parameter.get("in") == "query"}
    unknown = sorted(set(request.query_params.keys()) - declared) if declared else []
    if unknown:
        raise RequestInvalid(
            f"This operation takes only {', '.join(sorted(declared))} in its query string.",
            errors=[
                {"loc": ["query", name], "msg": "Not a parameter of this operation", "type": "extra_forbidden"}
                for name in unknown
            ],
        )
