"""Side-call patterns real CLIs make (seen through the gateway in tests/e2e), replayed on the tracker as plain values.

Gemini CLI 0.61 with an API key sends no session id, so each call is keyed by its fingerprint (client, system
prompt, first user message), and each kind of call has its own: the router's classifier (its own system prompt),
the main loop (the agent's system prompt) and the next-speaker check (no system prompt). Per prompt it makes the
router call (no tools) before the main loop's first call, and, when `model.skipNextSpeakerCheck` is false, the
next-speaker check (no tools; the whole conversation plus a question) after the final answer.

opencode 1.18 names its session (`x-session-affinity`) on every call, and a new session's title call starts before
the main loop's first call.
"""

from __future__ import annotations

from llm_gateway.protocols.exchange import ChatRecord, ChatRequest, ToolCall, ToolResult
from llm_gateway.sessions import state as st
from llm_gateway.sessions import tracker as tr
from llm_gateway.sessions.identity import Identity

MS = 1_000_000
CLIENT = "Gemini CLI"
ROUTER = Identity("fp-router", "fingerprint", False, "fp-router-agent", None, CLIENT, True, agentic=True)
MAIN = Identity("fp-main", "fingerprint", False, "fp-main-agent", None, CLIENT, False, agentic=True)
CHECK = Identity("fp-check", "fingerprint", False, "fp-check-agent", None, CLIENT, True, agentic=True)
TOOLS = ["read_file", "list_directory"]


def _record(*calls: ToolCall) -> ChatRecord:
    return ChatRecord(request=ChatRequest(), status=200, input_tokens=100, output_tokens=5, tool_calls=list(calls))


def test_router_call_before_the_first_main_call_joins_the_session_and_turn_the_main_call_opens() -> None:
    t = tr.SessionTracker(idle_ns=300_000 * MS)
    router, _ = t.call_started(1, ROUTER, ChatRequest(model="gemini-3.5-flash-lite"), "gcp.gemini", 0)
    t.call_finished(1, _record(), 5 * MS)
    main, _ = t.call_started(2, MAIN, ChatRequest(model="gemini-3.8-flash", tool_names=TOOLS, prompt_ordinal=1),
                             "gcp.gemini", 10 * MS)
    assert main.session is router.session and main.call.turn is router.call.turn
    assert list(t.sessions) == [main.session.key]
    assert router.call.auxiliary


def test_next_speaker_check_after_the_final_answer_is_an_auxiliary_call_of_the_turn_it_followed() -> None:
    t = tr.SessionTracker(idle_ns=300_000 * MS)
    main, _ = t.call_started(1, MAIN, ChatRequest(model="gemini-3.8-flash", tool_names=TOOLS, prompt_ordinal=1),
                             "gcp.gemini", 0)
    t.call_finished(1, _record(ToolCall("c1", "read_file", '{"file_path": "notes.txt"}')), 10 * MS)
    t.call_started(2, MAIN, ChatRequest(model="gemini-3.8-flash", tool_names=TOOLS, tool_results=[ToolResult("c1")],
                                        continues_tool_loop=True, prompt_ordinal=1), "gcp.gemini", 300 * MS)
    (ended,) = t.call_finished(2, _record(), 310 * MS)
    assert isinstance(ended, st.TurnFinished)  # the final answer: the turn is over
    check, events = t.call_started(3, CHECK, ChatRequest(model="gemini-3-flash-preview"), "gcp.gemini", 320 * MS)
    assert check.session is main.session
    assert check.call.turn is main.call.turn and check.call.auxiliary
    assert not [e for e in events if isinstance(e, st.TurnStarted)]


def test_title_call_before_the_first_main_call_of_a_named_session_is_auxiliary() -> None:
    """opencode 1.18: a new session's title call (small model, no tools, the session's own id) starts before the main
    loop's first call."""
    t = tr.SessionTracker(idle_ns=300_000 * MS)
    title_identity = Identity("ses_1", "x-session-affinity", True, "fp-title", None, "opencode", True, agentic=True)
    main_identity = Identity("ses_1", "x-session-affinity", True, "fp-build", None, "opencode", False, agentic=True)
    title, _ = t.call_started(1, title_identity, ChatRequest(model="claude-haiku-4-5"), "anthropic", 0)
    main, _ = t.call_started(2, main_identity, ChatRequest(model="claude-sonnet-4-5", tool_names=["read"]),
                             "anthropic", 1 * MS)
    assert main.call.turn is title.call.turn and not main.call.auxiliary
    assert title.call.auxiliary


