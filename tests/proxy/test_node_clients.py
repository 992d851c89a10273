"""Node clients through the gateway as their HTTPS proxy, trusting its CA with NODE_EXTRA_CA_CERTS as the docs say:
Node's fetch (undici) with a ProxyAgent, and real Claude Code with HTTPS_PROXY and no base URL, against a local
fake Messages upstream reached through the `anthropic` upstream override. Both come from the npm registry, pinned,
installed once into `.proxy-clients/` (gitignored) at the repository root."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from contextlib import AsyncExitStack
from pathlib import Path

import pytest
from aiohttp import web

from tests.proxy.conftest import Proxied, ProxiedGateway
from tests.support.chat_spans import chat_spans, spans_named
from tests.support.npm_clients import CLAUDE_CODE, installed
from tests.support.otlp import OTLPReceiver
from tests.support.servers import RecordingUpstream, running_upstream

UNDICI = {"undici": "7.30.2"}  # 7.x still runs on Node 20

FETCH_SCRIPT = """
const { ProxyAgent, fetch } = require(process.argv[2]);
(async () => {
  const response = await fetch(process.argv[3], {
    method: "POST", body: process.argv[4],
    headers: { "content-type": "application/json", "authorization": "Bearer sk-node" },
    dispatcher: new ProxyAgent(process.env.HTTPS_PROXY),
  });
  process.stdout.write(JSON.stringify({ status: response.status, body: await response.text() }));
})().catch((error) => { console.error(String(error), String(error.cause)); process.exit(3); });
"""


async def run(*command: str, env: dict[str, str], cwd: Path | None = None) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(*command, env=env, cwd=cwd, stdout=subprocess.PIPE,
                                                   stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    out, err = await asyncio.wait_for(process.communicate(), 120)
    return process.returncode or 0, out.decode(), err.decode()


def node_env(proxied: Proxied, home: Path) -> dict[str, str]:
    return {"PATH": os.environ["PATH"], "HOME": str(home), "HTTPS_PROXY": proxied.url,
            "NODE_EXTRA_CA_CERTS": str(proxied.ca)}


async def test_node_fetch_through_undici_proxy_agent(servers: AsyncExitStack, proxied_gateway: ProxiedGateway,
                                                     tmp_path: Path) -> None:
    undici = installed(UNDICI, "undici")
    upstream = RecordingUpstream(body=b'{"id":"chatcmpl-node"}')
    url = await servers.enter_async_context(running_upstream(upstream.handle))
    proxied = await servers.enter_async_context(proxied_gateway(url))
    script = tmp_path / "fetch.cjs"
    script.write_text(FETCH_SCRIPT)
    body = '{"model":"gpt-test","messages":[{"role":"user","content":"h\\u00e9"}]}'
    code, out, err = await run("node", str(script), str(undici), "https://api.openai.com/v1/chat/completions", body,
                               env=node_env(proxied, tmp_path))
    assert code == 0, err
    assert json.loads(out) == {"status": 200, "body": '{"id":"chatcmpl-node"}'}
    assert upstream.arrived[0].body == body.encode()
    assert upstream.arrived[0].values("authorization") == ["Bearer sk-node"]


class MessagesUpstream:
    """Answers every Messages call with one streamed text; anything else with a 404 JSON error."""

    TEXT = "Done through the proxy."

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []  # (path and query, User-Agent)
        self.others: list[str] = []

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        body = await request.read()
        if request.method != "POST" or request.path != "/v1/messages":
            self.others.append(f"{request.method} {request.path}")
            return web.json_response({"type": "error", "error": {"type": "not_found_error", "message": "no"}},
                                     status=404)
        self.calls.append((request.path_qs, request.headers.get("User-Agent", "")))
        model = json.loads(body).get("model", "claude")
        usage = {"input_tokens": 12, "output_tokens": 1}
        events = [
            ("message_start", {"type": "message_start", "message": {
                "id": f"msg_{len(self.calls)}", "type": "message", "role": "assistant", "model": model, "content": [],
                "stop_reason": None, "stop_sequence": None, "usage": usage}}),
            ("content_block_start", {"type": "content_block_start", "index": 0,
                                     "content_block": {"type": "text", "text": ""}}),
            ("content_block_delta", {"type": "content_block_delta", "index": 0,
                                     "delta": {"type": "text_delta", "text": self.TEXT}}),
            ("content_block_stop", {"type": "content_block_stop", "index": 0}),
            ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                               "usage": {"output_tokens": 6}}),
            ("message_stop", {"type": "message_stop"}),
        ]
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for name, data in events:
            await response.write(f"event: {name}\ndata: {json.dumps(data)}\n\n".encode())
        await response.write_eof()
        return response


async def test_claude_code_with_https_proxy_and_no_base_url_is_traced(
        servers: AsyncExitStack, proxied_gateway: ProxiedGateway, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    claude = installed(CLAUDE_CODE, ".bin/claude")
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "50")
    receiver = await OTLPReceiver().start()
    servers.push_async_callback(receiver.stop)
    upstream = MessagesUpstream()
    url = await servers.enter_async_context(running_upstream(upstream.handle))
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint, "OTEL_SERVICE_NAME": "llm-gateway-test"}
    async with proxied_gateway(url, env=env) as proxied:
        home = tmp_path / "home"
        home.mkdir()
        agent_env = node_env(proxied, home) | {"ANTHROPIC_API_KEY": "sk-ant-test",
                                               "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
                                               "DISABLE_AUTOUPDATER": "1"}
        code, out, err = await run(str(claude), "-p", "say hi", env=agent_env, cwd=home)
    assert code == 0, err
    assert out.strip() == MessagesUpstream.TEXT
    assert upstream.calls and all(path.startswith("/v1/messages") for path, _ in upstream.calls)
    assert upstream.calls[-1][1].startswith("claude-cli/")
    spans = await receiver.wait_for(lambda s: bool(spans_named(s, "session ")))
    chats = chat_spans(spans)
    assert len(chats) == len(upstream.calls)
    assert {c.attributes["server.port"] for c in chats} == {int(url.rsplit(":", 1)[1])}

