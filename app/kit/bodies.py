"""The base of every request body: strict, so that what a caller sends is what it meant.

FastAPI validates a parsed body as Python values, where pydantic's lax mode turns `"yes"` or `1` into `True`
and `"5"` into `5`: once, `{"admin": "yes"}` made an admin key. Here no field takes a value of another JSON
type, and a field that is not in the schema is refused. A value JSON can only carry as text (a date-time, an
enum member) is declared `FromText[...]`: parsed from a string, and from nothing else; an integer is a
`WholeNumber`, which takes 5.0 as JSON Schema does, and neither "5" nor true.
"""

from __future__ import annotations

from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Strict

T = TypeVar("T")


def _only_a_string(value: Any) -> Any:
    if not isinstance(value, str):
        raise ValueError("must be a JSON string")
    return value


def _only_a_number(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("must be a JSON number")
    return value


# A JSON integer (`WholeNumber[int]`, or an Annotated int with bounds): to JSON Schema 5.0 is one too (a number
# with no fraction). Not a string, not a boolean.
WholeNumber = Annotated[T, Strict(False), BeforeValidator(_only_a_number)]

# Strict(False) lets pydantic parse the string (strict mode would want a Python datetime or enum member); the
# validator before it makes sure a string is all it parses.
FromText = Annotated[T, Strict(False), BeforeValidator(_only_a_string)]


class RequestBody(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
