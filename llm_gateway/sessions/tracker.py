"""The session tracker: a pure state machine that turns model calls into sessions, agents and tool runs.

It is told when a call starts (with who is calling and what the request carries) and when it ends (with the
normalized record), and answers with events for the telemetry sink. Time comes in as arguments; there is no
clock, no I/O and no OpenTelemetry here, so every transition is testable with plain values.

Tool runs are inferred: a tool call in response N starts a run when that response ends; the result carried by
a later request of the same session ends it when that request arrives. A run whose result never comes is
ended when its session ends, with outcome "no_result".

States are explicit: a session is `ACTIVE` while a call is in flight, `IDLE` between calls (only an idle session
ends by the idle timer or to make room) and `ENDED` after; a tool run is `PENDING` until it ends with its
outcome. An event that is not allowed in a state is logged at debug level with the state's name and ignored.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Any

import orjson

from llm_gateway.protocols.exchange import ChatRecord, ChatRequest, ToolCall
from llm_gateway.sessions.files import normalize_tool_name
from llm_gateway.sessions.identity import Identity

log = logging.getLogger("llm_gateway.sessions")

#: calls and tool runs an agent keeps for its tree; a session of 50k calls must not hold 50k records
KEPT_PER_AGENT = 500


class SessionPhase(Enum):
    #: a model call of the session is in flight: it stays open
    ACTIVE = "active"
    #: no call in flight: it ends once idle for the idle time, or earlier to make room for a new session
    IDLE = "idle"
    #: ended at its last activity (idle, evicted or shut down); its spans are closed and nothing joins it
    ENDED = "ended"


class ToolPhase(Enum):
    """A tool run waits for its result, then ends with an outcome (the value, as `llm_gateway.tool.outcome`)."""

    #: a response called the tool; no later request has carried the result yet
    PENDING = "pending"
    #: a later request carried the result
    OK = "ok"
    #: a later request carried the result, marked as an error
    ERROR = "error"
    #: the session ended before any request carried the result
    NO_RESULT = "no_result"


@dataclass(slots=True)
class ToolRun:
    call_id: str | None
    name: str
    arguments: str
    type: str
    agent: AgentState
    started_ns: int
    ended_ns: int | None = None
    phase: ToolPhase = ToolPhase.PENDING
    result: Any = None  # only when the request carried content (capture on)

    @property
    def outcome(self) -> str | None:
        """ok | error | no_result once ended; None while pending."""
        return None if self.phase is ToolPhase.PENDING else self.phase.value


@dataclass(slots=True)
class CallNode:
    exchange_id: int
    agent: AgentState
    model: str | None
    started_ns: int
    auxiliary: bool
    ended_ns: int | None = None
    record: ChatRecord | None = None


@dataclass(slots=True)
class AgentState:
    key: str
    name: str
    parent: AgentState | None
    started_ns: int
    last_ns: int
    has_tools: bool = False
    #: the most recent calls and tool runs (for the tree); counts cover all of them
    calls: deque[CallNode] = field(default_factory=lambda: deque(maxlen=KEPT_PER_AGENT))
    tools: deque[ToolRun] = field(default_factory=lambda: deque(maxlen=KEPT_PER_AGENT))
    call_count: int = 0
    children: list[AgentState] = field(default_factory=list)
    input_tokens: int | None = None  # None until a call reports usage (Kiro 2.4 streams never do)
    output_tokens: int | None = None
    models: list[str] = field(default_factory=list)
    ended_ns: int | None = None


@dataclass(slots=True)
class SessionState:
    key: str
    source: str
    explicit: bool
    client: str
    started_ns: int
    last_ns: int
    agents: dict[str, AgentState] = field(default_factory=dict)
    main: AgentState | None = None
    pending: list[ToolRun] = field(default_factory=list)
    phase: SessionPhase = SessionPhase.IDLE
    in_flight: int = 0  # calls in flight: ACTIVE while above zero
    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_read: int | None = None
    providers: list[str] = field(default_factory=list)
    response_ids: deque[str] = field(default_factory=deque)  # responses a later request may continue from
    ended_ns: int | None = None

    @property
    def calls(self) -> int:
        return sum(a.call_count for a in self.agents.values())


# Events for the sink, in the order they happened.


@dataclass(frozen=True, slots=True)
class SessionStarted:
    session: SessionState


@dataclass(frozen=True, slots=True)
class AgentStarted:
    session: SessionState
    agent: AgentState


@dataclass(frozen=True, slots=True)
class ToolStarted:
    session: SessionState
    tool: ToolRun


@dataclass(frozen=True, slots=True)
class ToolFinished:
    session: SessionState
    tool: ToolRun


@dataclass(frozen=True, slots=True)
class AgentFinished:
    session: SessionState
    agent: AgentState


@dataclass(frozen=True, slots=True)
class SessionFinished:
    session: SessionState


Event = SessionStarted | AgentStarted | ToolStarted | ToolFinished | AgentFinished | SessionFinished


@dataclass(frozen=True, slots=True)
class Placement:
    """Where a starting call belongs."""

    session: SessionState
    call: CallNode


class SessionTracker:
    def __init__(self, *, idle_ns: int, max_sessions: int = 1000) -> None:
        self._idle_ns = idle_ns
        self._max_sessions = max_sessions
        self._sessions: dict[str, SessionState] = {}  # in order of last activity (oldest first)
        self._calls: dict[int, tuple[SessionState, CallNode]] = {}
        # response id -> (session, agent): a request that names the response it continues
        # (`previous_response_id`, an Anthropic thread) belongs to that conversation and agent
        self._responses: dict[str, tuple[SessionState, AgentState]] = {}

    def __repr__(self) -> str:
        return f"SessionTracker(sessions={len(self._sessions)}, calls_in_flight={len(self._calls)})"

    @property
    def sessions(self) -> dict[str, SessionState]:
        return self._sessions

    def pending_tool(self, name: str, arguments: object = None) -> ToolRun | None:
        """The tool run still waiting for its result that a call of tool `name` with `arguments` (an MCP call the
        gateway saw) belongs to: the same name once agents' MCP prefixes are stripped (`mcp__server__tool`,
        `@server/tool`) and, when both sides have arguments, the same arguments. The most recent such run wins."""
        wanted = normalize_tool_name(name)
        for session in reversed(self._sessions.values()):
            for run in reversed(session.pending):
                if normalize_tool_name(run.name) == wanted and _same_arguments(run.arguments, arguments):
                    return run
        return None

    def call_started(
        self, exchange_id: int, identity: Identity, request: ChatRequest, provider: str, at_ns: int
    ) -> tuple[Placement, list[Event]]:
        events: list[Event] = []
        linked = self._responses.get(request.hints.get("previous_response_id", "")) if not identity.explicit else None
        if linked is not None:
            identity = replace(identity, session_key=linked[0].key, agent_key=linked[1].key, auxiliary=False)
        session = self._sessions.pop(identity.session_key, None)
        if session is None:
            events += self._evict_for_room(at_ns)
            session = SessionState(identity.session_key, identity.session_source, identity.explicit,
                                   identity.client, at_ns, at_ns)
            events.append(SessionStarted(session))
        self._sessions[session.key] = session  # most recent last
        session.last_ns = at_ns
        session.in_flight += 1
        session.phase = SessionPhase.ACTIVE
        if provider not in session.providers:
            session.providers.append(provider)
        events += self._finish_tools(session, request, at_ns)

        auxiliary = identity.auxiliary and session.main is not None and session.main.has_tools
        if auxiliary:
            agent = session.main
        else:
            agent = session.agents.get(identity.agent_key)
            if agent is None:
                parent = session.agents.get(identity.parent_agent_key or "") or session.main
                agent = AgentState(identity.agent_key, identity.client, parent, at_ns, at_ns)
                if parent is not None:
                    parent.children.append(agent)
                session.agents[agent.key] = agent
                if session.main is None:
                    session.main = agent
                events.append(AgentStarted(session, agent))
            agent.has_tools = agent.has_tools or bool(request.tool_names)
        assert agent is not None
        agent.last_ns = at_ns
        if request.model and request.model not in agent.models:
            agent.models.append(request.model)
        call = CallNode(exchange_id, agent, request.model, at_ns, auxiliary)
        agent.calls.append(call)
        agent.call_count += 1
        self._calls[exchange_id] = (session, call)
        return Placement(session, call), events

    def call_finished(self, exchange_id: int, record: ChatRecord, at_ns: int) -> list[Event]:
        entry = self._calls.pop(exchange_id, None)
        if entry is None:
            log.debug("call %d finished but is not in flight: ignored", exchange_id)
            return []
        session, call = entry
        if not _allowed(session, "call finished", SessionPhase.ACTIVE):  # shut down while the call was in flight
            return []
        session.in_flight -= 1
        if session.in_flight == 0:
            session.phase = SessionPhase.IDLE
        session.last_ns = max(session.last_ns, at_ns)
        call.ended_ns = at_ns
        call.record = record
        agent = call.agent
        agent.last_ns = max(agent.last_ns, at_ns)
        for attr in ("input_tokens", "output_tokens", "cache_read"):
            tokens = getattr(record, attr)
            if tokens is not None:
                for total in (agent, session):
                    if hasattr(total, attr):
                        setattr(total, attr, (getattr(total, attr) or 0) + tokens)
        if record.response_model and record.response_model not in agent.models and not agent.models:
            agent.models.append(record.response_model)
        if record.response_id and record.response_id not in self._responses:
            self._responses[record.response_id] = (session, agent)
            session.response_ids.append(record.response_id)
            if len(session.response_ids) > KEPT_PER_AGENT:  # only recent responses get continued
                self._responses.pop(session.response_ids.popleft(), None)
        events: list[Event] = []
        if record.status is not None and 200 <= record.status < 300 and not record.error_type:
            for tool_call in record.tool_calls:
                events.append(ToolStarted(session, self._start_tool(session, agent, tool_call, at_ns)))
        return events

    def expire(self, now_ns: int) -> list[Event]:
        """Close the sessions idle for longer than the idle time (none with a call still in flight)."""
        idle = [s for s in self._sessions.values()
                if s.phase is SessionPhase.IDLE and now_ns - s.last_ns >= self._idle_ns]
        return [e for s in idle for e in self._close(s)]

    def close_all(self) -> list[Event]:
        """Shutdown: every session ends at its last activity."""
        return [e for s in list(self._sessions.values()) for e in self._close(s)]

    def _evict_for_room(self, at_ns: int) -> list[Event]:
        events: list[Event] = []
        for session in list(self._sessions.values()):
            if len(self._sessions) < self._max_sessions:
                break
            if session.phase is SessionPhase.IDLE:
                events += self._close(session)
        return events

    def _start_tool(self, session: SessionState, agent: AgentState, call: ToolCall, at_ns: int) -> ToolRun:
        run = ToolRun(call.call_id, call.name, call.arguments, call.type, agent, at_ns)
        agent.tools.append(run)
        session.pending.append(run)
        return run

    def _finish_tools(self, session: SessionState, request: ChatRequest, at_ns: int) -> list[Event]:
        events: list[Event] = []
        for result in request.tool_results:
            run = _take_pending(session.pending, result.call_id, result.name)
            if run is None:
                continue  # an older result repeated in the history (every request has them), or a call made before
                # the gateway saw it: nothing to end, and too common to log
            run.result = result.content
            events += _end_run(session, run, ToolPhase.ERROR if result.is_error else ToolPhase.OK, at_ns)
        return events

    def _close(self, session: SessionState) -> list[Event]:
        if not _allowed(session, "end", SessionPhase.IDLE, SessionPhase.ACTIVE):
            return []
        session.phase = SessionPhase.ENDED
        self._sessions.pop(session.key, None)
        for response_id in session.response_ids:
            self._responses.pop(response_id, None)
        events: list[Event] = []
        for run in session.pending:
            events += _end_run(session, run, ToolPhase.NO_RESULT, session.last_ns)
        session.pending.clear()
        # Children first, so a subagent ends before the agent that spawned it.
        # An agent ends at its last activity, or later if one of its tool runs or subagents ended later.
        for agent in sorted(session.agents.values(), key=_depth, reverse=True):
            agent.ended_ns = max([agent.last_ns]
                                 + [t.ended_ns for t in agent.tools if t.ended_ns is not None]
                                 + [c.ended_ns for c in agent.children if c.ended_ns is not None])
            events.append(AgentFinished(session, agent))
        session.ended_ns = max([session.last_ns] + [a.ended_ns for a in session.agents.values() if a.ended_ns])
        events.append(SessionFinished(session))
        return events


def _allowed(session: SessionState, event: str, *phases: SessionPhase) -> bool:
    """Whether `event` may happen to `session` in its phase; when not, say so at debug level."""
    if session.phase in phases:
        return True
    log.debug("session %s: %s is not allowed in state %s: ignored", session.key, event, session.phase.name)
    return False


def _end_run(session: SessionState, run: ToolRun, outcome: ToolPhase, at_ns: int) -> list[Event]:
    if run.phase is not ToolPhase.PENDING:
        log.debug("tool run %s (%s): ending as %s is not allowed in state %s: ignored", run.call_id, run.name,
                  outcome.name, run.phase.name)
        return []
    run.phase, run.ended_ns = outcome, max(at_ns, run.started_ns)
    return [ToolFinished(session, run)]


def _take_pending(pending: list[ToolRun], call_id: str | None, name: str | None) -> ToolRun | None:
    index = next((i for i, run in enumerate(pending) if call_id is not None and run.call_id == call_id), None)
    if index is None:
        # Id-less calls (Gemini without ids, Ollama) pair by name and order, even when the client gave its
        # answer an id of its own.
        index = next((i for i, run in enumerate(pending)
                      if run.call_id is None and (name is None or run.name == name)), None)
    return pending.pop(index) if index is not None else None


def _same_arguments(called: str, seen: object) -> bool:
    """Whether a call's JSON arguments are the `seen` value; true when either side has none."""
    if seen is None or not called:
        return True
    try:
        return orjson.loads(called) == seen
    except orjson.JSONDecodeError:
        return False


def _depth(agent: AgentState) -> int:
    depth = 0
    while agent.parent is not None:
        agent = agent.parent
        depth += 1
    return depth
