"""The terminal tree of a finished session: a session the tracker built (plain values in), rendered line by line."""

from __future__ import annotations

from llm_gateway.protocols.exchange import ChatRecord, ChatRequest, ToolCall, ToolResult
from llm_gateway.sessions import state as st
from llm_gateway.sessions import tracker as tr
from llm_gateway.sessions.identity import Identity
from llm_gateway.sessions.tree import render

S = 1_000_000_000
MS = 1_000_000


def _identity(agent: str = "main", parent: str | None = None, *, aux: bool = False, explicit: bool = True,
              key: str = "conv-1") -> Identity:
    return Identity(key, "test", explicit, agent, parent, "Claude Code", aux)


def _record(*calls: ToolCall, status: int = 200, **fields: object) -> ChatRecord:
    return ChatRecord(request=ChatRequest(), status=status, tool_calls=list(calls), **fields)


def _finished(tracker: tr.SessionTracker) -> st.SessionState:
    (session,) = [e.session for e in tracker.close_all() if isinstance(e, st.SessionFinished)]
    return session


def test_session_with_tools_subagent_and_side_call() -> None:
    t = tr.SessionTracker(idle_ns=300 * S)
    read = ToolCall("c1", "Read", '{"file_path": "/src/app.py"}')
    task = ToolCall("c2", "Task", '{"prompt": "find the tests"}')
    t.call_started(1, _identity(), ChatRequest(model="claude-sonnet-4", tool_names=["Read", "Task"]), "anthropic", 0)
    t.call_finished(1, _record(read, task, input_tokens=1200, output_tokens=40, cache_read=1000,
                               finish_reasons=["tool_use"]), 2100 * MS)
    t.call_started(2, _identity("sub", "main"), ChatRequest(model="claude-haiku", tool_names=["Grep"]), "anthropic",
                   2200 * MS)
    t.call_finished(2, _record(output_tokens=7, finish_reasons=["end_turn"]), 2600 * MS)
    t.call_started(3, _identity(aux=True), ChatRequest(model="claude-haiku"), "anthropic", 2700 * MS)
    t.call_finished(3, _record(status=529, error_type="overloaded_error"), 2750 * MS)
    results = [ToolResult("c1"), ToolResult("c2", is_error=True)]
    t.call_started(4, _identity(), ChatRequest(model="claude-sonnet-4", tool_names=["Read"], tool_results=results,
                                                continues_tool_loop=True),
                   "anthropic", 3 * S)
    t.call_finished(4, _record(input_tokens=1300, output_tokens=60, finish_reasons=["end_turn"]), 5500 * MS)

    assert render(_finished(t)).splitlines() == [
        "[session] Claude Code session (5.5s)  conversation=conv-1  calls=4  turns=2  tokens in=2500 out=107",
        "  [invoke_agent] Claude Code #1 (5.5s)  claude-sonnet-4, claude-haiku  tokens in=2500 out=100",
        "    [chat] claude-sonnet-4 (2.1s)  tokens in=1200 out=40  cache_read=1000  finish=tool_use",
        "    [execute_tool] Read (900ms)  ok  read /src/app.py",
        "    [execute_tool] Task (900ms)  error",
        "    [invoke_agent] Claude Code #1 (400ms)  claude-haiku  tokens in=? out=7",
        "      [chat] claude-haiku (400ms)  tokens in=? out=7  finish=end_turn",
        "    [chat] claude-haiku (50ms)  ERROR overloaded_error  (auxiliary)",
        "    [chat] claude-sonnet-4 (2.5s)  tokens in=1300 out=60  finish=end_turn",
    ]


def test_fingerprinted_session_without_usage_and_a_tool_left_without_result() -> None:
    t = tr.SessionTracker(idle_ns=300 * S)
    t.call_started(1, _identity(explicit=False, key="fp-9"), ChatRequest(model="auto", tool_names=["read"]),
                   "aws.kiro", 0)
    operations = '{"operations": [{"mode": "Directory", "path": "/home/user/project"}]}'
    t.call_finished(1, _record(ToolCall("t1", "read", operations)), 1500 * MS)

    assert render(_finished(t)).splitlines() == [
        "[session] Claude Code session (1.5s)  fingerprint=fp-9  calls=1  turns=1  tokens not reported",
        "  [invoke_agent] Claude Code #1 (1.5s)  auto  tokens not reported",
        "    [chat] auto (1.5s)",
        "    [execute_tool] read (0ms)  no_result  list /home/user/project",
    ]


def test_lines_keep_start_order_with_a_tool_run_before_a_subagent_started_with_it() -> None:
    t = tr.SessionTracker(idle_ns=300 * S)
    t.call_started(1, _identity(), ChatRequest(model="m", tool_names=["Task"]), "p", 0)
    t.call_finished(1, _record(ToolCall("a", "Task", "{}")), S)
    t.call_started(2, _identity("sub", "main"), ChatRequest(model="m"), "p", S)  # same instant as the tool run
    t.call_finished(2, _record(), 2 * S)
    t.call_started(3, _identity(), ChatRequest(model="m", tool_results=[ToolResult("a")], continues_tool_loop=True),
                   "p", 2 * S)
    t.call_finished(3, _record(), 2 * S + 5 * MS)

    lines = render(_finished(t)).splitlines()
    assert [line.strip().split(" (")[0] for line in lines[2:]] == [
        "[chat] m", "[execute_tool] Task", "[invoke_agent] Claude Code #1", "[chat] m", "[chat] m",
    ]
    assert lines[-1] == "    [chat] m (5ms)"


