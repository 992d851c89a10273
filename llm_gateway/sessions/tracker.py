"""The session tracker: a pure state machine that turns model calls into sessions, agent turns and tool runs.

It is told when a call starts (with who is calling and what the request carries) and when it ends (with the
normalized record), and answers with events for the telemetry sink. Time comes in as arguments; there is no
clock, no I/O and no OpenTelemetry here, so every transition is testable with plain values.

- A **session** is one conversation (the client's id, else a fingerprint). It ends after the idle time, at
  shutdown, or when the gateway is told its agent exited.
- An **agent** is one loop inside it (the main loop, or a subagent such as Claude Code's Task tool); the first
  agent with tools is the session's main agent.
- A **turn** is one `invoke_agent`: it opens with a call that carries a new prompt (its newest message is no tool
  result: `ChatRequest.continues_tool_loop`) and
  ends when a call of it finishes with no call of it in flight and no tool run of it waiting for its result, i.e.
  with the final answer. A turn therefore ends, and can be exported, as soon as the agent answered; only the
  session waits for the idle time. A new prompt while a tool run still waits (the user interrupted) ends the old
  turn first, its waiting runs as `no_result`.
- A **side call** (no tools offered, no tool result carried: titles, summaries, classifiers, routing) joins the
  turn of the main agent it serves, and never becomes an agent of its own. One that names no session of its own
  joins the most recently active agent session of the same client. A side call that arrives before any main call
  opens a turn the next main call then takes over, and when it named no session either (Gemini CLI's router), a
  session the client's next main call without a session id of its own takes over too. A side call that starts
  right after a turn ended (`AFTERWORD_NS`, e.g. Gemini CLI's next-speaker check) serves that turn.
- **Tool runs** are inferred from the wire: a tool call in response N starts a run when that response ends; the
  result carried by a later request ends it. A subagent whose parent agent has a tool run waiting (the tool that
  started it) nests under that run.

States are explicit: a session is `ACTIVE` while a call is in flight, `IDLE` between calls and `ENDED` after; a
turn is `OPEN` then `ENDED`; a tool run is `PENDING` until it ends with its outcome. An event that is not allowed
in a state is logged at debug level with the state's name and ignored.
"""

from __future__ import annotations

import logging
from dataclasses import replace

import orjson

from llm_gateway.protocols.exchange import ChatRecord, ChatRequest
from llm_gateway.sessions.files import normalize_tool_name
from llm_gateway.sessions.identity import Identity
from llm_gateway.sessions.state import (
    AgentState,
    CallNode,
    Event,
    Placement,
    SessionFinished,
    SessionPhase,
    SessionStarted,
    SessionState,
    ToolFinished,
    ToolPhase,
    ToolRun,
    ToolStarted,
    TurnFinished,
    TurnPhase,
    TurnStarted,
    TurnState,
)

log = logging.getLogger("llm_gateway.sessions")

#: responses per session a later request may name as the one it continues (`previous_response_id`)
KEPT_RESPONSES = 64
#: how long a turn that only side calls opened waits for the prompt's main call before it ends on its own
SIDE_TURN_GRACE_NS = 2_000_000_000
#: a side call this soon after its agent's turn ended serves that turn (a check of the answer), not a new prompt
AFTERWORD_NS = 1_000_000_000


