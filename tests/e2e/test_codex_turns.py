"""Real Codex 0.169 (npm, pinned), two prompts of one session (`codex exec`, then `codex exec resume --last`), over
HTTP (`wire_api = "responses"`, `supports_websockets = false`: the WebSocket transport has tests of its own), through
the gateway against the scripted Responses upstream (`tests/support/fake_responses.py`), spans read back from the
OTLP receiver (issue 14, item 4).

What Codex 0.169 sends there: every call names the session (`session-id`, the same after `resume --last`); each
prompt is a tool loop of two calls (an `exec_command` function call, then the call carrying its output), and `exec`
makes no call beside them (no title, no classifier).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from aiohttp import web

from llm_gateway.server import Gateway
from tests.support.cli_runs import CliRun, run_cli, traced_prompts
from tests.support.fake_responses import CALL_ID, Answer, FakeResponses
from tests.support.npm_clients import CODEX, installed

PROMPTS = (("read notes.txt",), ("resume", "--last", "read it again"))


async def _run(codex: Path, tmp: Path) -> tuple[CliRun[Answer], set[str]]:
    """The run, and the `session-id` header of every call."""
    home, work = tmp / "home", tmp / "work"
    (home / ".codex").mkdir(parents=True)
    work.mkdir()
    (work / "notes.txt").write_text("the file Codex reads\n")
    fake = FakeResponses(read_path="notes.txt")
    session_ids: set[str] = set()

    async def handle(request: web.BaseRequest) -> web.StreamResponse:
        session_ids.add(request.headers.get("session-id", ""))
        return await fake.handle(request)

    async def prompt(gateway: Gateway, args: tuple[str, ...]) -> None:
        (home / ".codex" / "config.toml").write_text(
            'model = "gpt-fake"\nmodel_provider = "gw"\n[model_providers.gw]\nname = "gateway"\n'
            f'base_url = "{gateway.url}/v1"\nwire_api = "responses"\nenv_key = "OPENAI_API_KEY"\n'
            "supports_websockets = false\n")
        env = {"HOME": str(home), "CODEX_HOME": str(home / ".codex"), "OPENAI_API_KEY": "sk-test"}
        out = await run_cli([codex, "exec", "--skip-git-repo-check", *args], work, env, timeout=120)
        assert out.strip().endswith("Done.")

    done = await traced_prompts("openai", handle, fake.answers, PROMPTS, prompt)
    assert not fake.other_requests
    return done, session_ids


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[CliRun[Answer], set[str]]:
    codex = installed(CODEX, ".bin/codex")
    return asyncio.run(_run(codex, tmp_path_factory.mktemp("codex")))


def test_one_trace_a_turn_per_prompt_and_a_chat_span_per_model_call(
    run: tuple[CliRun[Answer], set[str]],
) -> None:
    done, session_ids = run
    assert [[a.tool_call_id for a in p] for p in done.prompts] == [[CALL_ID, None]] * 2
    assert all(a.transport == "http" for p in done.prompts for a in p)
    (session_id,) = session_ids
    (session,) = done.named("session ")
    assert session.name == "session Codex"
    assert {s.trace_id for s in done.spans} == {session.trace_id}
    assert all(s.attributes["session.id"] == session_id for s in done.spans)
    turns = done.named("invoke_agent ")
    assert [t.parent_id for t in turns] == [session.span_id] * 2
    chats = done.named("chat ")
    assert [c.attributes["gen_ai.response.id"] for c in chats] == [a.response_id for p in done.prompts for a in p]
    for turn, prompt in zip(turns, done.prompts, strict=True):
        own = [c for c in chats if c.parent_id == turn.span_id]
        assert [c.attributes["gen_ai.response.id"] for c in own] == [a.response_id for a in prompt]
        assert [c.attributes["gen_ai.usage.input_tokens"] for c in own] == [a.usage["input_tokens"] for a in prompt]
        assert turn.attributes["llm_gateway.usage.input_tokens"] == sum(a.usage["input_tokens"] for a in prompt)
        (tool,) = [t for t in done.named("execute_tool ") if t.parent_id == turn.span_id]
        assert (tool.attributes["gen_ai.tool.call.id"], tool.attributes["llm_gateway.tool.outcome"]) == (CALL_ID, "ok")
    assert not [c for c in chats if c.attributes.get("llm_gateway.call.auxiliary")]