def _priced(tracker: tr.SessionTracker, exchange_id: int, identity: Identity, request: ChatRequest, record: ChatRecord,
            start_ns: int, end_ns: int, usd: float | None = None, credits: float | None = None) -> None:
    """A call finished as the span builder finishes it: its cost figures set on its node."""
    place, _ = tracker.call_started(exchange_id, identity, request, "anthropic", start_ns)
    place.call.cost_usd, place.call.kiro_credits = usd, credits
    tracker.call_finished(exchange_id, record, end_ns)


def test_cost_per_call_and_sums_per_turn_and_session_with_the_unpriced_calls_counted() -> None:
    t = tr.SessionTracker(idle_ns=300 * S)
    tools = ChatRequest(model="claude-sonnet-4", tool_names=["Task"])
    _priced(t, 1, _identity(), tools, _record(ToolCall("c1", "Task", "{}"), input_tokens=900, output_tokens=20),
            0, S, usd=0.0123)
    _priced(t, 2, _identity("sub", "main"), ChatRequest(model="claude-haiku", tool_names=["Grep"]),
            _record(input_tokens=90, output_tokens=7), S, 2 * S, usd=0.000456)
    _priced(t, 3, _identity(aux=True), ChatRequest(model="custom-model"), _record(input_tokens=5, output_tokens=2),
            2 * S, 2 * S + 50 * MS)  # a model the price table does not know
    results = ChatRequest(model="claude-sonnet-4", tool_names=["Task"], tool_results=[ToolResult("c1")],
                          continues_tool_loop=True)
    _priced(t, 4, _identity(), results, _record(input_tokens=1000, output_tokens=30), 3 * S, 4 * S, usd=1.5)

    lines = render(_finished(t)).splitlines()
    assert lines[0].endswith("tokens in=1995 out=59  cost=$1.51 (1 unpriced)")
    assert lines[1].endswith("tokens in=1905 out=52  cost=$1.51 (1 unpriced)")  # its own calls, not its subagent's
    assert lines[2:] == [
        "    [chat] claude-sonnet-4 (1.0s)  tokens in=900 out=20  cost=$0.0123",
        "    [execute_tool] Task (2.0s)  ok",
        "    [invoke_agent] Claude Code #1 (1.0s)  claude-haiku  tokens in=90 out=7  cost=$0.000456",
        "      [chat] claude-haiku (1.0s)  tokens in=90 out=7  cost=$0.000456",
        "    [chat] custom-model (50ms)  tokens in=5 out=2  (auxiliary)",
        "    [chat] claude-sonnet-4 (1.0s)  tokens in=1000 out=30  cost=$1.50",
    ]


def test_kiro_credits_per_call_and_summed_without_usd() -> None:
    t = tr.SessionTracker(idle_ns=300 * S)
    kiro = ChatRequest(model="auto", tool_names=["read"])
    _priced(t, 1, _identity(), kiro, _record(ToolCall("t1", "read", "{}")), 0, S, credits=0.0731)
    results = ChatRequest(model="auto", tool_names=["read"], tool_results=[ToolResult("t1")], continues_tool_loop=True)
    _priced(t, 2, _identity(), results, _record(), 2 * S, 3 * S, credits=0.184)
    _priced(t, 3, _identity(), ChatRequest(model="auto", tool_names=["read"]), _record(), 4 * S, 5 * S, credits=0.5)

    assert render(_finished(t)).splitlines() == [
        "[session] Claude Code session (5.0s)  conversation=conv-1  calls=3  turns=2  tokens not reported  "
        "credits=0.757",
        "  [invoke_agent] Claude Code #1 (3.0s)  auto  tokens not reported  credits=0.257",
        "    [chat] auto (1.0s)  credits=0.0731",
        "    [execute_tool] read (1.0s)  ok",
        "    [chat] auto (1.0s)  credits=0.184",
        "  [invoke_agent] Claude Code #2 (1.0s)  auto  tokens not reported  credits=0.500",
        "    [chat] auto (1.0s)  credits=0.500",
    ]


def test_a_sum_over_fewer_calls_than_counted_says_it_is_a_lower_bound(monkeypatch) -> None:
    monkeypatch.setattr(st, "KEPT_PER_AGENT", 2)  # the turn keeps its last two items
    t = tr.SessionTracker(idle_ns=300 * S)
    request = ChatRequest(model="m", tool_names=["Read"])
    _priced(t, 1, _identity(), request, _record(ToolCall("a", "Read", "{}")), 0, S, usd=1.0)
    loop = ChatRequest(model="m", tool_names=["Read"], tool_results=[ToolResult("a")], continues_tool_loop=True)
    _priced(t, 2, _identity(), loop, _record(), 2 * S, 3 * S, usd=0.25)

    head, turn, *_ = render(_finished(t)).splitlines()
    assert head.endswith("cost=>=$0.250") and turn.endswith("cost=>=$0.250")