class SessionTracker:
    def __init__(self, *, idle_ns: int, max_sessions: int = 1000, keep_history: bool = True) -> None:
        """`keep_history`: keep each turn's calls and each agent's ended turns (up to `state.KEPT_PER_AGENT`) for
        the tree; without it a session holds only its open turns' tool runs, however long it lives."""
        self._idle_ns = idle_ns
        self._max_sessions = max_sessions
        self._keep_history = keep_history
        self._sessions: dict[str, SessionState] = {}  # in order of last activity (oldest first)
        self._aliases: dict[str, str] = {}  # another key a session goes by -> its key
        # client -> its most recently active session whose main agent runs a tool loop (what its side calls serve),
        # and its most recent session that only side calls opened so far (what its next main call takes over)
        self._tool_loops: dict[str, SessionState] = {}
        self._side_opened: dict[str, SessionState] = {}
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
            for agent in reversed(session.all_agents):
                for run in reversed(agent.turn.pending if agent.turn is not None else ()):
                    if normalize_tool_name(run.name) == wanted and _same_arguments(run.arguments, arguments):
                        return run
        return None

    def placement(self, exchange_id: int) -> Placement | None:
        """Where a call in flight was placed."""
        entry = self._calls.get(exchange_id)
        return Placement(*entry) if entry is not None else None

    def call_started(
        self, exchange_id: int, identity: Identity, request: ChatRequest, provider: str, at_ns: int
    ) -> tuple[Placement, list[Event]]:
        events: list[Event] = []
        linked = self._responses.get(request.hints.get("previous_response_id", "")) if not identity.explicit else None
        if linked is not None:
            identity = replace(identity, session_key=linked[0].key, agent_key=linked[1].key or identity.agent_key,
                               auxiliary=False)
        session = self._sessions.pop(self._aliases.get(identity.session_key, identity.session_key), None)
        if session is None and not identity.explicit:
            session = self._served_session(identity) if identity.auxiliary else self._taken_over(identity)
        if session is None:
            events += self._evict_for_room()
            session = SessionState(identity.session_key, identity.session_source, identity.explicit,
                                   identity.client, at_ns, at_ns)
            events.append(SessionStarted(session))
            if identity.auxiliary and not identity.explicit:
                self._side_opened[identity.client] = session
        self._sessions[session.key] = session  # most recent last
        session.last_ns = at_ns
        session.in_flight += 1
        session.phase = SessionPhase.ACTIVE
        session.calls += 1
        if provider not in session.providers:
            session.providers.append(provider)
        events += self._finish_tools(session, request, at_ns)

        agent, side = self._agent_for(session, identity, bool(request.tool_names), at_ns)
        agent.last_ns = at_ns
        if session.main is not None and session.main.has_tools:
            self._tool_loops[session.client] = session
        turn = agent.turn
        if (turn is not None and not side and turn.has_main_call and not request.continues_tool_loop
                and turn.in_flight == 0):
            events += self._end_turn(session, turn)  # a new prompt while tool runs waited: the turn was interrupted
            turn = None
        answered = agent.last_turn
        if (turn is None and side and answered is not None and answered.has_main_call
                and at_ns - (answered.ended_ns or at_ns) <= AFTERWORD_NS):
            turn = answered  # a check of the answer just given: it serves that turn, whose span already ended
        if turn is None:
            turn = self._open_turn(session, agent, at_ns)
            if not side and not request.hints.get("previous_response_id"):
                turn.prompt_ordinal = request.prompt_ordinal
            events.append(TurnStarted(session, turn))
        turn.has_main_call = turn.has_main_call or not side
        turn.in_flight += 1
        turn.last_ns = at_ns
        turn.call_count += 1
        model = request.model
        if model:
            _add_once(turn.models, model)
            _add_once(agent.models, model)
            _add_once(session.models, model)
        call = CallNode(exchange_id, turn, model, at_ns, side and (agent.has_tools or identity.agentic))
        if self._keep_history:
            turn.items.append(call)
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
        if self._keep_history:
            call.record = record
        turn, agent = call.turn, call.agent
        agent.last_ns = max(agent.last_ns, at_ns)
        turn.last_ns = max(turn.last_ns, at_ns)
        turn.in_flight -= 1
        turn.usage.add(record)
        session.usage.add(record)
        if record.response_model and not call.model:
            for models in (turn.models, agent.models, session.models):
                _add_once(models, record.response_model)
        if record.response_id and record.response_id not in self._responses:
            self._responses[record.response_id] = (session, agent)
            session.response_ids.append(record.response_id)
            if len(session.response_ids) > KEPT_RESPONSES:  # only recent responses get continued
                self._responses.pop(session.response_ids.popleft(), None)
        events: list[Event] = []
        succeeded = record.status is not None and 200 <= record.status < 300 and not record.error_type
        if succeeded:
            descriptions = getattr(record.request, "tool_descriptions", None) or {}
            for tool_call in record.tool_calls:
                run = ToolRun(tool_call.call_id, tool_call.name, tool_call.arguments, tool_call.type, turn, at_ns,
                              descriptions.get(tool_call.name))
                turn.pending.append(run)
                turn.items.append(run)
                events.append(ToolStarted(session, run))
        if turn.phase is TurnPhase.OPEN and turn.has_main_call:
            turn.error_type = None if succeeded else (record.error_type or str(record.status or "error"))
        if turn.phase is TurnPhase.OPEN and turn.has_main_call and turn.in_flight == 0 and not turn.pending:
            events += self._end_turn(session, turn)  # the final answer (or a failure the agent may retry)
        return events

    def expire(self, now_ns: int) -> list[Event]:
        """End the turns that only side calls opened once no main call came to take them over for
        `SIDE_TURN_GRACE_NS`, and close the sessions idle for longer than the idle time (none with a call still in
        flight)."""
        events: list[Event] = []
        for session in list(self._sessions.values()):
            if session.phase is not SessionPhase.IDLE:
                continue
            if now_ns - session.last_ns >= self._idle_ns:
                events += self._close(session)
                continue
            turn = session.main.turn if session.main is not None else None
            if turn is not None and not turn.has_main_call and now_ns - turn.last_ns >= SIDE_TURN_GRACE_NS:
                events += self._end_turn(session, turn)
        return events

    def close_all(self) -> list[Event]:
        """Shutdown (or the agent exited): every session ends at its last activity."""
        return [e for s in list(self._sessions.values()) for e in self._close(s)]

    def _served_session(self, identity: Identity) -> SessionState | None:
        """The session a side call without a session id of its own serves: the most recently active one of the
        same client whose main agent runs a tool loop."""
        session = self._tool_loops.get(identity.client)
        if session is None or session.phase is SessionPhase.ENDED:
            return None
        del self._sessions[session.key]
        return session

    def _taken_over(self, identity: Identity) -> SessionState | None:
        """The session a main call without a session id, and in no session yet, takes over: the client's latest
        one that only side calls opened (a router call before the prompt's first main call), while its turn still
        waits for the main call. The main call's key then names that session too."""
        session = self._side_opened.pop(identity.client, None)
        if session is None or session.phase is SessionPhase.ENDED or session.main is None:
            return None
        turn = session.main.turn
        if session.main.key is not None or turn is None or turn.has_main_call:
            return None
        del self._sessions[session.key]
        session.aliases.append(identity.session_key)
        self._aliases[identity.session_key] = session.key
        return session

    def _agent_for(
        self, session: SessionState, identity: Identity, has_tools: bool, at_ns: int
    ) -> tuple[AgentState, bool]:
        """The agent a call belongs to, and whether it is a side call serving the main agent."""
        main = session.main
        if identity.auxiliary and (main is None or main.key is None or main.has_tools):
            if main is None:  # a side call before the main loop's first call: the main agent, not named yet
                main = session.main = AgentState(None, identity.client, None, at_ns, at_ns)
            return main, True
        agent = session.agents.get(identity.agent_key)
        if agent is None:
            parent = session.agents.get(identity.parent_agent_key or "")
            if main is not None and main.key is None and parent is None:
                main.key = identity.agent_key  # the main loop's first call names the agent side calls opened
                agent = main
            else:
                agent = AgentState(identity.agent_key, identity.client, parent or main, at_ns, at_ns)
                session.main = main or agent
            session.agents[identity.agent_key] = agent
        agent.has_tools = agent.has_tools or has_tools
        return agent, False

    def _open_turn(self, session: SessionState, agent: AgentState, at_ns: int) -> TurnState:
        spawned_by = None
        parent_turn = None
        if agent.parent is not None:
            parent_turn = agent.parent.turn or agent.parent.last_turn
            if agent.parent.turn is not None and agent.parent.turn.pending:
                spawned_by = agent.parent.turn.pending[-1]  # the tool call that started this subagent
        agent.turn_count += 1
        session.turns += 1
        turn = TurnState(agent, agent.turn_count, at_ns, at_ns, spawned_by)
        agent.turn = turn
        if self._keep_history:
            agent.turns.append(turn)
        if parent_turn is not None:
            parent_turn.items.append(turn)
        return turn

    def _end_turn(self, session: SessionState, turn: TurnState) -> list[Event]:
        if turn.phase is not TurnPhase.OPEN:
            log.debug("turn %d of %s: ending is not allowed in state %s: ignored", turn.number, turn.agent.key,
                      turn.phase.name)
            return []
        events: list[Event] = []
        for run in turn.pending:
            events += _end_run(session, run, ToolPhase.NO_RESULT, max(turn.last_ns, run.started_ns))
        turn.pending.clear()
        turn.phase = TurnPhase.ENDED
        # A turn ends at its last activity, or later if one of its tool runs or subagent turns ended later.
        turn.ended_ns = max([turn.last_ns]
                            + [i.ended_ns for i in turn.items if not isinstance(i, CallNode) and i.ended_ns])
        if not self._keep_history:
            turn.items.clear()  # its tool runs and subagent turns were kept only for the line above
        agent = turn.agent
        if agent.turn is turn:
            agent.turn = None
        agent.last_turn = turn
        events.append(TurnFinished(session, turn))
        return events

    def _evict_for_room(self) -> list[Event]:
        """Close the least recently active idle sessions until there is room for one more. Called for every new
        session: it must not walk the sessions when there is room (a copy of 10,000 of them cost 20 µs a call)."""
        events: list[Event] = []
        while len(self._sessions) >= self._max_sessions:
            oldest_idle = next((s for s in self._sessions.values() if s.phase is SessionPhase.IDLE), None)
            if oldest_idle is None:
                break  # every session has a call in flight: over the limit until one ends
            events += self._close(oldest_idle)
        return events

    def _finish_tools(self, session: SessionState, request: ChatRequest, at_ns: int) -> list[Event]:
        if not request.tool_results:
            return []
        pending = [run for agent in session.all_agents if agent.turn is not None for run in agent.turn.pending]
        # An agent's request carries every result of its conversation, often hundreds, and those that answer what
        # is pending come last: the others are passed over by their ids, unless an id-less call is pending (those
        # pair by name and order).
        pending_ids = {run.call_id for run in pending}
        by_order = None in pending_ids
        events: list[Event] = []
        for result in request.tool_results:
            if not pending:
                break  # the rest are older results the history repeats
            if not by_order and result.call_id not in pending_ids:
                continue
            run = _take_pending(pending, result.call_id, result.name)
            if run is None:
                continue  # an older result repeated in the history, or a call made before the gateway saw it:
                # nothing to end, and too common to log
            run.turn.pending.remove(run)
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
        for alias in session.aliases:
            self._aliases.pop(alias, None)
        for index in (self._tool_loops, self._side_opened):
            if index.get(session.client) is session:
                del index[session.client]
        events: list[Event] = []
        # Subagents first, so a subagent's turn ends before the turn that spawned it.
        for agent in sorted(session.all_agents, key=_depth, reverse=True):
            if agent.turn is not None:
                events += self._end_turn(session, agent.turn)
        session.ended_ns = max([session.last_ns]
                               + [a.last_turn.ended_ns for a in session.all_agents
                                  if a.last_turn is not None and a.last_turn.ended_ns])
        events.append(SessionFinished(session))
        return events


def _add_once(values: list[str], value: str) -> None:
    if value not in values:
        values.append(value)


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
