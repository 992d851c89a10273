"""Reading untrusted JSON defensively, for every adapter: a field of the wrong type counts as absent."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson


def json_object(data: bytes | str) -> dict[str, Any]:
    doc = orjson.loads(data)
    if not isinstance(doc, dict):
        raise ValueError(f"expected a JSON object, got {type(doc).__name__}")
    return doc


def obj(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def items(value: Any) -> Iterator[dict[str, Any]]:
    """The objects of a JSON array (anything else in it, or a non-array, is skipped)."""
    if isinstance(value, list):
        yield from (v for v in value if isinstance(v, dict))


def text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def integer(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def json_text(value: object) -> str | None:
    """Arguments sent as a JSON value, as JSON text (a string is taken as already being that text)."""
    if value is None or isinstance(value, str):
        return value
    return orjson.dumps(value).decode()


def body_hints(body: dict[str, Any], names: dict[str, str]) -> dict[str, str]:
    """Ids the body carries (body key -> hint name), non-empty strings only."""
    return {hint: body[key] for key, hint in names.items() if isinstance(body.get(key), str) and body[key]}
