"""A WebSocket through the relay: the upgrade, then messages both ways, unchanged and in order, until a close.

It is aiohttp's on both legs (its server took the upgrade: the front end hands such a request over); the relay
calls `relay_websocket` for a request `is_websocket_upgrade` says is one.
"""

from __future__ import annotations

import asyncio
import enum
import time
from collections.abc import Callable, Sequence

import aiohttp
from aiohttp import WSMsgType, web
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from llm_gateway.errors import error_response
from llm_gateway.flow import Addon, Flow, call_hook, fail, finish, notify_message
from llm_gateway.protocols.base import Opcode, SocketMessage
from llm_gateway.redact import url_without_credentials
from llm_gateway.routing import Route
from llm_gateway.upstream.http1 import HOP_BY_HOP, Fields, end_to_end, header_text

# The WebSocket handshake is negotiated anew on each leg: its fields do not cross.
_WS_HANDSHAKE = frozenset({"sec-websocket-key", "sec-websocket-version", "sec-websocket-extensions",
                           "sec-websocket-accept", "sec-websocket-protocol"})


def forward_headers(fields: Fields, extra_drop: frozenset[str] = frozenset()) -> CIMultiDict[str]:
    """A message's end-to-end fields (`end_to_end`) as text, for the WebSocket handshakes through aiohttp's client."""
    kept = end_to_end(fields, HOP_BY_HOP | extra_drop if extra_drop else HOP_BY_HOP)
    return CIMultiDict([(header_text(name), header_text(value)) for name, value in kept])


def is_websocket_upgrade(request: web.BaseRequest) -> bool:
    """A client's WebSocket opening handshake (RFC 6455 section 4.1: a GET without a body, with a key). Anything
    else that asks for an upgrade is relayed as the plain request it is (Upgrade is hop-by-hop): a POST must not
    reach the upstream as a WebSocket GET, nor a body be dropped."""
    headers = request.headers
    return (request.method == "GET" and headers.get("Upgrade", "").lower() == "websocket"
            and "upgrade" in _connection_tokens(headers) and "Sec-WebSocket-Key" in headers
            and not request.body_exists)


def _connection_tokens(headers: CIMultiDictProxy[str] | CIMultiDict[str]) -> frozenset[str]:
    values = headers.getall("Connection", ())
    return frozenset(t.strip().lower() for v in values for t in v.split(",") if t.strip())


async def relay_websocket(session: aiohttp.ClientSession, addons: Sequence[Addon], request: web.BaseRequest,
                          route: Route) -> web.StreamResponse:
    """Relay a WebSocket: the upgrade, then messages both ways, unchanged and in order, until a close.

    The upgrade goes upstream with the client's headers (its extension offer aside: neither leg negotiates
    permessage-deflate, so every message crosses as its exact payload) and the upstream's 101 headers come
    back to the client. Addons see it as a flow whose messages they observe (see `flow.py`)."""
    raw_path = request.raw_path
    flow = Flow(request.method, raw_path, request.raw_headers, b"", route, route.upstream_url(raw_path),
                time.time_ns(), websocket=True)
    if addons:
        call_hook(addons, "request", flow)
    headers = forward_headers(request.raw_headers, _WS_HANDSHAKE)
    protocols = [p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",") if p.strip()]
    ws_url = URL(flow.upstream_url, encoded=True)
    ws_url = ws_url.with_scheme("wss" if ws_url.scheme == "https" else "ws")
    flow.upstream_started_ns = time.time_ns()
    try:
        upstream = await session.ws_connect(
            ws_url, headers=headers, protocols=protocols, autoping=False, autoclose=False,
            compress=0, max_msg_size=0,
        )
    except aiohttp.WSServerHandshakeError as exc:
        flow.status, flow.response_started_ns = exc.status, time.time_ns()
        flow.response_headers = CIMultiDictProxy(CIMultiDict(exc.headers or ()))
        if addons:
            call_hook(addons, "response_headers", flow)
        fail(addons, flow, "upstream_websocket_refused", f"{exc.status} {exc.message}")
        return error_response(
            exc.status or 502, "upstream_websocket_refused",
            f"llm-gateway: the upstream refused the WebSocket upgrade ({exc.status} {exc.message})",
            upstream=url_without_credentials(flow.upstream_url),
        )
    except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
        fail(addons, flow, "upstream_timeout", repr(exc))
        return error_response(504, "upstream_timeout", f"llm-gateway: WebSocket upstream timed out ({exc!r})")
    except aiohttp.ClientError as exc:
        fail(addons, flow, "upstream_unreachable", repr(exc))
        return error_response(502, "upstream_unreachable", f"llm-gateway: WebSocket upstream failed ({exc!r})")
    # aiohttp keeps the upgrade's response on the socket, with the headers the client must see (Codex reads
    # x-codex-turn-state, x-models-etag and openai-model there)
    handshake: aiohttp.ClientResponse | None = getattr(upstream, "_response", None)
    flow.status = handshake.status if handshake is not None else 101
    flow.response_fields = handshake.raw_headers if handshake is not None else ()
    flow.response_started_ns = time.time_ns()
    if addons:
        call_hook(addons, "response_headers", flow)
    client = web.WebSocketResponse(
        protocols=[upstream.protocol] if upstream.protocol else (), autoping=False, autoclose=False,
        compress=False, max_msg_size=0,
    )
    if handshake is not None:
        client.headers.extend(forward_headers(handshake.raw_headers, _WS_HANDSHAKE))
    ends: list[tuple[bool, _End]] = []
    tap = _tap(flow)
    try:
        await client.prepare(request)
        await asyncio.gather(_pump(client, upstream, True, tap, ends), _pump(upstream, client, False, tap, ends))
    except asyncio.CancelledError:  # the client's connection ended (its close handshake may have come first)
        ends.append((True, _End.GONE))
        _socket_ended(addons, flow, ends)
        raise
    except BaseException as exc:
        fail(addons, flow, "gateway_error", repr(exc))
        raise
    finally:
        await upstream.close()
        await client.close()
    _socket_ended(addons, flow, ends)
    return client

