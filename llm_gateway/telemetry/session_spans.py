"""Turns the session tracker's events into spans: `session {client}` > `invoke_agent {agent}` (one per agent turn)
> chat spans and `execute_tool {tool}` spans, a subagent's turns under the tool span that started them.

A turn's span ends, and goes to the exporter, as soon as the agent answered; only the session span waits for the
session to end (idle, shutdown, the agent's exit). With `LLM_GATEWAY_TRACE_PER=turn` each turn is a trace of its
own, rooted at its `invoke_agent` span, and there is no session span: the turns are tied together by `session.id`.

Only model-call spans carry `gen_ai.usage.*` and `gen_ai.request.model`; turn and session spans carry their totals
under `llm_gateway.usage.*` and `llm_gateway.models`, so that backends summing tokens per span count each call
once. Every span of a session carries `session.id` and `gen_ai.conversation.id`.

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
from opentelemetry.semconv._incubating.attributes import file_attributes as file_attrs
from opentelemetry.semconv._incubating.attributes import gen_ai_attributes as gen_ai
from opentelemetry.semconv.attributes import error_attributes as err
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode

from llm_gateway.protocols.exchange import ChatRecord, ChatRequest, json_or_text
from llm_gateway.sessions import state as st
from llm_gateway.sessions import tracker as tr
from llm_gateway.sessions.files import file_facts
from llm_gateway.sessions.identity import identify
from llm_gateway.sessions.tree import render
from llm_gateway.telemetry.cost import CallCost, CostTotals
from llm_gateway.telemetry.ids import derived_span_id, session_trace_id
from llm_gateway.telemetry.spans import OpenSpan, SpanMaker
from llm_gateway.telemetry.trace_context import environment_parent

log = logging.getLogger("llm_gateway.telemetry")

ENV_AGENT_NAME = "LLM_GATEWAY_AGENT_NAME"
ENV_IDLE_SECONDS = "LLM_GATEWAY_SESSION_IDLE_SECONDS"
ENV_MAX_SESSIONS = "LLM_GATEWAY_MAX_SESSIONS"
ENV_PRINT = "LLM_GATEWAY_PRINT"
ENV_REDACT_PATHS = "LLM_GATEWAY_REDACT_PATHS"
ENV_TRACE_PER = "LLM_GATEWAY_TRACE_PER"

SESSION_KEY = "llm_gateway.session.key"
SESSION_SOURCE = "llm_gateway.session.key_source"
SESSION_CALLS = "llm_gateway.session.calls"
SESSION_TURNS = "llm_gateway.session.turns"
SESSION_ID = "session.id"  # the general OTel session attribute that Langfuse and Phoenix group by
TURN_NUMBER = "llm_gateway.turn.number"
TURN_CALLS = "llm_gateway.turn.calls"
TOOL_INFERRED = "llm_gateway.tool.inferred"
PROVIDERS = "llm_gateway.providers"
#: totals over a turn's or a session's calls, never `gen_ai.usage.*` (those belong to model calls only)
USAGE_TOTALS = (
    ("input_tokens", "llm_gateway.usage.input_tokens"),
    ("output_tokens", "llm_gateway.usage.output_tokens"),
    ("cache_read", "llm_gateway.usage.cache_read.input_tokens"),
    ("cache_write", "llm_gateway.usage.cache_creation.input_tokens"),
    ("reasoning_tokens", "llm_gateway.usage.reasoning.output_tokens"),
)
CLIENT = "llm_gateway.client"
AUXILIARY = "llm_gateway.call.auxiliary"
TOOL_OUTCOME = "llm_gateway.tool.outcome"
TOOL_ARGUMENT_KEYS = "llm_gateway.tool.argument_keys"
FILE_OPERATION = "llm_gateway.file.operation"
FILE_PATHS = "llm_gateway.file.paths"
MODELS = "llm_gateway.models"
REDACTED_PATH = "[redacted]"


def session_idle_seconds(env: Mapping[str, str]) -> float:
    """LLM_GATEWAY_SESSION_IDLE_SECONDS: how long a session may be quiet before it ends (300 s by default)."""
    return float(env.get(ENV_IDLE_SECONDS) or 300)


class SessionSpans:
    """Addon (`tick`, `close`) and the span builder the chat and MCP spans share (see the module docstring)."""

    def __init__(
        self,
        spans: SpanMaker,
        env: Mapping[str, str],
        *,
        capture: bool,
        on_finished: Callable[[st.SessionState], None] | None = None,
    ) -> None:
        """`on_finished` is called with each finished session (the demo); LLM_GATEWAY_PRINT=tree prints them."""
        self._maker = spans
        self._capture = capture
        idle = session_idle_seconds(env)
        if on_finished is None and env.get(ENV_PRINT, "").lower() == "tree":
            on_finished = _print_tree
        self._on_finished = on_finished
        # the calls and ended turns of a session are kept only for a tree someone prints
        self._tracker = tr.SessionTracker(idle_ns=int(idle * 1e9),
                                          max_sessions=int(env.get(ENV_MAX_SESSIONS) or 1000),
                                          keep_history=on_finished is not None)
        self._agent_name = env.get(ENV_AGENT_NAME) or None
        self._redact_paths = env.get(ENV_REDACT_PATHS, "").lower() in ("1", "true", "yes")
        self._trace_per_turn = trace_per(env) == "turn"
        self._outer = environment_parent(env)  # TRACEPARENT: sessions (or turns) become children of that span
        self._spans: dict[int, OpenSpan] = {}  # id(state object) -> its open span
        # id(agent) -> its last ended turn and that span's context: a check of the answer joins the turn late
        self._answered: dict[int, tuple[st.TurnState, SpanContext]] = {}
        self._costs: dict[int, CostTotals] = {}  # id(turn or session) -> its running cost
        self._tool_sessions: dict[int, dict[str, Any]] = {}  # id(open tool run) -> its session's ids
        self._named_turns: dict[int, set[tuple[str, str]]] = {}  # id(session) -> turns given a derived span id
        self._ids = itertools.count(1)

    def __repr__(self) -> str:
        return f"SessionSpans({self._tracker!r})"

    def call_started(
        self, headers: Mapping[str, str], request: ChatRequest, provider: str, at_ns: int
    ) -> tuple[int, SpanContext, dict[str, Any]]:
        """Place a starting call; returns its exchange id, the parent of its chat span and the session attributes
        the chat span carries."""
        exchange_id = next(self._ids)
        identity = identify(headers, request, agent_name=self._agent_name)
        placement, events = self._tracker.call_started(exchange_id, identity, request, provider, at_ns)
        self._apply(events)
        turn = placement.call.turn
        open_turn = self._spans.get(id(turn))
        # else the turn had ended: the call checks its answer (`tracker.AFTERWORD_NS`)
        parent = open_turn.context if open_turn is not None else self._answered[id(turn.agent)][1]
        attributes = _session_ids(placement.session)
        if placement.call.auxiliary:
            attributes[AUXILIARY] = True
        return exchange_id, parent, attributes

    def open_sessions(self) -> int:
        """How many sessions are open (any thread may ask: the count of a dict is read whole)."""
        return len(self._tracker.sessions)

    def pending_tool_context(
        self, tool_name: str, arguments: object = None
    ) -> tuple[SpanContext, dict[str, Any]] | None:
        """The context of the open `execute_tool` span that an MCP call belongs to (`SessionTracker.pending_tool`
        says which), and the session ids its spans carry."""
        run = self._tracker.pending_tool(tool_name, arguments)
        span = self._spans.get(id(run)) if run is not None else None
        if span is None:
            return None
        return span.context, self._tool_sessions.get(id(run), {})

    def call_finished(self, exchange_id: int, record: ChatRecord, at_ns: int, cost: CallCost | None = None) -> None:
        if cost is not None:
            placed = self._tracker.placement(exchange_id)
            if placed is not None:
                placed.call.cost_usd, placed.call.kiro_credits = cost.usd, cost.kiro_credits  # for the tree
                for owner in (placed.call.turn, placed.session):
                    self._costs.setdefault(id(owner), CostTotals()).add(cost)
        self._apply(self._tracker.call_finished(exchange_id, record, at_ns))

    def tick(self, now_ns: int) -> None:
        """Periodic: end the turns only side calls opened, and the sessions idle for longer than
        LLM_GATEWAY_SESSION_IDLE_SECONDS."""
        self._apply(self._tracker.expire(now_ns))

    def close(self) -> None:
        """Shutdown: end every open session at its last activity."""
        self._apply(self._tracker.close_all())

    def _apply(self, events: list[st.Event]) -> None:
        for event in events:
            try:
                self._handle(event)
            except Exception:
                log.debug("session span for %r failed", event, exc_info=True)

    def _handle(self, event: st.Event) -> None:
        spans = self._maker
        match event:
            case st.SessionStarted(session=session):
                if self._trace_per_turn:
                    return
                self._spans[id(session)] = spans.start(
                    f"session {session.client}", SpanKind.INTERNAL, session.started_ns,
                    self._session_attributes(session), self._outer,
                    trace_id=session_trace_id(session.key), span_id=derived_span_id(session.key),
                )
            case st.TurnStarted(session=session, turn=turn):
                self._start_turn(session, turn)
            case st.ToolStarted(session=session, tool=tool):
                self._spans[id(tool)] = spans.start(
                    f"execute_tool {tool.name}", SpanKind.INTERNAL, tool.started_ns,
                    self._tool_attributes(session, tool), self._spans[id(tool.turn)].context,
                )
                self._tool_sessions[id(tool)] = _session_ids(session)
            case st.ToolFinished(tool=tool):
                self._tool_sessions.pop(id(tool), None)
                attributes: dict[str, Any] = {TOOL_OUTCOME: tool.outcome or "unknown"}
                status = None
                if tool.outcome == "error":  # a result that was never seen is no error: the status stays unset
                    attributes[err.ERROR_TYPE] = "tool_error"
                    status = Status(StatusCode.ERROR, "tool_error")
                if self._capture and tool.result is not None:
                    attributes[gen_ai.GEN_AI_TOOL_CALL_RESULT] = _json_text(tool.result)
                spans.end(self._spans.pop(id(tool)), tool.ended_ns, attributes, status)
            case st.TurnFinished(turn=turn):
                span = self._spans.pop(id(turn))
                attributes = _totals(turn.usage, turn.models, self._costs.pop(id(turn), None))
                attributes[TURN_CALLS] = turn.call_count
                status = None
                if turn.error_type:
                    attributes[err.ERROR_TYPE] = turn.error_type
                    status = Status(StatusCode.ERROR, turn.error_type)
                spans.end(span, turn.ended_ns, attributes, status)
                self._answered[id(turn.agent)] = (turn, span.context)
            case st.SessionFinished(session=session):
                span = self._spans.pop(id(session), None)
                if span is not None:
                    attributes = _totals(session.usage, session.models, self._costs.pop(id(session), None))
                    attributes[SESSION_CALLS] = session.calls
                    attributes[SESSION_TURNS] = session.turns
                    if session.providers:
                        attributes[PROVIDERS] = session.providers
                    spans.end(span, session.ended_ns, attributes)
                self._costs.pop(id(session), None)
                self._named_turns.pop(id(session), None)
                for agent in session.all_agents:
                    self._answered.pop(id(agent), None)
                if self._on_finished is not None:
                    self._on_finished(session)

    def _start_turn(self, session: st.SessionState, turn: st.TurnState) -> None:
        # Named by its prompt, so that after a crash the restarted gateway emits the span the turn's earlier
        # children point at; a second turn of the same prompt (a retry after a failed call) gets a random id.
        name = (turn.agent.key or "", str(turn.prompt_ordinal))
        named = self._named_turns.setdefault(id(session), set())
        span_id = None
        if turn.prompt_ordinal is not None and name not in named:
            named.add(name)
            span_id = derived_span_id(session.key, *name)
        agent = turn.agent
        attributes = {
            gen_ai.GEN_AI_OPERATION_NAME: "invoke_agent",
            gen_ai.GEN_AI_AGENT_NAME: agent.name,
            TURN_NUMBER: turn.number,
            **self._session_attributes(session),
        }
        if agent.key is not None:
            attributes[gen_ai.GEN_AI_AGENT_ID] = agent.key
        trace_id = None
        if turn.spawned_by is not None and id(turn.spawned_by) in self._spans:
            parent = self._spans[id(turn.spawned_by)].context
        elif agent.parent is not None and agent.parent.turn is not None:
            parent = self._spans[id(agent.parent.turn)].context
        elif self._trace_per_turn:
            parent, trace_id = self._outer, session_trace_id(f"{session.key}#{session.turns}")
        else:
            parent = self._spans[id(session)].context
        self._spans[id(turn)] = self._maker.start(f"invoke_agent {agent.name}", SpanKind.INTERNAL, turn.started_ns,
                                                  attributes, parent, trace_id=trace_id, span_id=span_id)

    def _session_attributes(self, session: st.SessionState) -> dict[str, Any]:
        return {**_session_ids(session), SESSION_SOURCE: session.source, CLIENT: session.client}

    def _tool_attributes(self, session: st.SessionState, tool: st.ToolRun) -> dict[str, Any]:
        attributes: dict[str, Any] = {
            gen_ai.GEN_AI_OPERATION_NAME: "execute_tool",
            gen_ai.GEN_AI_TOOL_NAME: tool.name,
            gen_ai.GEN_AI_TOOL_TYPE: "function" if tool.type in ("function", "custom") else "extension",
            TOOL_INFERRED: True,  # from the wire: its time includes the agent's own work around the tool
            **_session_ids(session),
        }
        if tool.call_id:
            attributes[gen_ai.GEN_AI_TOOL_CALL_ID] = tool.call_id
        if tool.description:
            attributes[gen_ai.GEN_AI_TOOL_DESCRIPTION] = tool.description
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


def trace_per(env: Mapping[str, str]) -> str:
    """`session` (default: one trace per session) or `turn` (LLM_GATEWAY_TRACE_PER)."""
    value = (env.get(ENV_TRACE_PER) or "session").strip().lower()
    if value not in ("session", "turn"):
        log.warning("%s=%r is neither 'session' nor 'turn': using 'session'", ENV_TRACE_PER, value)
        return "session"
    return value


SESSION_IDS = frozenset({SESSION_KEY, SESSION_ID, gen_ai.GEN_AI_CONVERSATION_ID})


def _session_ids(session: st.SessionState) -> dict[str, Any]:
    """On every span of a session: the client's own id where it sent one, else the gateway's session key."""
    return {SESSION_KEY: session.key, SESSION_ID: session.key, gen_ai.GEN_AI_CONVERSATION_ID: session.key}


def _print_tree(session: st.SessionState) -> None:
    print(render(session), file=sys.stderr, flush=True)


def _totals(usage: st.Usage, models: list[str], cost: CostTotals | None) -> dict[str, Any]:
    attributes: dict[str, Any] = {name: getattr(usage, kind) for kind, name in USAGE_TOTALS
                                  if getattr(usage, kind) is not None}
    if models:
        attributes[MODELS] = models
    if cost is not None:
        attributes.update(cost.attributes())
    return attributes


def _json_text(value: Any) -> str:
    return value if isinstance(value, str) else orjson.dumps(value, default=str).decode()
