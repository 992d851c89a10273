"""WebSocket upgrades (Codex opens one on GET /v1/responses) relayed frame by frame, both ways."""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack

import aiohttp
import pytest
from aiohttp import WSMsgType, web

from llm_gateway.config import Settings
from llm_gateway.server import Gateway
from tests.support.servers import running_gateway, running_upstream

_WAIT = 2.0
_TEXT_DOWN = 'data: {"type":"response.created"} ✓'
_BINARY_DOWN = bytes(range(256)) * 3
_SENT_UP = [(WSMsgType.TEXT, "héllo ✓"), (WSMsgType.BINARY, b"\x00\xff\r\n" * 100)]


class WebSocketUpstream:
    """Sends one text and one binary frame, keeps what it receives, and closes with 4001 on "bye"."""

    def __init__(self) -> None:
        self.received: list[tuple[WSMsgType, str | bytes]] = []
        self.headers: dict[str, str] = {}
        self.close_code: int | None = None
        self.closed = asyncio.Event()

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        self.headers = dict(request.headers)
        ws = web.WebSocketResponse(protocols=("openai-realtime",))
        await ws.prepare(request)
        await ws.send_str(_TEXT_DOWN)
        await ws.send_bytes(_BINARY_DOWN)
        async for msg in ws:
            if msg.type is WSMsgType.TEXT and msg.data == "bye":
                await ws.close(code=4001, message=b"upstream done")
                break
            self.received.append((msg.type, msg.data))
        self.close_code = ws.close_code
        self.closed.set()
        return ws


async def _gateway_to(servers: AsyncExitStack, upstream: WebSocketUpstream) -> Gateway:
    url = await servers.enter_async_context(running_upstream(upstream.handle))
    return await servers.enter_async_context(running_gateway(Settings(upstreams={"openai": url})))


async def test_frames_cross_unchanged_both_ways_and_upstream_close_code_reaches_client(
    servers: AsyncExitStack,
) -> None:
    upstream = WebSocketUpstream()
    gateway = await _gateway_to(servers, upstream)

    async with aiohttp.ClientSession() as client, client.ws_connect(
        gateway.url + "/v1/responses", headers={"Authorization": "Bearer sk-x", "OpenAI-Beta": "responses=v1"},
        protocols=("openai-realtime",),
    ) as ws:
        down = [await asyncio.wait_for(ws.receive(), _WAIT) for _ in range(2)]
        for kind, data in _SENT_UP:
            await (ws.send_str(data) if kind is WSMsgType.TEXT else ws.send_bytes(data))
        await ws.send_str("bye")
        closing = await asyncio.wait_for(ws.receive(), _WAIT)
        protocol = ws.protocol

    assert [(m.type, m.data) for m in down] == [(WSMsgType.TEXT, _TEXT_DOWN), (WSMsgType.BINARY, _BINARY_DOWN)]
    assert (closing.type, closing.data, closing.extra) == (WSMsgType.CLOSE, 4001, "upstream done")
    assert protocol == "openai-realtime"
    assert upstream.received == _SENT_UP
    assert upstream.headers["Authorization"] == "Bearer sk-x"
    assert upstream.headers["OpenAI-Beta"] == "responses=v1"


async def test_client_close_code_reaches_upstream(servers: AsyncExitStack) -> None:
    upstream = WebSocketUpstream()
    gateway = await _gateway_to(servers, upstream)

    async with aiohttp.ClientSession() as client, client.ws_connect(gateway.url + "/v1/responses") as ws:
        for _ in range(2):
            await asyncio.wait_for(ws.receive(), _WAIT)
        await asyncio.wait_for(ws.close(code=4002, message=b"client done"), _WAIT)

    await asyncio.wait_for(upstream.closed.wait(), _WAIT)
    assert upstream.close_code == 4002


async def _not_a_websocket(request: web.BaseRequest) -> web.StreamResponse:
    return web.json_response({"error": {"message": "no websockets here"}}, status=404)


async def test_upstream_refusing_upgrade_gives_client_non_101_error_promptly(servers: AsyncExitStack) -> None:
    url = await servers.enter_async_context(running_upstream(_not_a_websocket))
    gateway = await servers.enter_async_context(running_gateway(Settings(upstreams={"openai": url})))

    async with aiohttp.ClientSession() as client:
        with pytest.raises(aiohttp.WSServerHandshakeError) as caught:
            await asyncio.wait_for(client.ws_connect(gateway.url + "/v1/responses"), _WAIT)

    assert caught.value.status == 404


async def _send_then_drop(request: web.BaseRequest) -> web.StreamResponse:
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    await ws.send_str("last words")
    assert request.transport is not None
    request.transport.abort()  # no close frame
    return ws


async def test_upstream_dropping_connection_closes_client_promptly(servers: AsyncExitStack) -> None:
    url = await servers.enter_async_context(running_upstream(_send_then_drop))
    gateway = await servers.enter_async_context(running_gateway(Settings(upstreams={"openai": url})))

    async with aiohttp.ClientSession() as client, client.ws_connect(gateway.url + "/v1/responses") as ws:
        first = await asyncio.wait_for(ws.receive(), _WAIT)
        end = await asyncio.wait_for(ws.receive(), _WAIT)

    assert (first.type, first.data) == (WSMsgType.TEXT, "last words")
    assert end.type in (WSMsgType.CLOSE, WSMsgType.CLOSED, WSMsgType.ERROR)


class ParkedUpstream:
    """Accepts the upgrade and waits; notes when its peer goes away."""

    def __init__(self) -> None:
        self.gone = asyncio.Event()

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        try:
            await ws.receive()
        finally:
            self.gone.set()
        return ws


async def test_client_dropping_connection_closes_upstream_promptly(servers: AsyncExitStack) -> None:
    upstream = ParkedUpstream()
    url = await servers.enter_async_context(running_upstream(upstream.handle))
    gateway = await servers.enter_async_context(running_gateway(Settings(upstreams={"openai": url})))

    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
    writer.write(b"GET /v1/responses HTTP/1.1\r\nHost: gw\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
    assert (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), _WAIT)).startswith(b"HTTP/1.1 101")
    writer.transport.abort()

    await asyncio.wait_for(upstream.gone.wait(), _WAIT)
