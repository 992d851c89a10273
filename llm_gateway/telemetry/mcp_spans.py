"""Turns observed MCP calls (`mcp.report.CallReport`) into `{mcp.method.name} {target}` spans with the calls'
real start and end times.

A tools/call belongs to the agent turn that asked for it: its parent is the open `execute_tool` span whose tool
name and arguments match (`SessionSpans.pending_tool_context`). The parent is looked up when the request is
seen (`CallStarted`), while that span is surely still open, and kept until the call ends; a call with no such
span (or no session tracker, as in the stdio wrapper's own export) is a root span. Under an `execute_tool` span a
tools/call is that tool run's MCP leg, not a second run: only a root one says `gen_ai.operation.name=execute_tool`.

Every span is CLIENT: the gateway sees each call from the side that sent it, and a request the server sends the
client (sampling, elicitation, roots) is recorded the same way, `llm_gateway.mcp.direction` telling which way it
went. Names carry a tool or prompt name, never a resource URI (`mcp.resource.uri` has it: a span name should not
grow with every resource read). `mcp.session.id` goes only on revisions that have sessions: 2026-07-28 removed them.
Failures are logged at debug level and swallowed: telemetry never breaks traffic.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import orjson
from opentelemetry.semconv._incubating.attributes import gen_ai_attributes as gen_ai
from opentelemetry.semconv._incubating.attributes import jsonrpc_attributes as jsonrpc
from opentelemetry.semconv._incubating.attributes import mcp_attributes as mcp
from opentelemetry.semconv._incubating.attributes import rpc_attributes as rpc
from opentelemetry.semconv.attributes import error_attributes as err
from opentelemetry.semconv.attributes import network_attributes as net
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode

from llm_gateway.mcp.jsonrpc import CallStarted, McpCall
from llm_gateway.mcp.report import CallReport
from llm_gateway.telemetry.content import content_capture
from llm_gateway.telemetry.session_spans import SessionSpans
from llm_gateway.telemetry.spans import SpanMaker

log = logging.getLogger("llm_gateway.telemetry")

SERVER = "llm_gateway.mcp.server"
DIRECTION = "llm_gateway.mcp.direction"
#: the methods whose target is low-cardinality enough for a span name (a resource URI is not)
_NAMED_TARGETS = frozenset({"tools/call", "prompts/get"})
#: the first MCP revision without sessions (no Mcp-Session-Id, no initialize): versions are dates, compared as text
_SESSIONLESS_SINCE = "2026-07-28"
_MAX_PARENTS = 1024  # tools/calls in flight whose parent is remembered


class McpSpans:
    """`record(report)` for each call event an MCP observer reports."""

    def __init__(self, spans: SpanMaker, env: Mapping[str, str], sessions: SessionSpans | None = None) -> None:
        self._spans = spans
        self._capture = content_capture(env).on_spans
        self._sessions = sessions
        self._parents: OrderedDict[tuple, tuple[SpanContext, dict[str, Any]] | None] = OrderedDict()

    def __repr__(self) -> str:
        return f"McpSpans(capture={self._capture}, in_flight={len(self._parents)})"

    def record(self, report: CallReport) -> None:
        try:
            if isinstance(report.event, CallStarted):
                self._started(report, report.event)
            else:
                self._finished(report, report.event)
        except Exception:
            log.debug("MCP span for %r failed", report, exc_info=True)

    def _started(self, report: CallReport, call: CallStarted) -> None:
        self._parents[_key(report, call)] = self._parent(call.target, call.arguments)
        while len(self._parents) > _MAX_PARENTS:
            self._parents.popitem(last=False)

    def _finished(self, report: CallReport, call: McpCall) -> None:
        found = None
        if call.method == "tools/call":
            found = self._parents.pop(_key(report, call), None) or self._parent(call.target, call.arguments)
        parent, session_ids = found if found is not None else (None, {})
        name = f"{call.method} {call.target}" if call.target and call.method in _NAMED_TARGETS else call.method
        attributes = self._attributes(report, call, under_tool=found is not None)
        attributes.update(session_ids)  # every span of a session carries its ids
        error_type = call.error_type
        status = Status(StatusCode.ERROR, call.error_message or error_type) if error_type else None
        self._spans.record(name, SpanKind.CLIENT, call.started_ns, call.ended_ns, attributes, parent, status)

    def _parent(self, tool: str | None, arguments: Any) -> tuple[SpanContext, dict[str, Any]] | None:
        if self._sessions is None or tool is None:
            return None
        return self._sessions.pending_tool_context(tool, arguments)

    def _attributes(self, report: CallReport, call: McpCall, under_tool: bool) -> dict[str, Any]:
        version = call.protocol_version
        sessions = version is None or version < _SESSIONLESS_SINCE
        pairs: list[tuple[str, Any]] = [
            (mcp.MCP_METHOD_NAME, call.method),
            (mcp.MCP_PROTOCOL_VERSION, version),
            (mcp.MCP_SESSION_ID, report.session_id if sessions else None),
            (DIRECTION, call.direction.value),
            (jsonrpc.JSONRPC_REQUEST_ID, str(call.request_id)),
            (net.NETWORK_TRANSPORT, report.transport),
            (SERVER, report.server),
            (err.ERROR_TYPE, call.error_type),
            (rpc.RPC_RESPONSE_STATUS_CODE, str(call.error_code) if call.error_code is not None else None),
        ]
        if call.method.startswith("resources/"):
            pairs.append((mcp.MCP_RESOURCE_URI, call.target))
        if call.method == "tools/call":
            pairs += [(gen_ai.GEN_AI_OPERATION_NAME, None if under_tool else "execute_tool"),
                      (gen_ai.GEN_AI_TOOL_NAME, call.target)]
            if self._capture:
                pairs += [(gen_ai.GEN_AI_TOOL_CALL_ARGUMENTS, _json_text(call.arguments)),
                          (gen_ai.GEN_AI_TOOL_CALL_RESULT, _json_text(call.result))]
        return {key: value for key, value in pairs if value is not None}


def _key(report: CallReport, call: CallStarted | McpCall) -> tuple:
    return (report.server, report.session_id, call.direction, call.request_id)


def _json_text(value: Any) -> str | None:
    return None if value is None else orjson.dumps(value, default=str).decode()
