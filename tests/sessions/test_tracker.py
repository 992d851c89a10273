"""The session tracker as a pure state machine: plain values in, events out."""

from __future__ import annotations

from llm_gateway.protocols.exchange import ChatRecord, ChatRequest, ToolCall, ToolResult
from llm_gateway.sessions import state as st
from llm_gateway.sessions import tracker as tr
from llm_gateway.sessions.identity import Identity

S = 1_000_000_000


def _identity(session: str = "s1", agent: str = "main", parent: str | None = None, aux: bool = False) -> Identity:
    return Identity(session, "test", True, agent, parent, "Test Agent", aux)


def _request(tools=("Read",), results=()) -> ChatRequest:
    return ChatRequest(model="m", tool_names=list(tools), tool_results=list(results),
                       continues_tool_loop=bool(results))


def _record(*calls: ToolCall, status: int = 200) -> ChatRecord:
    return ChatRecord(request=ChatRequest(), status=status, input_tokens=10, output_tokens=5,
                      tool_calls=list(calls))


def _kinds(events) -> list[str]:
    return [type(e).__name__ for e in events]


def test_tool_call_then_result_gives_one_tool_run_timed_between_the_calls():
    t = tr.SessionTracker(idle_ns=300 * S)
    _, events = t.call_started(1, _identity(), _request(), "anthropic", 0)
    assert _kinds(events) == ["SessionStarted", "TurnStarted"]
    events = t.call_finished(1, _record(ToolCall("c1", "Read", '{"file_path": "/a"}')), 2 * S)
    assert _kinds(events) == ["ToolStarted"]
    run = events[0].tool
    _, events = t.call_started(2, _identity(), _request(results=[ToolResult("c1")]), "anthropic", 3 * S)
    assert _kinds(events) == ["ToolFinished"]
    assert (run.started_ns, run.ended_ns, run.outcome) == (2 * S, 3 * S, "ok")


def test_parallel_calls_each_pair_with_their_own_result_and_errors_are_marked():
    t = tr.SessionTracker(idle_ns=300 * S)
    t.call_started(1, _identity(), _request(), "p", 0)
    started = t.call_finished(1, _record(ToolCall("a", "Read"), ToolCall("b", "Read")), S)
    _, finished = t.call_started(2, _identity(), _request(results=[ToolResult("b", is_error=True),
                                                                   ToolResult("a")]), "p", 2 * S)
    outcomes = {e.tool.call_id: e.tool.outcome for e in finished}
    assert [e.tool.call_id for e in started] == ["a", "b"]
    assert outcomes == {"a": "ok", "b": "error"}


def test_result_repeated_in_later_history_does_not_end_anything_twice():
    t = tr.SessionTracker(idle_ns=300 * S)
    t.call_started(1, _identity(), _request(), "p", 0)
    t.call_finished(1, _record(ToolCall("a", "Read")), S)
    t.call_started(2, _identity(), _request(results=[ToolResult("a")]), "p", 2 * S)
    t.call_finished(2, _record(), 3 * S)
    _, events = t.call_started(3, _identity(), _request(results=[ToolResult("a")]), "p", 4 * S)
    assert "ToolFinished" not in _kinds(events)


def test_two_interleaved_sessions_stay_apart():
    t = tr.SessionTracker(idle_ns=300 * S)
    t.call_started(1, _identity("x"), _request(), "p", 0)
    t.call_started(2, _identity("y"), _request(), "p", 0)
    ex = t.call_finished(1, _record(ToolCall("same-id", "Read")), S)
    ey = t.call_finished(2, _record(ToolCall("same-id", "Read")), S)
    _, finished = t.call_started(3, _identity("y"), _request(results=[ToolResult("same-id")]), "p", 2 * S)
    assert [e.tool for e in finished] == [ey[0].tool]
    assert ex[0].tool.ended_ns is None
    assert set(t.sessions) == {"x", "y"}


def test_subagent_nests_under_its_parent_and_aux_call_joins_the_main_agent():
    t = tr.SessionTracker(idle_ns=300 * S)
    main_place, _ = t.call_started(1, _identity(), _request(), "p", 0)
    sub_place, events = t.call_started(2, _identity(agent="sub", parent="main"), _request(), "p", S)
    assert _kinds(events) == ["TurnStarted"]
    assert sub_place.call.agent.parent is main_place.call.agent
    aux_place, events = t.call_started(3, _identity(agent="title", aux=True), _request(tools=()), "p", 2 * S)
    assert events == [] and aux_place.call.auxiliary and aux_place.call.agent is main_place.call.agent


