"""Turns the session tracker's events into spans: `session {client}` > `invoke_agent {agent}` > chat spans and
`execute_tool {tool}` spans. Session and agent spans stay open while the session lives (their children are
exported as they complete); each ends at the last activity it saw, not when the idle timer fired.

`SessionSpans` is built once, beside the chat spans (`chat_spans.py`, which place each model call through it)
and the MCP spans (`mcp_spans.py`, which find the tool span an MCP call belongs to); it is an addon of its own
for `tick` (idle sessions end) and `close` (shutdown ends them all).
"""

from __future__ import annotations

import itertools
import logging
import sys
from collections.abc import Callable, Mapping
from typing import Any

import orjson
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.semconv._incubating.attributes import file_attributes as file_attrs
from opentelemetry.semconv._incubating.attributes import gen_ai_attributes as gen_ai
from opentelemetry.semconv.attributes import error_attributes as err
from opentelemetry.trace import SpanKind, Status, StatusCode

from llm_gateway.protocols.exchange import ChatRecord, ChatRequest, json_or_text
from llm_gateway.sessions import tracker as tr
from llm_gateway.sessions.files import file_facts
from llm_gateway.sessions.identity import identify
from llm_gateway.sessions.tree import render
from llm_gateway.telemetry.ids import session_trace_id, trace_id_for

log = logging.getLogger("llm_gateway.telemetry")

ENV_AGENT_NAME = "LLM_GATEWAY_AGENT_NAME"
ENV_IDLE_SECONDS = "LLM_GATEWAY_SESSION_IDLE_SECONDS"
ENV_MAX_SESSIONS = "LLM_GATEWAY_MAX_SESSIONS"
ENV_PRINT = "LLM_GATEWAY_PRINT"
ENV_REDACT_PATHS = "LLM_GATEWAY_REDACT_PATHS"

SESSION_KEY = "llm_gateway.session.key"
SESSION_SOURCE = "llm_gateway.session.key_source"
SESSION_CALLS = "llm_gateway.session.calls"
CLIENT = "llm_gateway.client"
AUXILIARY = "llm_gateway.call.auxiliary"
TOOL_OUTCOME = "llm_gateway.tool.outcome"
TOOL_ARGUMENT_KEYS = "llm_gateway.tool.argument_keys"
FILE_OPERATION = "llm_gateway.file.operation"
FILE_PATHS = "llm_gateway.file.paths"
MODELS = "llm_gateway.models"
REDACTED_PATH = "[redacted]"


