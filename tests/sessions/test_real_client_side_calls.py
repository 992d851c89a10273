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

import pytest

from llm_gateway.protocols.exchange import ChatRecord, ChatRequest, ToolCall, ToolResult
from llm_gateway.sessions import tracker as tr
from llm_gateway.sessions.identity import Identity

MS = 1_000_000
CLIENT = "Gemini CLI"
ROUTER = Identity("fp-router", "fingerprint", False, "fp-router-agent", None, CLIENT, True)
MAIN = Identity("fp-main", "fingerprint", False, "fp-main-agent", None, CLIENT, False)
CHECK = Identity("fp-check", "fingerprint", False, "fp-check-agent", None, CLIENT, True)
TOOLS = ["read_file", "list_directory"]


def _record(*calls: ToolCall) -> ChatRecord:
    return ChatRecord(request=ChatRequest(), status=200, input_tokens=100, output_tokens=5, tool_calls=list(calls))


@pytest.mark.xfail(strict=True, reason="a side call before any main call, under a fingerprint of its own, opens a "
                                       "session of its own: the main call's fingerprint then opens another")
def test_router_call_before_the_first_main_call_joins_the_session_and_turn_the_main_call_opens() -> None:
    t = tr.SessionTracker(idle_ns=300_000 * MS)
    router, _ = t.call_started(1, ROUTER, ChatRequest(model="gemini-3.5-flash-lite"), "gcp.gemini", 0)
    t.call_finished(1, _record(), 5 * MS)
    main, _ = t.call_started(2, MAIN, ChatRequest(model="gemini-3.8-flash", tool_names=TOOLS, prompt_ordinal=1),
                             "gcp.gemini", 10 * MS)
    assert main.session is router.session and main.call.turn is router.call.turn
    assert list(t.sessions) == [main.session.key]
    assert router.call.auxiliary


@pytest.mark.xfail(strict=True, reason="a side call after the final answer ended the turn opens a turn of its own")
def test_next_speaker_check_after_the_final_answer_is_an_auxiliary_call_of_the_turn_it_followed() -> None:
    t = tr.SessionTracker(idle_ns=300_000 * MS)
    main, _ = t.call_started(1, MAIN, ChatRequest(model="gemini-3.8-flash", tool_names=TOOLS, prompt_ordinal=1),
                             "gcp.gemini", 0)
    t.call_finished(1, _record(ToolCall("c1", "read_file", '{"file_path": "notes.txt"}')), 10 * MS)
    t.call_started(2, MAIN, ChatRequest(model="gemini-3.8-flash", tool_names=TOOLS, tool_results=[ToolResult("c1")],
                                        continues_tool_loop=True, prompt_ordinal=1), "gcp.gemini", 300 * MS)
    (ended,) = t.call_finished(2, _record(), 310 * MS)
    assert isinstance(ended, tr.TurnFinished)  # the final answer: the turn is over
    check, events = t.call_started(3, CHECK, ChatRequest(model="gemini-3-flash-preview"), "gcp.gemini", 320 * MS)
    assert check.session is main.session
    assert check.call.turn is main.call.turn and check.call.auxiliary
    assert not [e for e in events if isinstance(e, tr.TurnStarted)]


@pytest.mark.xfail(strict=True, reason="the auxiliary flag is decided when the call starts, before any agent of the "
                                       "session offered tools")
def test_title_call_before_the_first_main_call_of_a_named_session_is_auxiliary() -> None:
    """opencode 1.18: a new session's title call (small model, no tools, the session's own id) starts before the main
    loop's first call."""
    t = tr.SessionTracker(idle_ns=300_000 * MS)
    title_identity = Identity("ses_1", "x-session-affinity", True, "fp-title", None, "opencode", True)
    main_identity = Identity("ses_1", "x-session-affinity", True, "fp-build", None, "opencode", False)
    title, _ = t.call_started(1, title_identity, ChatRequest(model="claude-haiku-4-5"), "anthropic", 0)
    main, _ = t.call_started(2, main_identity, ChatRequest(model="claude-sonnet-4-5", tool_names=["read"]),
                             "anthropic", 1 * MS)
    assert main.call.turn is title.call.turn and not main.call.auxiliary
    assert title.call.auxiliary
