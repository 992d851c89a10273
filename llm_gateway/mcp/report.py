"""What an MCP observer hands to spans: a call event with where it happened. Also the JSON form in which the
stdio wrapper POSTs it to the gateway (`POST /_gateway/mcp/calls`, a JSON array of reports)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import orjson

from llm_gateway.mcp.jsonrpc import CallStarted, Direction, Event, McpCall

CALLS_PATH = "/_gateway/mcp/calls"

PIPE = "pipe"  # stdio
TCP = "tcp"  # streamable HTTP


@dataclass(frozen=True, slots=True)
class CallReport:
    event: Event
    server: str | None  # the name the user gave the server (`--name`, `--mcp NAME=URL`)
    transport: str  # PIPE or TCP
    session_id: str | None = None  # Mcp-Session-Id over HTTP; an id the wrapper made up for stdio


def to_json(reports: list[CallReport]) -> bytes:
    return orjson.dumps([_report_doc(r) for r in reports])


def _report_doc(report: CallReport) -> dict[str, Any]:
    event = dataclasses.asdict(report.event)
    event["direction"] = report.event.direction.value
    kind = "end" if isinstance(report.event, McpCall) else "start"
    return {"event": kind, "server": report.server, "transport": report.transport,
            "session_id": report.session_id, "call": event}


def from_json(body: bytes) -> list[CallReport]:
    """Reports from a POSTed body; ValueError (with the reason) for anything malformed."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"not JSON: {exc}") from None
    items = doc if isinstance(doc, list) else [doc]
    return [_report(item) for item in items]


def _report(doc: Any) -> CallReport:
    if not isinstance(doc, dict) or not isinstance(doc.get("call"), dict):
        raise ValueError("each report is an object with a `call` object")
    kind = CallStarted if doc.get("event") == "start" else McpCall
    call = dict(doc["call"])
    try:
        call["direction"] = Direction(call.get("direction"))
        event = kind(**{f.name: call[f.name] for f in dataclasses.fields(kind) if f.name in call})
    except (TypeError, ValueError) as exc:
        raise ValueError(f"bad call: {exc}") from None
    _check(event)
    return CallReport(event, _text(doc.get("server")), _text(doc.get("transport")) or PIPE,
                      _text(doc.get("session_id")))


def _check(event: Event) -> None:
    ints = [event.started_ns] + ([event.ended_ns] if isinstance(event, McpCall) else [])
    if not isinstance(event.method, str) or not all(isinstance(n, int) for n in ints):
        raise ValueError("bad call: method must be a string and times integers (ns)")
    if not isinstance(event.request_id, int | str) or not isinstance(event.target, str | None):
        raise ValueError("bad call: request_id must be a string or an integer")


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None
