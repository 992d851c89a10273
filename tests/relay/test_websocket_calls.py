"""The model calls inside a relayed WebSocket (issue 17): traced, recorded and replayed, whatever the framing.

The recorded Codex 0.169 socket (`fixtures/websocket/`) is served by the replay upstream and played through the
gateway by the demo's client; spans come back over OTLP, recordings are read back from disk."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import aiohttp
import orjson
import pytest
from aiohttp import WSMsgType, web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llm_gateway.config import Settings
from llm_gateway.demo import play
from llm_gateway.recordings import Fixture, fixture_files, load
from llm_gateway.recordings.replay import ReplayUpstream
from llm_gateway.server import Gateway
from llm_gateway.sessions.state import CallNode, SessionState
from tests.support import FIXTURES
from tests.support.otlp import OTLPReceiver, ReceivedSpan
from tests.support.servers import LOOPBACK, running_gateway, running_upstream
from tests.support.ws_frames import CLOSE, TEXT, MessageReader, encode, fragments

CODEX = FIXTURES / "websocket/codex-0.169-session.json"
_WAIT = 5.0


@asynccontextmanager
async def _traced(upstream: str, receiver: OTLPReceiver, **settings: object) -> AsyncIterator[Gateway]:
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint, "OTEL_SERVICE_NAME": "llm-gateway-test"}
    gateway = await Gateway.start(Settings(host=LOOPBACK, port=0, upstreams={"openai": upstream}, **settings), env)
    try:
        yield gateway
    finally:
        await gateway.stop()


@pytest.fixture
async def receiver(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[OTLPReceiver]:
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "50")
    r = await OTLPReceiver().start()
    yield r
    await r.stop()


def _named(spans: list[ReceivedSpan], prefix: str) -> list[ReceivedSpan]:
    return sorted((s for s in spans if s.name.startswith(prefix)), key=lambda s: s.start_ns)


async def test_recorded_codex_socket_played_through_the_gateway_gives_a_chat_span_per_call(
    receiver: OTLPReceiver, tmp_path: Path
) -> None:
    fixture = load(CODEX)
    out = io.StringIO()
    async with ReplayUpstream([fixture]) as upstream, _traced(upstream.url, receiver, record_dir=str(tmp_path)) as gw:
        await play(gw.url, fixture, out)
    spans = await receiver.wait_for(lambda s: bool(_named(s, "session ")))

    assert "3 response.create, messages identical" in out.getvalue()
    chats, (tool,), (turn,) = _named(spans, "chat "), _named(spans, "execute_tool "), _named(spans, "invoke_agent ")
    served = [orjson.loads(m.data)["response"] for m in fixture.exchanges[0].messages or ()
              if not m.from_client and b'"response.completed"' in m.data][1:]  # the warm-up makes no call
    assert [c.attributes["gen_ai.response.id"] for c in chats] == [r["id"] for r in served]
    assert [c.attributes["gen_ai.usage.input_tokens"] for c in chats] == [r["usage"]["input_tokens"] for r in served]
    assert [c.attributes["http.response.status_code"] for c in chats] == [200, 200]
    assert all(c.parent_id == turn.span_id for c in chats) and tool.parent_id == turn.span_id
    assert tool.attributes["gen_ai.tool.name"] == "exec_command"
    assert chats[0].start_ns < tool.start_ns < chats[1].start_ns
    assert not [s for s in spans if s.name == "GET"]  # the upgrade is no call: no upstream HTTP span

    # The recording of what was just relayed holds the same messages, and the close the demo's client ended with
    # (Codex had dropped the connection instead).
    (recorded,) = [load(p) for p in fixture_files(tmp_path)]
    assert _messages(recorded) == [*_messages(fixture), (True, CLOSE, (1000).to_bytes(2, "big"))]


def _messages(fixture: Fixture) -> list[tuple[bool, int, bytes]]:
    return [(m.from_client, m.opcode, m.data) for ex in fixture.exchanges for m in ex.messages or ()]


async def _cut_after_created(request: web.BaseRequest) -> web.StreamResponse:
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    await ws.receive()
    await ws.send_str('{"type":"response.created","response":{"id":"resp_cut","model":"gpt-x"}}')
    await ws.close(code=1011, message=b"overloaded")
    return ws


async def test_socket_closed_mid_response_ends_the_call_span_with_error_type(receiver: OTLPReceiver) -> None:
    async with (running_upstream(_cut_after_created) as upstream, _traced(upstream, receiver) as gateway,
                aiohttp.ClientSession() as client, client.ws_connect(gateway.url + "/v1/responses") as ws):
        await ws.send_str('{"type":"response.create","model":"gpt-x","input":"hi","stream":true}')
        messages = [await asyncio.wait_for(ws.receive(), _WAIT) for _ in range(2)]
    spans = await receiver.wait_for(lambda s: bool(_named(s, "chat ")))

    assert [m.type for m in messages] == [WSMsgType.TEXT, WSMsgType.CLOSE] and messages[1].data == 1011
    (chat,) = _named(spans, "chat ")
    assert chat.attributes["error.type"] == "upstream_stream_cut"
    assert "1011 overloaded" in chat.attributes["llm_gateway.error.message"]
    assert chat.attributes["gen_ai.response.id"] == "resp_cut" and chat.status_code == 2


async def test_upgrade_without_response_create_is_no_call(receiver: OTLPReceiver) -> None:
    async def echo(request: web.BaseRequest) -> web.StreamResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for message in ws:
            await ws.send_str(message.data)
        return ws

    async with (running_upstream(echo) as upstream, _traced(upstream, receiver) as gateway,
                aiohttp.ClientSession() as client, client.ws_connect(gateway.url + "/v1/responses") as ws):
        await ws.send_str('{"type":"response.processed","response_id":"r1"}')
        await asyncio.wait_for(ws.receive(), _WAIT)
    await asyncio.sleep(0.3)
    assert receiver.spans == []


async def test_upstream_upgrade_headers_reach_the_client_and_no_extension_is_negotiated(
    servers: AsyncExitStack,
) -> None:
    seen: dict[str, str] = {}

    async def upstream_handler(request: web.BaseRequest) -> web.StreamResponse:
        seen.update(request.headers)
        ws = web.WebSocketResponse(compress=True)  # would accept permessage-deflate if offered
        ws.headers["x-codex-turn-state"] = "sticky-1"
        await ws.prepare(request)
        await ws.send_str("hello")
        await ws.close()
        return ws

    url = await servers.enter_async_context(running_upstream(upstream_handler))
    gateway = await servers.enter_async_context(running_gateway(Settings(upstreams={"openai": url})))
    async with aiohttp.ClientSession() as client, client.ws_connect(gateway.url + "/v1/responses",
                                                                    compress=15) as ws:
        response_headers = ws._response.headers
        message = await asyncio.wait_for(ws.receive(), _WAIT)

    assert response_headers["x-codex-turn-state"] == "sticky-1"
    assert "Sec-WebSocket-Extensions" not in response_headers and ws.compress == 0
    assert "Sec-WebSocket-Extensions" not in seen
    assert message.data == "hello"


# ---------------------------------------------------------------------------------------------------------
# Frame boundaries: the client's messages cut into fragments and its bytes into TCP writes, anywhere


_CLIENT_TEXTS = [m.data for m in load(CODEX).exchanges[0].messages or () if m.from_client]
_UPGRADE = (b"GET /v1/responses HTTP/1.1\r\nHost: gw\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
            b"session-id: 0000-fragments\r\nUser-Agent: codex_exec/0.169.0\r\n\r\n")
# per client message: fragment cuts (offsets into its payload) and TCP write cuts (offsets into its frames' bytes)
_PLANS = st.lists(st.tuples(st.lists(st.integers(1, 40_000), max_size=6), st.lists(st.integers(1, 40_000), max_size=4)),
                  min_size=len(_CLIENT_TEXTS), max_size=len(_CLIENT_TEXTS))


async def _session(plan: list[tuple[list[int], list[int]]], record_dir: Path) -> tuple[list, list, list]:
    """Codex's recorded client side, framed as `plan` says, through a gateway to the replay upstream: the messages
    the upstream received, the messages recorded, and each call's record as the session tracker kept it."""
    finished: list[SessionState] = []
    async with ReplayUpstream([load(CODEX)]) as upstream:
        gateway = await Gateway.start(Settings(host=LOOPBACK, port=0, upstreams={"openai": upstream.url},
                                               record_dir=str(record_dir)), {}, on_session_finished=finished.append)
        try:
            reader, writer = await asyncio.open_connection(LOOPBACK, gateway.port)
            writer.write(_UPGRADE)
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), _WAIT)
            assert head.startswith(b"HTTP/1.1 101")
            frames = MessageReader()
            for payload, (cuts, splits) in zip(_CLIENT_TEXTS, plan, strict=True):
                data = fragments(TEXT, payload, cuts)
                for a, b in zip([0, *sorted(splits)], [*sorted(splits), len(data)], strict=True):
                    writer.write(data[a:b])
                    await writer.drain()
                while not any(b'"response.completed"' in p for _, p in frames.feed(b"")):
                    got = frames.feed(await asyncio.wait_for(reader.read(65536), _WAIT))
                    if any(b'"response.completed"' in p for _, p in got):
                        break
            writer.write(encode(CLOSE, (1000).to_bytes(2, "big")))
            while await asyncio.wait_for(reader.read(65536), _WAIT):
                pass
            writer.close()
        finally:
            await gateway.stop()
    calls = [_call_view(item) for s in finished for a in s.all_agents for t in a.turns for item in t.items
             if isinstance(item, CallNode)]
    recorded = [_messages(load(p)) for p in fixture_files(record_dir)]
    return upstream.messages, recorded, calls


def _call_view(call: CallNode) -> tuple:
    record = call.record
    assert record is not None
    return (record.response_id, record.status, record.input_tokens, record.output_tokens, record.finish_reasons,
            [(c.call_id, c.name, c.arguments) for c in record.tool_calls], record.request.tool_results,
            record.request.prompt_ordinal, record.error_type, record.parse_issues)


_BASELINE: list[tuple[list, list, list]] = []


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(plan=_PLANS)
def test_frame_boundaries_and_fragmented_messages_never_change_the_record(
    plan: list[tuple[list[int], list[int]]], tmp_path_factory: pytest.TempPathFactory
) -> None:
    if not _BASELINE:
        _BASELINE.append(asyncio.run(_session([([], [])] * len(_CLIENT_TEXTS), tmp_path_factory.mktemp("whole"))))
    received, recorded, calls = asyncio.run(_session(plan, tmp_path_factory.mktemp("cut")))
    assert (received, recorded, calls) == _BASELINE[0]
    assert [data for _, data in received[:len(_CLIENT_TEXTS)]] == _CLIENT_TEXTS
    assert len(calls) == 2