def _socket_ended(addons: Sequence[Addon], flow: Flow, ends: list[tuple[bool, _End]]) -> None:
    """`done` when the first side to end sent a close frame; else `error`, naming the side that went away."""
    first = next(((from_client, end) for from_client, end in ends if end is not _End.CLOSING), None)
    if first is not None and first[1] is _End.GONE:
        if first[0]:
            fail(addons, flow, "client_gone", "the client went away without closing the WebSocket")
        else:
            fail(addons, flow, "upstream_stream_cut", "the upstream went away without closing the WebSocket")
    elif flow.ended_ns is None:
        flow.ended_ns = time.time_ns()
        finish(addons, flow)


class _End(enum.Enum):
    """How one direction of a relayed WebSocket ended."""

    #: its side sent a close frame (passed on, and answered with the same code)
    CLOSE = "close"
    #: the other direction is closing this side and answers it
    CLOSING = "closing"
    #: its side went away without a close frame
    GONE = "gone"


_Tap = Callable[[bool, Opcode, bytes], None]


def _tap(flow: Flow) -> _Tap | None:
    """What hands each relayed message to the flow's addons; None when none asked for them."""
    if flow.messages is None and flow.message_observers is None:
        return None

    def tap(from_client: bool, opcode: Opcode, payload: bytes) -> None:
        at_ns = time.time_ns()
        message = SocketMessage(from_client, opcode, payload)
        if flow.messages is not None:
            flow.messages.append((at_ns, message))
        if flow.message_observers is not None:
            notify_message(flow.message_observers, at_ns, message)

    return tap


async def _pump(source, sink, from_client: bool, tap: _Tap | None, ends: list[tuple[bool, _End]]) -> None:
    """Copy WebSocket messages one way, unchanged, until a close, whose code and reason go along too. Each message
    goes on before `tap` sees it; how this direction ended is appended to `ends`.

    `receive()`, not `async for`: the iterator stops silently at a CLOSE frame, which lost its code."""
    while True:
        msg = await source.receive()
        kind = msg.type
        if kind is WSMsgType.TEXT:
            await sink.send_str(msg.data)
            if tap is not None:
                tap(from_client, Opcode.TEXT, msg.data.encode())
        elif kind is WSMsgType.BINARY:
            await sink.send_bytes(msg.data)
            if tap is not None:
                tap(from_client, Opcode.BINARY, msg.data)
        elif kind is WSMsgType.PING:
            await sink.ping(msg.data)
            if tap is not None:
                tap(from_client, Opcode.PING, msg.data)
        elif kind is WSMsgType.PONG:
            await sink.pong(msg.data)
            if tap is not None:
                tap(from_client, Opcode.PONG, msg.data)
        elif kind is WSMsgType.CLOSE:
            # Pass the close on, then answer the side that started it with the same code.
            ends.append((from_client, _End.CLOSE))
            code, reason = msg.data or 1000, (msg.extra or "").encode()
            await sink.close(code=code, message=reason)
            if tap is not None:
                tap(from_client, Opcode.CLOSE, msg.data.to_bytes(2, "big") + reason if msg.data else b"")
            await source.close(code=code, message=reason)
            return
        elif kind is WSMsgType.CLOSING:
            ends.append((from_client, _End.CLOSING))
            return  # the other pump is closing this side and answers it
        else:  # CLOSED / ERROR: this side is gone without a close handshake
            ends.append((from_client, _End.GONE))
            break
    if not sink.closed:
        await sink.close()
