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
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp import web

from llm_gateway.config import Settings
from llm_gateway.server import Gateway
from tests.support.fake_responses import CALL_ID, Answer, FakeResponses
from tests.support.npm_clients import CODEX, installed
from tests.support.otlp import OTLPReceiver, ReceivedSpan
from tests.support.servers import LOOPBACK, running_upstream

PROMPTS = (("read notes.txt",), ("resume", "--last", "read it again"))


@dataclass(frozen=True, slots=True)
class Run:
    spans: list[ReceivedSpan]
    prompts: list[list[Answer]]  # the model calls each prompt made, as the upstream answered them
    session_ids: set[str]  # the `session-id` header of every call

    def named(self, prefix: str) -> list[ReceivedSpan]:
        return sorted((s for s in self.spans if s.name.startswith(prefix)), key=lambda s: s.start_ns)


async def _codex(codex: Path, home: Path, work: Path, *args: str) -> None:
    env = {"PATH": os.environ["PATH"], "HOME": str(home), "CODEX_HOME": str(home / ".codex"),
           "OPENAI_API_KEY": "sk-test"}
    process = await asyncio.create_subprocess_exec(
        str(codex), "exec", "--skip-git-repo-check", *args, cwd=work, env=env, stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode == 0, err.decode()[-3000:]
    assert out.decode().strip().endswith("Done.")


async def _run(codex: Path, tmp: Path) -> Run:
    home, work = tmp / "home", tmp / "work"
    (home / ".codex").mkdir(parents=True)
    work.mkdir()
    (work / "notes.txt").write_text("the file Codex reads\n")
    fake = FakeResponses(read_path="notes.txt")
    session_ids: set[str] = set()

    async def handle(request: web.BaseRequest) -> web.StreamResponse:
        session_ids.add(request.headers.get("session-id", ""))
        return await fake.handle(request)

    prompts: list[list[Answer]] = []
    receiver = await OTLPReceiver().start()
    try:
        async with running_upstream(handle) as upstream:
            env = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint, "OTEL_SERVICE_NAME": "llm-gateway-test",
                   "OTEL_BSP_SCHEDULE_DELAY": "100"}
            gateway = await Gateway.start(Settings(host=LOOPBACK, port=0, upstreams={"openai": upstream}), env)
            (home / ".codex" / "config.toml").write_text(
                'model = "gpt-fake"\nmodel_provider = "gw"\n[model_providers.gw]\nname = "gateway"\n'
                f'base_url = "{gateway.url}/v1"\nwire_api = "responses"\nenv_key = "OPENAI_API_KEY"\n'
                "supports_websockets = false\n")
            try:
                for args in PROMPTS:
                    before = len(fake.answers)
                    await _codex(codex, home, work, *args)
                    prompts.append(fake.answers[before:])
            finally:
                await gateway.stop()  # the session ends: everything is exported
        await receiver.wait_for(lambda s: any(x.name.startswith("session ") for x in s))
        await asyncio.sleep(0.5)  # any span of a second session comes in the same flush
        spans = list(receiver.spans)
    finally:
        await receiver.stop()
    assert not fake.other_requests
    return Run(spans, prompts, session_ids)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    codex = installed(CODEX, ".bin/codex")
    return asyncio.run(_run(codex, tmp_path_factory.mktemp("codex")))


def test_one_trace_a_turn_per_prompt_and_a_chat_span_per_model_call(run: Run) -> None:
    assert [[a.tool_call_id for a in p] for p in run.prompts] == [[CALL_ID, None]] * 2
    assert all(a.transport == "http" for p in run.prompts for a in p)
    (session_id,) = run.session_ids
    (session,) = run.named("session ")
    assert session.name == "session Codex"
    assert {s.trace_id for s in run.spans} == {session.trace_id}
    assert all(s.attributes["session.id"] == session_id for s in run.spans)
    turns = run.named("invoke_agent ")
    assert [t.parent_id for t in turns] == [session.span_id] * 2
    chats = run.named("chat ")
    assert [c.attributes["gen_ai.response.id"] for c in chats] == [a.response_id for p in run.prompts for a in p]
    for turn, prompt in zip(turns, run.prompts, strict=True):
        own = [c for c in chats if c.parent_id == turn.span_id]
        assert [c.attributes["gen_ai.response.id"] for c in own] == [a.response_id for a in prompt]
        assert [c.attributes["gen_ai.usage.input_tokens"] for c in own] == [a.usage["input_tokens"] for a in prompt]
        assert turn.attributes["llm_gateway.usage.input_tokens"] == sum(a.usage["input_tokens"] for a in prompt)
        (tool,) = [t for t in run.named("execute_tool ") if t.parent_id == turn.span_id]
        assert (tool.attributes["gen_ai.tool.call.id"], tool.attributes["llm_gateway.tool.outcome"]) == (CALL_ID, "ok")
    assert not [c for c in chats if c.attributes.get("llm_gateway.call.auxiliary")]
