"""What the session tracker keeps and tells: the phases of sessions, turns and tool runs, the state of each
session, agent, turn, call and tool run (which the tree and the spans read), and the events the tracker answers
with (`tracker.SessionTracker`)."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field, fields
from enum import Enum
from typing import Any

from llm_gateway.protocols.exchange import ChatRecord

#: calls, tool runs and turns an agent keeps for its tree; a session of 50k calls must not hold 50k records
KEPT_PER_AGENT = 500


class SessionPhase(Enum):
    #: a model call of the session is in flight: it stays open
    ACTIVE = "active"
    #: no call in flight: it ends once idle for the idle time, or earlier to make room for a new session
    IDLE = "idle"
    #: ended at its last activity (idle, evicted, exited or shut down); nothing joins it
    ENDED = "ended"


class TurnPhase(Enum):
    #: a prompt is being answered: a call in flight or a tool run waiting for its result
    OPEN = "open"
    #: answered (or interrupted, or its session ended): its span is closed
    ENDED = "ended"


class ToolPhase(Enum):
    """A tool run waits for its result, then ends with an outcome (the value, as `llm_gateway.tool.outcome`)."""

    #: a response called the tool; no later request has carried the result yet
    PENDING = "pending"
    #: a later request carried the result
    OK = "ok"
    #: a later request carried the result, marked as an error
    ERROR = "error"
    #: the turn or session ended before any request carried the result
    NO_RESULT = "no_result"


@dataclass(slots=True)
class Usage:
    """Token totals over calls; a kind stays None until some call reported it (Kiro 2.4 streams never do)."""

    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_read: int | None = None
    cache_write: int | None = None
    reasoning_tokens: int | None = None

    def add(self, record: ChatRecord) -> None:
        for f in _USAGE_FIELDS:
            tokens = getattr(record, f)
            if tokens is not None:
                setattr(self, f, (getattr(self, f) or 0) + tokens)


_USAGE_FIELDS = tuple(f.name for f in fields(Usage))


@dataclass(slots=True)
class ToolRun:
    call_id: str | None
    name: str
    arguments: str
    type: str
    turn: TurnState
    started_ns: int
    description: str | None = None
    ended_ns: int | None = None
    phase: ToolPhase = ToolPhase.PENDING
    result: Any = None  # only when the request carried content (capture on)

    @property
    def agent(self) -> AgentState:
        return self.turn.agent

    @property
    def outcome(self) -> str | None:
        """ok | error | no_result once ended; None while pending."""
        return None if self.phase is ToolPhase.PENDING else self.phase.value


@dataclass(slots=True)
class CallNode:
    exchange_id: int
    turn: TurnState
    model: str | None
    started_ns: int
    auxiliary: bool
    ended_ns: int | None = None
    record: ChatRecord | None = None
    #: what the call cost, set by whoever finishes it (the tracker prices nothing): USD when priced, Kiro's credits
    cost_usd: float | None = None
    kiro_credits: float | None = None

    @property
    def agent(self) -> AgentState:
        return self.turn.agent


@dataclass(slots=True)
class TurnState:
    agent: AgentState
    number: int  # 1, 2, ... within its agent
    started_ns: int
    last_ns: int
    #: the tool run of the parent agent that started this subagent turn (its span's parent), if any
    spawned_by: ToolRun | None = None
    #: the opening prompt's ordinal in the conversation (`ChatRequest.prompt_ordinal`) when a main call opened the
    #: turn with the whole conversation: it names the turn across gateway restarts
    prompt_ordinal: int | None = None
    phase: TurnPhase = TurnPhase.OPEN
    #: a main call took part (a turn opened by a side call waits for the prompt's main call to take it over)
    has_main_call: bool = False
    in_flight: int = 0
    pending: list[ToolRun] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)
    models: list[str] = field(default_factory=list)
    call_count: int = 0
    error_type: str | None = None  # the last main call failed with this
    ended_ns: int | None = None
    #: calls, tool runs and subagent turns, in order (for the tree)
    items: deque[CallNode | ToolRun | TurnState] = field(default_factory=lambda: deque(maxlen=KEPT_PER_AGENT))


@dataclass(slots=True)
class AgentState:
    key: str | None  # None: not named yet (opened by a side call before the main loop's first call)
    name: str
    parent: AgentState | None
    started_ns: int
    last_ns: int
    has_tools: bool = False
    turn: TurnState | None = None  # the open turn
    last_turn: TurnState | None = None
    turn_count: int = 0
    #: the most recent turns (for the tree); counts cover all of them
    turns: deque[TurnState] = field(default_factory=lambda: deque(maxlen=KEPT_PER_AGENT))
    models: list[str] = field(default_factory=list)


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
    phase: SessionPhase = SessionPhase.IDLE
    in_flight: int = 0  # calls in flight: ACTIVE while above zero
    usage: Usage = field(default_factory=Usage)
    models: list[str] = field(default_factory=list)
    providers: list[str] = field(default_factory=list)
    calls: int = 0
    turns: int = 0
    response_ids: deque[str] = field(default_factory=deque)  # responses a later request may continue from
    #: session keys of other calls that joined it (a main call that took over a session its side calls opened)
    aliases: list[str] = field(default_factory=list)
    ended_ns: int | None = None

    @property
    def all_agents(self) -> list[AgentState]:
        """The main agent first (named or not), then the others in order of appearance."""
        agents = list(self.agents.values())
        if self.main is not None and self.main not in agents:
            agents.insert(0, self.main)
        return agents


# Events for the sink, in the order they happened.


@dataclass(frozen=True, slots=True)
class SessionStarted:
    session: SessionState


@dataclass(frozen=True, slots=True)
class TurnStarted:
    session: SessionState
    turn: TurnState


@dataclass(frozen=True, slots=True)
class ToolStarted:
    session: SessionState
    tool: ToolRun


@dataclass(frozen=True, slots=True)
class ToolFinished:
    session: SessionState
    tool: ToolRun


@dataclass(frozen=True, slots=True)
class TurnFinished:
    session: SessionState
    turn: TurnState


@dataclass(frozen=True, slots=True)
class SessionFinished:
    session: SessionState


Event = SessionStarted | TurnStarted | ToolStarted | ToolFinished | TurnFinished | SessionFinished


@dataclass(frozen=True, slots=True)
class Placement:
    """Where a starting call belongs."""

    session: SessionState
    call: CallNode
