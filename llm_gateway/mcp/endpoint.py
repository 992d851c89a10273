"""`POST /_gateway/mcp/calls`: where `llm-gateway mcp` wrappers report the calls they saw (see `report.py`).

Answers 202 when the calls will become spans, and 503 when this gateway traces nothing, so that the wrapper
exports them itself. Any other `/_gateway/` path is left to the relay.
"""

from __future__ import annotations

from collections.abc import Callable

import orjson
from aiohttp import web

from llm_gateway.mcp.report import CALLS_PATH, CallReport, from_json

#: Reports are small: a few hundred bytes each, more only with content capture.
MAX_REPORT_BYTES = 16 * 1024 * 1024


class GatewayEndpoints:
    """The relay's handler for `/_gateway/...` paths (`Relay(internal=...)`)."""

    def __init__(self, sink: Callable[[CallReport], None] | None, max_body: int = MAX_REPORT_BYTES) -> None:
        self._sink = sink
        self._max = max_body

    def __repr__(self) -> str:
        return f"GatewayEndpoints(tracing={'on' if self._sink else 'off'})"

    async def __call__(self, request: web.BaseRequest) -> web.StreamResponse | None:
        if request.raw_path.partition("?")[0] != CALLS_PATH:
            return None
        if request.method != "POST":
            return _answer(405, {"error": "POST a JSON array of call reports"}, Allow="POST")
        if self._sink is None:
            return _answer(503, {"error": "this gateway has no OTEL_* exporter configured: MCP calls are not traced"})
        body = bytearray()
        async for chunk in request.content.iter_any():
            body += chunk
            if len(body) > self._max:
                return _answer(413, {"error": f"reports larger than {self._max} bytes"})
        try:
            reports = from_json(bytes(body))
        except ValueError as exc:
            return _answer(400, {"error": str(exc)})
        for report in reports:
            self._sink(report)
        return _answer(202, {"accepted": len(reports)})


def _answer(status: int, doc: dict, **headers: str) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(doc), content_type="application/json", headers=headers)