def test_idle_session_closes_at_its_last_activity_and_unanswered_calls_are_marked():
    t = tr.SessionTracker(idle_ns=10 * S)
    t.call_started(1, _identity(), _request(), "p", 0)
    t.call_finished(1, _record(ToolCall("a", "Read")), 2 * S)
    assert t.expire(11 * S) == []  # 9 s idle: not yet
    events = t.expire(12 * S)
    assert _kinds(events) == ["ToolFinished", "TurnFinished", "SessionFinished"]
    assert events[0].tool.outcome == "no_result"
    assert events[-1].session.ended_ns == 2 * S  # the last activity, not the moment the timer fired
    assert t.sessions == {}


def test_session_with_call_in_flight_is_not_expired():
    t = tr.SessionTracker(idle_ns=S)
    t.call_started(1, _identity(), _request(), "p", 0)
    assert t.expire(100 * S) == []


def test_sessions_beyond_the_limit_evict_the_least_recently_active():
    t = tr.SessionTracker(idle_ns=300 * S, max_sessions=2)
    for i, key in enumerate("abc"):
        t.call_started(i, _identity(key), _request(), "p", i * S)
        t.call_finished(i, _record(), i * S)
    assert list(t.sessions) == ["b", "c"]


def test_a_session_with_a_call_in_flight_is_never_evicted():
    t = tr.SessionTracker(idle_ns=300 * S, max_sessions=2)
    t.call_started(1, _identity("a"), _request(), "p", 0)  # a long stream: still in flight
    t.call_started(2, _identity("b"), _request(), "p", S)
    t.call_finished(2, _record(), S)
    t.call_started(3, _identity("c"), _request(), "p", 2 * S)
    assert list(t.sessions) == ["a", "c"]  # the oldest idle one made room
    t.call_started(4, _identity("d"), _request(), "p", 3 * S)
    assert list(t.sessions) == ["a", "c", "d"]  # both busy: over the limit until one is idle


def test_failed_response_starts_no_tool_runs():
    t = tr.SessionTracker(idle_ns=300 * S)
    t.call_started(1, _identity(), _request(), "p", 0)
    (ended,) = t.call_finished(1, _record(ToolCall("a", "Read"), status=500), S)
    assert isinstance(ended, st.TurnFinished) and ended.turn.error_type == "500"  # the agent may retry


def test_request_continuing_a_response_joins_that_session_and_agent_even_without_history():
    """Anthropic threads and OpenAI `previous_response_id` send only the new turn: no tools, no first message."""
    t = tr.SessionTracker(idle_ns=300 * S)
    first, _ = t.call_started(1, Identity("fp-a", "fingerprint", False, "agent-a", None, "SDK", False),
                              _request(), "p", 0)
    record = _record(ToolCall("c1", "get_weather"))
    record.response_id = "msg_1"
    t.call_finished(1, record, S)
    follow_up = ChatRequest(tool_results=[ToolResult("c1")], continues_tool_loop=True,
                            hints={"previous_response_id": "msg_1"})
    second, events = t.call_started(2, Identity("fp-other", "fingerprint", False, "agent-b", None, "SDK", False),
                                    follow_up, "p", 2 * S)
    assert second.session is first.session and second.call.agent is first.call.agent
    assert _kinds(events) == ["ToolFinished"]


def test_call_without_id_pairs_by_name_even_when_the_result_brings_an_id_of_its_own():
    """Gemini 2.0 calls carry no id; pydantic-ai answers them with ids it made up (gemini/tool-loop-streaming)."""
    t = tr.SessionTracker(idle_ns=300 * S)
    t.call_started(1, _identity(), _request(), "p", 0)
    t.call_finished(1, _record(ToolCall(None, "get_capital"), ToolCall(None, "get_temperature")), S)
    _, events = t.call_started(2, _identity(), _request(results=[ToolResult("made-up", name="get_temperature")]),
                               "p", 2 * S)
    assert [(e.tool.name, e.tool.outcome) for e in events] == [("get_temperature", "ok")]


def test_the_results_a_long_history_repeats_end_nothing_and_the_new_ones_end_what_is_pending():
    """An agent's request carries every result of its conversation; those that answer the pending calls come last,
    by id, or by name for a call without one (whose answer may bring an id the client made up)."""
    older = [ToolResult(f"old-{n}", name="Read") for n in range(100)]
    t = tr.SessionTracker(idle_ns=300 * S)
    t.call_started(1, _identity(), _request(), "p", 0)
    t.call_finished(1, _record(ToolCall("new", "Read")), S)
    _, events = t.call_started(2, _identity(), _request(results=[*older, ToolResult("new", is_error=True)]), "p",
                               2 * S)
    assert [(e.tool.call_id, e.tool.outcome) for e in events] == [("new", "error")]
    t.call_finished(2, _record(ToolCall(None, "get_temperature")), 3 * S)
    answer = ToolResult("made-up", name="get_temperature")
    _, events = t.call_started(3, _identity(), _request(results=[*older, answer]), "p", 4 * S)
    assert [(e.tool.name, e.tool.outcome) for e in events] == [("get_temperature", "ok")]


