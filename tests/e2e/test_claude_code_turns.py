"""Real Claude Code, two turns of one session (`claude -p`, then `claude -p --resume` of that session), through the
gateway against the scripted local upstream (`tests/support/fake_anthropic.py`), spans read back from the OTLP
receiver. Issue 14's done-when: one trace; each turn's `invoke_agent` exported within the batch delay after the
turn ended, while the session is still open; once the session ended no span points at a parent never exported;
only chat spans carry `gen_ai.usage.*`; every span carries `session.id`. Expectations come from what the upstream
answered."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from pathlib import Path

import pytest

from llm_gateway.config import Settings
from llm_gateway.server import Gateway
from tests.support.fake_anthropic import FakeAnthropic
from tests.support.npm_clients import CLAUDE_CODE, installed
from tests.support.otlp import OTLPReceiver, ReceivedSpan
from tests.support.servers import LOOPBACK, running_upstream

BATCH_DELAY_MS = 100
#: the turn must be at the receiver this soon after the agent's process exited (batch delay plus the pipe's hop)
EXPORTED_WITHIN_S = 3.0


async def _claude(claude: Path, gateway: Gateway, home: Path, *args: str) -> None:
    env = {"PATH": os.environ["PATH"], "HOME": str(home), "ANTHROPIC_BASE_URL": gateway.url,
           "ANTHROPIC_API_KEY": "sk-test", "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1"}
    process = await asyncio.create_subprocess_exec(
        str(claude), "-p", *args, "--allowedTools", "Read", cwd=home, env=env, stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode == 0, err.decode()
    assert out.decode().strip() == "Done."


def _named(spans: list[ReceivedSpan], prefix: str) -> list[ReceivedSpan]:
    return [s for s in spans if s.name.startswith(prefix)]


async def test_two_turns_of_claude_code_are_one_trace_with_each_turn_exported_when_it_ended(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    claude = installed(CLAUDE_CODE, ".bin/claude")
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", str(BATCH_DELAY_MS))
    home = tmp_path / "home"
    home.mkdir()
    (home / "notes.txt").write_text("the file Claude Code reads\n")
    fake = FakeAnthropic(read_path=str(home / "notes.txt"))
    receiver = await OTLPReceiver().start()
    try:
        async with running_upstream(fake.handle) as upstream:
            env = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint, "OTEL_SERVICE_NAME": "llm-gateway-test"}
            gateway = await Gateway.start(Settings(host=LOOPBACK, port=0, upstreams={"anthropic": upstream}), env)
            try:
                await _claude(claude, gateway, home, "read notes.txt")
                turn_ended = time.monotonic()
                spans = await receiver.wait_for(lambda s: len(_named(s, "invoke_agent ")) == 1, EXPORTED_WITHIN_S)
                assert time.monotonic() - turn_ended < EXPORTED_WITHIN_S
                assert not _named(spans, "session ")  # the session is still open: only the turn is done
                session_id = fake.answers[0].headers["X-Claude-Code-Session-Id"]
                await _claude(claude, gateway, home, "--resume", session_id, "read it again")
                turn_ended = time.monotonic()
                await receiver.wait_for(lambda s: len(_named(s, "invoke_agent ")) == 2, EXPORTED_WITHIN_S)
                assert time.monotonic() - turn_ended < EXPORTED_WITHIN_S
            finally:
                await gateway.stop()  # the session ends: its root span goes out
        spans = await receiver.wait_for(lambda s: bool(_named(s, "session ")))
    finally:
        await receiver.stop()

    (session,) = _named(spans, "session ")
    turns = sorted(_named(spans, "invoke_agent "), key=lambda s: s.start_ns)
    chats = sorted(_named(spans, "chat "), key=lambda s: s.start_ns)
    assert {a.headers["X-Claude-Code-Session-Id"] for a in fake.answers} == {session_id}
    assert {s.trace_id for s in spans} == {session.trace_id}
    assert [t.parent_id for t in turns] == [session.span_id] * 2
    assert [t.attributes["llm_gateway.turn.number"] for t in turns] == [1, 2]
    exported = {s.span_id for s in spans}
    assert all(s.parent_id is None or s.parent_id in exported for s in spans)
    assert all(s.attributes.get("session.id") == session_id for s in spans)

    # One chat span per model call the upstream answered, each with the usage it sent (input counts the cache).
    assert len(chats) == len(fake.answers)
    for chat, answer in zip(chats, fake.answers, strict=True):
        assert chat.attributes["gen_ai.usage.input_tokens"] == answer.input_tokens + answer.cache_read
        assert chat.attributes["gen_ai.usage.output_tokens"] == answer.output_tokens
    assert [s for s in spans if any(k.startswith("gen_ai.usage.") for k in s.attributes)] == chats
    total_in = sum(a.input_tokens + a.cache_read for a in fake.answers)
    assert session.attributes["llm_gateway.usage.input_tokens"] == total_in
    assert sum(t.attributes["llm_gateway.usage.input_tokens"] for t in turns) == total_in

    # Each turn: the Read the model asked for, between the call that asked and the call that carried its result.
    tools = sorted(_named(spans, "execute_tool "), key=lambda s: s.start_ns)
    assert [t.attributes["gen_ai.tool.call.id"] for t in tools] == [a.tool_use_id for a in fake.answers
                                                                     if a.tool_use_id]
    assert [t.parent_id for t in tools] == [turn.span_id for turn in turns]
    assert all(t.attributes["llm_gateway.tool.outcome"] == "ok" for t in tools)
    for turn in turns:
        own = [c for c in chats if c.parent_id == turn.span_id]
        assert turn.end_ns == max(c.end_ns for c in own)  # ended with its final answer
