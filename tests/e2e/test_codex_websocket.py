"""Real Codex 0.169 over its default transport, a WebSocket on /v1/responses, through the gateway against a local
scripted Responses upstream that runs a read-a-file tool loop (`tests/support/fake_responses.py`), spans read back
from the OTLP receiver (issue 17).

The same task run over SSE (`supports_websockets = false`) gives the same trace: the same spans (chat, execute_tool,
invoke_agent, session; the WebSocket has no per-call upstream HTTP span, its one upgrade being no call), the same
attributes but for ids and timings, the same token sums, the same tool span, and with content capture the same
conversation on each chat span, though over the WebSocket Codex sends only the new input items each time. A TCP tap
between Codex and the gateway checks that the messages each side received are the ones the other side sent."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
from pathlib import Path

import pytest
from aiohttp import WSMsgType

from llm_gateway.config import Settings
from llm_gateway.server import Gateway
from tests.support.fake_responses import CALL_ID, FINAL_USAGE, TOOL_USAGE, FakeResponses
from tests.support.npm_clients import CODEX, installed
from tests.support.otlp import OTLPReceiver, ReceivedSpan
from tests.support.servers import LOOPBACK, running_upstream
from tests.support.ws_frames import TEXT, FrameTap

#: attributes that differ between two runs of the same task: ids Codex or the upstream make anew, and timings
_PER_RUN = frozenset({"session.id", "gen_ai.conversation.id", "llm_gateway.session.key", "gen_ai.response.id",
                      "gen_ai.response.time_to_first_chunk", "llm_gateway.response.time_to_first_token"})
_PER_RUN_OUTPUT = re.compile(r"(Chunk ID|Wall time): [^\n]*")  # lines of a command's output that differ per run
_GENAI = ("session ", "invoke_agent ", "chat ", "execute_tool ")


def _config(home: Path, base_url: str, websockets: bool) -> None:
    codex_home = home / ".codex"
    codex_home.mkdir(parents=True, exist_ok=True)
    (codex_home / "config.toml").write_text(
        'model = "gpt-fake"\nmodel_provider = "gw"\n[model_providers.gw]\nname = "gateway"\n'
        f'base_url = "{base_url}/v1"\nwire_api = "responses"\nenv_key = "OPENAI_API_KEY"\n'
        f"supports_websockets = {'true' if websockets else 'false'}\n")


async def _codex(codex: Path, home: Path, work: Path) -> None:
    env = {"PATH": os.environ["PATH"], "HOME": str(home), "CODEX_HOME": str(home / ".codex"),
           "OPENAI_API_KEY": "sk-test"}
    process = await asyncio.create_subprocess_exec(
        str(codex), "exec", "--skip-git-repo-check", "read notes.txt", cwd=work, env=env,
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode == 0, err.decode()
    assert out.decode().strip().endswith("Done.")


async def _run(codex: Path, tmp: Path, upstream: str, websockets: bool) -> tuple[list[ReceivedSpan], FrameTap]:
    """One `codex exec` through a gateway of its own; the same home and work directory each time, since Codex
    writes their paths into its prompt."""
    home, work = tmp / "home", tmp / "work"
    work.mkdir(parents=True, exist_ok=True)
    (work / "notes.txt").write_text("the file Codex reads\n")
    receiver = await OTLPReceiver().start()
    try:
        env = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint, "OTEL_SERVICE_NAME": "llm-gateway-test",
               "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "true"}
        gateway = await Gateway.start(Settings(host=LOOPBACK, port=0, upstreams={"openai": upstream}), env)
        tap = await FrameTap((LOOPBACK, gateway.port)).start()
        try:
            _config(home, tap.url if websockets else gateway.url, websockets)
            await _codex(codex, home, work)
        finally:
            await tap.stop()
            await gateway.stop()
        spans = await receiver.wait_for(lambda s: any(x.name.startswith("session ") for x in s))
    finally:
        await receiver.stop()
    return spans, tap


def _genai(spans: list[ReceivedSpan]) -> list[ReceivedSpan]:
    return sorted((s for s in spans if s.name.startswith(_GENAI)), key=lambda s: (s.start_ns, s.name))


def _shape(spans: list[ReceivedSpan]) -> list[tuple[str, str, str | None, dict]]:
    """Each span's name, kind, parent's name and attributes, less what differs from run to run (the id and the wall
    time Codex puts in each tool output too)."""
    names = {s.span_id: s.name for s in spans}
    return [(s.name, s.kind, names.get(s.parent_id or ""),
             {k: _PER_RUN_OUTPUT.sub(r"\1: -", v) if isinstance(v, str) else v
              for k, v in s.attributes.items() if k not in _PER_RUN}) for s in spans]


def _usage(spans: list[ReceivedSpan], key: str) -> int:
    return sum(s.attributes.get(key, 0) for s in spans if s.name.startswith("chat "))


async def test_codex_over_websocket_traces_as_over_sse_and_frames_cross_unchanged(tmp_path: Path) -> None:
    codex = installed(CODEX, ".bin/codex")
    fake = FakeResponses(read_path="notes.txt")
    async with running_upstream(fake.handle) as upstream:
        ws_spans, tap = await _run(codex, tmp_path, upstream, websockets=True)
        sse_spans, _ = await _run(codex, tmp_path, upstream, websockets=False)

    # Codex spoke WebSocket: a warm-up (`generate: false`), then each call chained on the one before it.
    assert [a.transport for a in fake.answers] == ["websocket"] * 2 + ["http"] * 2
    (socket,) = fake.sockets
    creates = [m for kind, m in socket.received if kind is WSMsgType.TEXT and '"response.create"' in m]
    assert len(creates) == 3 and '"generate":false' in creates[0]
    assert all('"previous_response_id"' in m for m in creates[1:])

    # The frames each side received are the ones the other side sent, in order.
    assert [(kind, payload.decode()) for kind, payload in tap.sent() if kind == TEXT] == \
        [(TEXT, data) for kind, data in socket.received if kind is WSMsgType.TEXT]
    assert [(kind, payload.decode()) for kind, payload in tap.received() if kind == TEXT] == \
        [(TEXT, data) for _, data in socket.sent]
    assert socket.headers["OpenAI-Beta"].startswith("responses_websockets=")

    # The same trace over both transports.
    ws, sse = _genai(ws_spans), _genai(sse_spans)
    assert _shape(ws) == _shape(sse)
    chats = [s for s in ws if s.name.startswith("chat ")]
    assert len(chats) == 2
    assert [c.attributes["gen_ai.response.id"] for c in chats] == [a.response_id for a in fake.answers[:2]]
    for key, field in (("gen_ai.usage.input_tokens", "input_tokens"), ("gen_ai.usage.output_tokens", "output_tokens")):
        assert _usage(ws, key) == _usage(sse, key) == TOOL_USAGE[field] + FINAL_USAGE[field]
    (tool,) = [s for s in ws if s.name.startswith("execute_tool ")]
    assert tool.attributes["gen_ai.tool.call.id"] == CALL_ID
    assert tool.attributes["llm_gateway.tool.outcome"] == "ok"
    # the second call's conversation holds the whole history, not just the tool output Codex sent
    assert '"tool_call"' in chats[1].attributes["gen_ai.input.messages"]
    assert "POST" in {s.name for s in sse_spans} and "POST" not in {s.name for s in ws_spans}


@pytest.fixture(autouse=True)
def _fast_export(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "100")