def test_session_and_tool_states_follow_the_calls():
    t = tr.SessionTracker(idle_ns=10 * S)
    place, _ = t.call_started(1, _identity(), _request(), "p", 0)
    session = place.session
    assert session.phase is st.SessionPhase.ACTIVE
    (started,) = t.call_finished(1, _record(ToolCall("a", "Read")), S)
    assert session.phase is st.SessionPhase.IDLE and started.tool.phase is st.ToolPhase.PENDING
    t.expire(20 * S)
    assert session.phase is st.SessionPhase.ENDED and started.tool.phase is st.ToolPhase.NO_RESULT


def test_a_call_finishing_after_its_session_was_shut_down_changes_nothing_and_says_why(caplog):
    t = tr.SessionTracker(idle_ns=300 * S)
    t.call_started(1, _identity(), _request(), "p", 0)
    assert _kinds(t.close_all()) == ["TurnFinished", "SessionFinished"]
    with caplog.at_level("DEBUG", logger="llm_gateway.sessions"):
        assert t.call_finished(1, _record(ToolCall("a", "Read")), S) == []
        assert t.call_finished(7, _record(), S) == []
    assert "not allowed in state ENDED" in caplog.text and "call 7 finished but is not in flight" in caplog.text


def test_pending_tool_matches_mcp_prefixed_names_and_the_arguments_most_recent_first():
    t = tr.SessionTracker(idle_ns=300 * S)
    t.call_started(1, _identity(), _request(), "p", 0)
    t.call_finished(1, _record(ToolCall("c", "mcp__fs__read_text_file", ""),
                               ToolCall("a", "mcp__fs__read_text_file", '{"path": "/a"}'),
                               ToolCall("b", "mcp__fs__read_text_file", '{"path": "/b"}')), S)
    assert t.pending_tool("read_text_file", {"path": "/a"}).call_id == "a"
    assert t.pending_tool("read_text_file", {"path": "/z"}).call_id == "c"  # a call without arguments matches any
    assert t.pending_tool("read_text_file").call_id == "b"
    assert t.pending_tool("write_file") is None
    t.call_started(2, _identity(), _request(results=[ToolResult("a"), ToolResult("b"), ToolResult("c")]), "p", 2 * S)
    assert t.pending_tool("read_text_file") is None


# Turns (issue 14): one invoke_agent per prompt, ended by the final answer.


def _usage_record(*calls: ToolCall, cache_read: int | None = None, reasoning: int | None = None) -> ChatRecord:
    record = _record(*calls)
    record.cache_read, record.reasoning_tokens = cache_read, reasoning
    return record


def test_turn_ends_with_the_final_answer_and_the_next_prompt_opens_the_next_turn():
    t = tr.SessionTracker(idle_ns=300 * S)
    first, _ = t.call_started(1, _identity(), _request(), "p", 0)
    t.call_finished(1, _usage_record(ToolCall("a", "Read"), cache_read=3), S)
    t.call_started(2, _identity(), _request(results=[ToolResult("a")]), "p", 2 * S)
    events = t.call_finished(2, _usage_record(reasoning=2), 3 * S)
    assert _kinds(events) == ["TurnFinished"]
    turn = events[0].turn
    assert turn is first.call.turn and (turn.number, turn.started_ns, turn.ended_ns) == (1, 0, 3 * S)
    assert (turn.usage.input_tokens, turn.usage.output_tokens, turn.usage.cache_read,
            turn.usage.reasoning_tokens) == (20, 10, 3, 2)
    assert first.session.phase is st.SessionPhase.IDLE  # the session waits; the turn is done
    second, events = t.call_started(3, _identity(), _request(), "p", 10 * S)
    assert _kinds(events) == ["TurnStarted"] and second.call.turn.number == 2
    t.call_finished(3, _record(), 11 * S)
    assert second.session.turns == 2 and second.session.usage.input_tokens == 30


def test_a_new_prompt_while_a_tool_waits_ends_the_interrupted_turn_first():
    t = tr.SessionTracker(idle_ns=300 * S)
    first, _ = t.call_started(1, _identity(), _request(), "p", 0)
    t.call_finished(1, _record(ToolCall("a", "Bash")), S)
    _, events = t.call_started(2, _identity(), _request(), "p", 5 * S)
    assert _kinds(events) == ["ToolFinished", "TurnFinished", "TurnStarted"]
    assert events[0].tool.outcome == "no_result" and events[1].turn is first.call.turn
    assert events[1].turn.ended_ns == S  # its last activity, not the new prompt's arrival