class SessionSpans:
    """Addon (`tick`, `close`) and the span builder the chat and MCP spans share (see the module docstring)."""

    def __init__(
        self,
        tracer: trace.Tracer,
        env: Mapping[str, str],
        *,
        capture: bool,
        on_finished: Callable[[tr.SessionState], None] | None = None,
    ) -> None:
        """`on_finished` is called with each finished session (the demo); LLM_GATEWAY_PRINT=tree prints them."""
        self._tracer = tracer
        self._capture = capture
        idle = float(env.get(ENV_IDLE_SECONDS) or 300)
        self._tracker = tr.SessionTracker(idle_ns=int(idle * 1e9),
                                          max_sessions=int(env.get(ENV_MAX_SESSIONS) or 1000))
        self._agent_name = env.get(ENV_AGENT_NAME) or None
        if on_finished is None and env.get(ENV_PRINT, "").lower() == "tree":
            on_finished = _print_tree
        self._on_finished = on_finished
        self._redact_paths = env.get(ENV_REDACT_PATHS, "").lower() in ("1", "true", "yes")
        self._spans: dict[int, trace.Span] = {}  # id(state object) -> its open span
        self._ids = itertools.count(1)

    def __repr__(self) -> str:
        return f"SessionSpans({self._tracker!r})"

    def call_started(
        self, headers: Mapping[str, str], request: ChatRequest, provider: str, at_ns: int
    ) -> tuple[int, otel_context.Context, dict[str, Any]]:
        """Place a starting call; returns its exchange id, the parent context for its chat span and the
        session attributes the chat span carries."""
        exchange_id = next(self._ids)
        identity = identify(headers, request, agent_name=self._agent_name)
        placement, events = self._tracker.call_started(exchange_id, identity, request, provider, at_ns)
        self._apply(events)
        parent = self._spans[id(placement.call.agent)]
        attributes: dict[str, Any] = {SESSION_KEY: placement.session.key}
        if placement.session.explicit:
            attributes[gen_ai.GEN_AI_CONVERSATION_ID] = placement.session.key
        if placement.call.auxiliary:
            attributes[AUXILIARY] = True
        return exchange_id, trace.set_span_in_context(parent), attributes

    def pending_tool_context(self, tool_name: str, arguments: object = None) -> otel_context.Context | None:
        """The context of the open `execute_tool` span that an MCP call belongs to (`SessionTracker.pending_tool`
        says which)."""
        run = self._tracker.pending_tool(tool_name, arguments)
        span = self._spans.get(id(run)) if run is not None else None
        return trace.set_span_in_context(span) if span is not None else None

    def call_finished(self, exchange_id: int, record: ChatRecord, at_ns: int) -> None:
        self._apply(self._tracker.call_finished(exchange_id, record, at_ns))

    def tick(self, now_ns: int) -> None:
        """Periodic: end the sessions idle for longer than LLM_GATEWAY_SESSION_IDLE_SECONDS."""
        self._apply(self._tracker.expire(now_ns))

    def close(self) -> None:
        """Shutdown: end every open session at its last activity."""
        self._apply(self._tracker.close_all())

    def _apply(self, events: list[tr.Event]) -> None:
        for event in events:
            try:
                self._handle(event)
            except Exception:
                log.debug("session span for %r failed", event, exc_info=True)

    def _handle(self, event: tr.Event) -> None:
        match event:
            case tr.SessionStarted(session=session):
                with trace_id_for(session_trace_id(session.key)):
                    span = self._tracer.start_span(
                        f"session {session.client}", kind=SpanKind.INTERNAL, start_time=session.started_ns,
                        context=otel_context.Context(), attributes=self._session_attributes(session),
                    )
                self._spans[id(session)] = span
            case tr.AgentStarted(session=session, agent=agent):
                parent = self._spans[id(agent.parent) if agent.parent else id(session)]
                attributes = {
                    gen_ai.GEN_AI_OPERATION_NAME: "invoke_agent",
                    gen_ai.GEN_AI_AGENT_NAME: agent.name,
                    gen_ai.GEN_AI_AGENT_ID: agent.key,
                    **self._session_attributes(session),
                }
                self._spans[id(agent)] = self._tracer.start_span(
                    f"invoke_agent {agent.name}", kind=SpanKind.INTERNAL, start_time=agent.started_ns,
                    context=trace.set_span_in_context(parent), attributes=attributes,
                )
            case tr.ToolStarted(tool=tool):
                parent = self._spans[id(tool.agent)]
                self._spans[id(tool)] = self._tracer.start_span(
                    f"execute_tool {tool.name}", kind=SpanKind.INTERNAL, start_time=tool.started_ns,
                    context=trace.set_span_in_context(parent), attributes=self._tool_attributes(tool),
                )
            case tr.ToolFinished(tool=tool):
                span = self._spans.pop(id(tool))
                span.set_attribute(TOOL_OUTCOME, tool.outcome or "unknown")
                if tool.outcome != "ok":
                    error_type = "tool_error" if tool.outcome == "error" else "no_result"
                    span.set_attribute(err.ERROR_TYPE, error_type)
                    span.set_status(Status(StatusCode.ERROR, error_type))
                if self._capture and tool.result is not None:
                    span.set_attribute(gen_ai.GEN_AI_TOOL_CALL_RESULT, _json_text(tool.result))
                span.end(end_time=tool.ended_ns)
            case tr.AgentFinished(agent=agent):
                span = self._spans.pop(id(agent))
                span.set_attributes(_usage_attributes(agent.input_tokens, agent.output_tokens, agent.models))
                span.end(end_time=agent.ended_ns)
            case tr.SessionFinished(session=session):
                span = self._spans.pop(id(session))
                models = list(dict.fromkeys(m for a in session.agents.values() for m in a.models))
                span.set_attributes(_usage_attributes(session.input_tokens, session.output_tokens, models))
                span.set_attribute(SESSION_CALLS, session.calls)
                if session.providers:
                    span.set_attribute(gen_ai.GEN_AI_PROVIDER_NAME, session.providers[0])
                span.end(end_time=session.ended_ns)
                if self._on_finished is not None:
                    self._on_finished(session)

    def _session_attributes(self, session: tr.SessionState) -> dict[str, Any]:
        attributes: dict[str, Any] = {SESSION_KEY: session.key, SESSION_SOURCE: session.source,
                                      CLIENT: session.client}
        if session.explicit:
            attributes[gen_ai.GEN_AI_CONVERSATION_ID] = session.key
        if session.providers:
            attributes[gen_ai.GEN_AI_PROVIDER_NAME] = session.providers[0]
        return attributes

    def _tool_attributes(self, tool: tr.ToolRun) -> dict[str, Any]:
        attributes: dict[str, Any] = {
            gen_ai.GEN_AI_OPERATION_NAME: "execute_tool",
            gen_ai.GEN_AI_TOOL_NAME: tool.name,
            gen_ai.GEN_AI_TOOL_TYPE: "function" if tool.type in ("function", "custom") else "extension",
        }
        if tool.call_id:
            attributes[gen_ai.GEN_AI_TOOL_CALL_ID] = tool.call_id
        arguments = json_or_text(tool.arguments)
        if isinstance(arguments, dict) and arguments:
            attributes[TOOL_ARGUMENT_KEYS] = sorted(arguments)
        if self._capture and tool.arguments:
            attributes[gen_ai.GEN_AI_TOOL_CALL_ARGUMENTS] = tool.arguments
        facts = file_facts(tool.name, tool.arguments)
        if facts is not None:
            paths = [REDACTED_PATH] * len(facts.paths) if self._redact_paths else list(facts.paths)
            attributes[FILE_OPERATION] = facts.operation
            attributes[file_attrs.FILE_PATH] = paths[0]
            if len(paths) > 1:
                attributes[FILE_PATHS] = paths
        return attributes


def _print_tree(session: tr.SessionState) -> None:
    print(render(session), file=sys.stderr, flush=True)


def _usage_attributes(input_tokens: int | None, output_tokens: int | None, models: list[str]) -> dict[str, Any]:
    attributes: dict[str, Any] = {}
    if input_tokens is not None:
        attributes[gen_ai.GEN_AI_USAGE_INPUT_TOKENS] = input_tokens
    if output_tokens is not None:
        attributes[gen_ai.GEN_AI_USAGE_OUTPUT_TOKENS] = output_tokens
    if models:
        attributes[gen_ai.GEN_AI_REQUEST_MODEL] = models[0]
        attributes[MODELS] = models
    return attributes


def _json_text(value: Any) -> str:
    return value if isinstance(value, str) else orjson.dumps(value, default=str).decode()
