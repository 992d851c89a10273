"""Session and agent identity from what clients really send (facts: shared/clients.md)."""

from __future__ import annotations

import orjson
from multidict import CIMultiDict

from llm_gateway.protocols.exchange import ChatRequest, fingerprint, fingerprints
from llm_gateway.sessions.identity import client_name, identify


def _headers(**items: str) -> CIMultiDict[str]:
    return CIMultiDict({k.replace("_", "-"): v for k, v in items.items()})


def test_claude_code_header_names_the_session_and_agent_headers_name_the_subagent():
    headers = _headers(user_agent="claude-cli/2.1.331 (external, sdk-cli)", x_claude_code_session_id="S1",
                       x_claude_code_agent_id="A2", x_claude_code_parent_agent_id="A1")
    who = identify(headers, ChatRequest(tool_names=["Read"]))
    assert (who.session_key, who.explicit, who.client) == ("S1", True, "Claude Code")
    assert (who.agent_key, who.parent_agent_key) == ("A2", "A1")


def test_claude_code_user_id_json_and_legacy_forms_give_the_session():
    json_form = orjson.dumps({"device_id": "d", "account_uuid": "", "session_id": "S-json"}).decode()
    legacy = "user_abc_account__session_1b2c3d4e-0000-4000-8000-000000000000"
    for user_id, expected in ((json_form, "S-json"), (legacy, "1b2c3d4e-0000-4000-8000-000000000000")):
        who = identify(_headers(), ChatRequest(hints={"user_id": user_id}))
        assert who.session_key == expected


def test_codex_session_header_and_subagent_label():
    headers = _headers(user_agent="codex_exec/0.169.0", session_id="T1", x_openai_subagent="review")
    who = identify(headers, ChatRequest())
    assert (who.session_key, who.agent_key, who.client) == ("T1", "subagent:review", "Codex")


def test_kiro_conversation_id_wins_and_names_kiro_agent():
    headers = _headers(user_agent="aws-sdk-rust/1.3.16 ua/2.1 md/appVersion-2.4.1 app/AmazonQ-For-CLI")
    who = identify(headers, ChatRequest(hints={"conversation_id": "c-1", "origin": "KIRO_CLI"}))
    assert (who.session_key, who.client) == ("c-1", "Kiro Agent")


def test_no_id_falls_back_to_a_stable_fingerprint_of_the_conversation():
    a = identify(_headers(user_agent="OpenAI/Python 1"), ChatRequest(conversation_fingerprint="f1"))
    b = identify(_headers(user_agent="OpenAI/Python 1"), ChatRequest(conversation_fingerprint="f1"))
    c = identify(_headers(user_agent="OpenAI/Python 1"), ChatRequest(conversation_fingerprint="f2"))
    assert a.session_key == b.session_key != c.session_key
    assert not a.explicit and a.session_source == "fingerprint"


def test_configured_agent_name_overrides_the_client_name():
    assert identify(_headers(), ChatRequest(), agent_name="My Bot").client == "My Bot"
    assert client_name(_headers(user_agent="GeminiCLI/0.9/gemini-2.5-pro"), ChatRequest()) == "Gemini CLI"


def test_gemini_cli_is_named_by_both_user_agent_forms():
    # 0.61's own User-Agent, as tests/e2e/test_gemini_cli.py records it from the real CLI
    for user_agent in ("GeminiCLI/0.9/gemini-2.5-pro", "GeminiCLI-tui/0.61.0/gemini-3.8-flash (linux; x64; terminal)"):
        assert client_name(_headers(user_agent=user_agent), ChatRequest()) == "Gemini CLI"


def test_a_known_agent_is_agentic_even_when_renamed_and_an_sdk_is_not():
    agent = identify(_headers(user_agent="opencode/1.18.0"), ChatRequest(), agent_name="My Bot")
    sdk = identify(_headers(user_agent="OpenAI/Python 1"), ChatRequest())
    unknown = identify(_headers(user_agent="my-script/2"), ChatRequest())
    assert (agent.client, agent.agentic) == ("My Bot", True)
    assert not sdk.agentic and not unknown.agentic


def test_the_two_fingerprints_of_a_request_are_those_of_their_parts_read_apart():
    """`fingerprints` reads the system prompt once for both; the keys it gives must not move (a session's trace id
    derives from them across restarts)."""
    system = "You are a coding agent." * 1000
    for first, conversation, agent in ((system, "fix the bug", ["Read", "Edit"]), (None, "", []),
                                       ("s", ["x", "y"], ("a",))):
        assert fingerprints(first, conversation, agent) == (fingerprint(first, conversation),
                                                            fingerprint(first, agent))
    assert fingerprint(system, "fix the bug") != fingerprint(system, "fix the tests")