def test_side_call_before_the_main_loop_opens_the_turn_the_main_call_takes_over():
    t = tr.SessionTracker(idle_ns=300 * S)
    side, events = t.call_started(1, _identity(agent="title", aux=True), _request(tools=()), "p", 0)
    assert _kinds(events) == ["SessionStarted", "TurnStarted"]
    main, events = t.call_started(2, _identity(), _request(), "p", S)
    assert events == [] and main.call.turn is side.call.turn
    assert main.call.agent is side.call.agent and main.call.agent.key == "main"
    assert main.session.main is main.call.agent and main.call.agent.parent is None
    assert list(main.session.agents) == ["main"]  # the side call never became an agent of its own
    t.call_finished(1, _record(), 2 * S)
    (ended,) = t.call_finished(2, _record(), 3 * S)
    assert ended.turn is main.call.turn


def test_side_call_without_a_session_id_joins_the_active_agent_session_of_its_client():
    t = tr.SessionTracker(idle_ns=300 * S)
    main, _ = t.call_started(1, _identity(), _request(), "p", 0)
    side_identity = Identity("fp-title", "fingerprint", False, "fp-x", None, "Test Agent", True)
    side, events = t.call_started(2, side_identity, _request(tools=()), "p", S)
    assert events == [] and side.session is main.session and side.call.turn is main.call.turn
    assert side.call.auxiliary
    other_client = Identity("fp-title", "fingerprint", False, "fp-x", None, "Other", True)
    elsewhere, _ = t.call_started(3, other_client, _request(tools=()), "p", S)
    assert elsewhere.session is not main.session


def test_turn_opened_by_side_calls_alone_ends_after_the_grace_time():
    t = tr.SessionTracker(idle_ns=300 * S)
    place, _ = t.call_started(1, _identity(aux=True), _request(tools=()), "p", 0)
    t.call_finished(1, _record(), S)
    assert t.expire(S + tr.SIDE_TURN_GRACE_NS - 1) == []
    (ended,) = t.expire(S + tr.SIDE_TURN_GRACE_NS)
    assert ended.turn is place.call.turn and ended.turn.ended_ns == S


def test_subagent_turn_nests_under_the_tool_run_that_started_it():
    t = tr.SessionTracker(idle_ns=300 * S)
    t.call_started(1, _identity(), _request(), "p", 0)
    (task,) = t.call_finished(1, _record(ToolCall("t1", "Task")), S)
    sub, events = t.call_started(2, _identity(agent="sub", parent="main"), _request(), "p", 2 * S)
    assert _kinds(events) == ["TurnStarted"] and sub.call.turn.spawned_by is task.tool
    (sub_ended,) = t.call_finished(2, _record(), 3 * S)
    assert sub_ended.turn is sub.call.turn
    _, events = t.call_started(3, _identity(), _request(results=[ToolResult("t1")]), "p", 4 * S)
    assert _kinds(events) == ["ToolFinished"]
    (main_ended,) = t.call_finished(3, _record(), 5 * S)
    assert sub.call.turn in main_ended.turn.items and main_ended.turn.ended_ns == 5 * S


def test_without_history_a_long_session_holds_no_calls_and_no_ended_turns():
    t = tr.SessionTracker(idle_ns=300 * S, keep_history=False)
    for n in range(0, 3000, 3):  # a thousand prompts, each a tool call and its answer, and a side call
        t.call_started(n, _identity(), _request(), "p", n * S)
        t.call_finished(n, _record(ToolCall(f"c{n}", "Read")), n * S + 1)
        t.call_started(n + 1, _identity(), _request(results=[ToolResult(f"c{n}")]), "p", n * S + 2)
        t.call_started(n + 2, _identity(agent="title", aux=True), _request(tools=()), "p", n * S + 3)
        t.call_finished(n + 2, _record(), n * S + 4)
        t.call_finished(n + 1, ChatRecord(request=ChatRequest(), status=200, response_id=f"r{n}"), n * S + 5)
    (session,) = t.sessions.values()
    assert (session.calls, session.turns) == (3000, 1000)
    (agent,) = session.all_agents
    assert agent.turn is None and not agent.turns and not agent.last_turn.items
    assert len(session.response_ids) == tr.KEPT_RESPONSES


def test_with_history_the_tree_keeps_each_turns_calls_and_tool_runs():
    t = tr.SessionTracker(idle_ns=300 * S)
    t.call_started(1, _identity(), _request(), "p", 0)
    t.call_finished(1, _record(ToolCall("c1", "Read")), S)
    t.call_started(2, _identity(), _request(results=[ToolResult("c1")]), "p", 2 * S)
    t.call_finished(2, _record(), 3 * S)
    (turn,) = t.sessions["s1"].main.turns
    assert [type(i).__name__ for i in turn.items] == ["CallNode", "ToolRun", "CallNode"]
    assert all(i.record is not None for i in turn.items if isinstance(i, st.CallNode))