def _gemini_prompt(t: tr.SessionTracker, first_id: int, at_ms: int, ordinal: int) -> list[st.Placement]:
    """One Gemini CLI prompt: router call, tool call, final answer, next-speaker check (the e2e test's order)."""
    router, _ = t.call_started(first_id, ROUTER, ChatRequest(model="gemini-3.5-flash-lite"), "gcp.gemini",
                               at_ms * MS)
    t.call_finished(first_id, _record(), (at_ms + 5) * MS)
    tool, _ = t.call_started(first_id + 1, MAIN, ChatRequest(tool_names=TOOLS, prompt_ordinal=ordinal), "gcp.gemini",
                             (at_ms + 10) * MS)
    t.call_finished(first_id + 1, _record(ToolCall(f"c{first_id}", "read_file")), (at_ms + 20) * MS)
    answer, _ = t.call_started(first_id + 2, MAIN, ChatRequest(tool_names=TOOLS, tool_results=[
        ToolResult(f"c{first_id}")], continues_tool_loop=True, prompt_ordinal=ordinal), "gcp.gemini",
                               (at_ms + 300) * MS)
    t.call_finished(first_id + 2, _record(), (at_ms + 310) * MS)
    check, _ = t.call_started(first_id + 3, CHECK, ChatRequest(), "gcp.gemini", (at_ms + 320) * MS)
    t.call_finished(first_id + 3, _record(), (at_ms + 330) * MS)
    return [router, tool, answer, check]


def test_two_gemini_prompts_are_two_turns_of_one_session_each_with_its_side_calls() -> None:
    t = tr.SessionTracker(idle_ns=300_000 * MS)
    first = _gemini_prompt(t, 1, 0, 1)
    second = _gemini_prompt(t, 11, 5_000, 2)  # the user typed the next prompt 5 s later
    assert len(t.sessions) == 1
    for placements, number in ((first, 1), (second, 2)):
        assert {p.session.key for p in placements} == {"fp-router"}
        assert {p.call.turn.number for p in placements} == {number}
        assert [p.call.auxiliary for p in placements] == [True, False, False, True]


def test_a_side_call_after_the_afterword_window_opens_the_next_turn() -> None:
    t = tr.SessionTracker(idle_ns=300_000 * MS)
    (_, _, answer, _) = _gemini_prompt(t, 1, 0, 1)
    ended = answer.call.turn.ended_ns
    late, events = t.call_started(9, CHECK, ChatRequest(), "gcp.gemini", ended + tr.AFTERWORD_NS + 1)
    assert late.call.turn is not answer.call.turn and late.call.turn.number == 2
    assert [type(e) for e in events] == [st.TurnStarted]


def test_a_session_only_side_calls_opened_is_not_taken_over_once_its_turn_gave_up_waiting() -> None:
    t = tr.SessionTracker(idle_ns=300_000 * MS)
    router, _ = t.call_started(1, ROUTER, ChatRequest(), "gcp.gemini", 0)
    t.call_finished(1, _record(), 5 * MS)
    t.expire(5 * MS + tr.SIDE_TURN_GRACE_NS)
    main, _ = t.call_started(2, MAIN, ChatRequest(tool_names=TOOLS, prompt_ordinal=1), "gcp.gemini",
                             6 * MS + tr.SIDE_TURN_GRACE_NS)
    assert main.session is not router.session and main.session.key == "fp-main"


def test_a_tool_less_call_of_an_sdk_is_a_main_call_not_an_auxiliary_one() -> None:
    t = tr.SessionTracker(idle_ns=300_000 * MS)
    sdk = Identity("fp-chat", "fingerprint", False, "fp-chat-agent", None, "OpenAI SDK", True)
    chat, _ = t.call_started(1, sdk, ChatRequest(model="gpt-5"), "openai", 0)
    assert not chat.call.auxiliary
