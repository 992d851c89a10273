"""A fake upstream that answers requests with recorded responses, chunk by chunk, with the recorded timing.

Matching: a request is answered by the first unused exchange with the same method and path whose body is the
same (byte-equal or JSON-equal); failing that, by the next unused exchange with the same method and path in
recording order (clients re-serialize bodies, so a replayed agent loop rarely sends the same bytes). A request
that matches nothing gets a 409 JSON error that says what was asked and what is left.

A recorded WebSocket (status 101, with messages) is replayed as one: the upgrade is accepted with the recorded
headers, then the recorded messages are played in order, the server's sent (with the recorded timing) and the
client's awaited, each in its turn; a recorded close from the server closes the socket, else it stays open until the
client closes it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import unquote

import orjson
from aiohttp import WSMsgType, web
from multidict import CIMultiDictProxy

from llm_gateway.protocols.base import Opcode
from llm_gateway.recordings.fixtures import Exchange, Fixture, RecordedMessage, header
from llm_gateway.upstream.http1 import HOP_BY_HOP

#: fields of a recorded upgrade's response that this server's own handshake sets
_WS_HANDSHAKE = frozenset({"sec-websocket-accept", "sec-websocket-extensions", "sec-websocket-protocol"})


def _json_or_none(body: bytes) -> object:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return None


async def listen(runner: web.BaseRunner, host: str, port: int) -> int:
    """Set `runner` up and serve it on host:port; returns the port it got (port 0 picks a free one)."""
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    return site._server.sockets[0].getsockname()[1]


def _bare_path(path: str) -> str:
    """The path without its query, percent-decoding undone: clients differ in what they escape (`%3A` or `:`)."""
    return unquote(path.partition("?")[0])


@dataclass(frozen=True, slots=True)
class Received:
    method: str
    path: str
    headers: CIMultiDictProxy[str]
    body: bytes


class ReplayUpstream:
    """`await ReplayUpstream(fixtures).start()` -> serves on 127.0.0.1; `await .stop()`."""

    def __init__(self, fixtures: Sequence[Fixture], *, speed: float = 0.0, host: str = "127.0.0.1",
                 port: int = 0) -> None:
        # speed 0: no delays at all; 1: the recorded timing; N: N times faster
        self._pending: list[tuple[str, Exchange]] = []
        self.expect(fixtures)
        self._speed = speed
        self._host = host
        self._port = port
        self._runner: web.ServerRunner | None = None
        self.port = 0
        self.requests: list[Received] = []  # what arrived, in order
        #: the WebSocket messages the clients sent, in order, as (opcode, payload)
        self.messages: list[tuple[int, bytes]] = []

    @property
    def url(self) -> str:
        return f"http://{self._host}:{self.port}"

    def expect(self, fixtures: Sequence[Fixture]) -> None:
        """Queue the exchanges of more fixtures to answer: one upstream serves a run of tests."""
        self._pending += [(f.name, ex) for f in fixtures for ex in f.exchanges]

    async def start(self) -> ReplayUpstream:
        self._runner = web.ServerRunner(web.Server(self._handle), handle_signals=False)
        self.port = await listen(self._runner, self._host, self._port)
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> ReplayUpstream:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def _match(self, method: str, path: str, body: bytes, target: str | None = None) -> Exchange | None:
        # AWS JSON protocols (Kiro, Q) put every operation on `POST /`: the X-Amz-Target header tells them apart
        candidates = [
            i for i, (_, ex) in enumerate(self._pending)
            if ex.request.method == method and _bare_path(ex.request.path) == _bare_path(path)
            and (target is None or header(ex.request.headers, "x-amz-target") in (None, target))
        ]
        if not candidates:
            return None
        parsed = _json_or_none(body)
        chosen = next(
            (i for i in candidates
             if self._pending[i][1].request.body == body
             or (parsed is not None and _json_or_none(self._pending[i][1].request.body) == parsed)),
            candidates[0],
        )
        return self._pending.pop(chosen)[1]

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        body = b"".join([chunk async for chunk in request.content.iter_any()])  # no 1 MiB cap
        self.requests.append(Received(request.method, request.raw_path, request.headers, body))
        exchange = self._match(request.method, request.raw_path, body, request.headers.get("x-amz-target"))
        if exchange is None:
            left = sorted({f"{ex.request.method} {ex.request.path}" for _, ex in self._pending})
            return web.json_response(
                {"type": "error", "error": {
                    "type": "replay_no_match",
                    "message": f"no recorded exchange left for {request.method} {request.raw_path}",
                    "remaining": left}},
                status=409,
            )
        recorded = exchange.response
        if exchange.messages is not None and recorded.status == 101:
            return await self._socket(request, exchange)
        response = web.StreamResponse(status=recorded.status)
        for name, value in recorded.headers:
            if name.lower() not in HOP_BY_HOP:  # this server frames the body itself
                response.headers.add(name, value)
        if response.headers.get("content-type") is None:
            response.headers["content-type"] = "application/octet-stream"
        body_size = sum(len(c.data) for c in recorded.chunks)
        if len(recorded.chunks) <= 1:
            response.content_length = body_size
        await response.prepare(request)
        previous = 0.0
        for chunk in recorded.chunks:
            if self._speed > 0 and chunk.at > previous:
                await asyncio.sleep((chunk.at - previous) / self._speed)
            previous = chunk.at
            await response.write(chunk.data)
        await response.write_eof()
        return response

    async def _socket(self, request: web.BaseRequest, exchange: Exchange) -> web.StreamResponse:
        recorded = exchange.response
        protocol = header(recorded.headers, "sec-websocket-protocol")
        ws = web.WebSocketResponse(protocols=(protocol,) if protocol else (), autoping=False)
        for name, value in recorded.headers:
            if name.lower() not in HOP_BY_HOP and name.lower() not in _WS_HANDSHAKE:
                ws.headers.add(name, value)
        await ws.prepare(request)
        if await self._play(ws, exchange.messages or []):
            async for message in ws:  # the recording ends with the socket open: the client closes it
                self.messages.append((int(message.type), _payload(message.data)))
        return ws

    async def _play(self, ws: web.WebSocketResponse, messages: list[RecordedMessage]) -> bool:
        """Play the recorded messages; False when the socket closed on the way."""
        previous = 0.0
        for message in messages:
            if message.from_client:
                received = await ws.receive()
                if received.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
                    return False
                self.messages.append((int(received.type), _payload(received.data)))
                continue
            if self._speed > 0 and message.at > previous:
                await asyncio.sleep((message.at - previous) / self._speed)
            previous = message.at
            opcode, data = message.opcode, message.data
            if opcode == Opcode.TEXT:
                await ws.send_str(data.decode("utf-8"))
            elif opcode == Opcode.BINARY:
                await ws.send_bytes(data)
            elif opcode == Opcode.PING:
                await ws.ping(data)
            elif opcode == Opcode.PONG:
                await ws.pong(data)
            elif opcode == Opcode.CLOSE:
                code = int.from_bytes(data[:2], "big") if len(data) >= 2 else 1000
                await ws.close(code=code, message=data[2:])
                return False
        return True


def _payload(data: object) -> bytes:
    if isinstance(data, bytes):
        return data
    return data.encode() if isinstance(data, str) else b""
