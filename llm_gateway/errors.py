"""The gateway's own answers to a request it cannot relay: JSON errors every provider SDK surfaces."""

from __future__ import annotations

import orjson
from aiohttp import web


def error_response(status: int, error_type: str, message: str, **extra: str) -> web.Response:
    """A JSON error both the Anthropic and the OpenAI SDKs surface (each reads `error.message`)."""
    body = {"type": "error", "error": {"type": error_type, "message": message, **extra}}
    return web.Response(
        status=status,
        body=orjson.dumps(body),
        content_type="application/json",
        headers={"x-llm-gateway-error": error_type},
    )
