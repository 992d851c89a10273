"""The model calls that travel inside a WebSocket (Responses over WebSocket, Codex's default), as flows of their own.

Addon: for a WebSocket flow whose protocol's adapter reads sockets (`socket_reader`), each relayed message goes to
that reader (`protocols/responses_socket.py`), and each model call it finds becomes a `Flow` (`flow.socket` names
the WebSocket's) handed to `addons` hook by hook, as the relay hands an HTTP exchange: `request` at the
`response.create`, `response_headers` at the call's first server event, its events as body chunks, `done` at the
terminal event, or `error` when the socket ended first. So the chat spans read a call over a WebSocket the way they
read one over HTTP.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from multidict import CIMultiDict, CIMultiDictProxy

from llm_gateway.flow import Addon, Flow, call_hook, finish, model_call, notify_chunk, observe_messages
from llm_gateway.protocols.base import SocketMessage
from llm_gateway.protocols.responses_socket import CallBody, CallEnd, CallRequest, CallResponse, SocketEvent


@dataclass(slots=True)
class _Socket:
    flow: Flow
    reader: Any  # the adapter's socket reader: `message(SocketMessage)` and `close(error, detail)` give events
    calls: dict[int, Flow] = field(default_factory=dict)


class SocketCalls:
    """Addon: hands the model calls inside each WebSocket flow to `addons` (see the module docstring)."""

    def __init__(self, addons: Sequence[Addon]) -> None:
        self._addons = tuple(addons)

    def __repr__(self) -> str:
        return f"SocketCalls(-> {', '.join(type(a).__name__ for a in self._addons)})"

    def request(self, flow: Flow) -> None:
        if not flow.websocket:
            return
        found = model_call(flow)
        reader = getattr(found[0], "socket_reader", None) if found is not None else None
        if found is None or reader is None:
            return
        socket = _Socket(flow, reader(found[1]))
        flow.state()[self] = socket

        def observe(at_ns: int, message: SocketMessage) -> None:
            self._apply(socket, at_ns, socket.reader.message(message))

        observe_messages(flow, observe)

    def response_headers(self, flow: Flow) -> None:
        pass

    def done(self, flow: Flow) -> None:
        self._end(flow)

    def error(self, flow: Flow) -> None:
        self._end(flow)

    def _end(self, flow: Flow) -> None:
        socket = flow.state().pop(self, None)
        if socket is not None:
            self._apply(socket, flow.ended_ns or flow.started_ns, socket.reader.close(flow.error, flow.error_message))

    def _apply(self, socket: _Socket, at_ns: int, events: list[SocketEvent]) -> None:
        for event in events:
            match event:
                case CallRequest(call=number, request=request):
                    parent = socket.flow
                    call = socket.calls[number] = Flow(
                        request.method, parent.raw_path, (), request.body, parent.route, parent.upstream_url, at_ns,
                        upstream_started_ns=at_ns, socket=parent)
                    call.request_headers = CIMultiDictProxy(CIMultiDict(request.headers))
                    call_hook(self._addons, "request", call)
                case CallResponse(call=number, head=head):
                    call = socket.calls[number]
                    call.status, call.response_started_ns = head.status, at_ns
                    call.response_headers = CIMultiDictProxy(CIMultiDict(head.headers))
                    call_hook(self._addons, "response_headers", call)
                case CallBody(call=number, data=data):
                    call = socket.calls[number]
                    if call.chunks is not None:
                        call.chunks.append((at_ns, data))
                    if call.chunk_observers is not None:
                        notify_chunk(call.chunk_observers, at_ns, data)
                case CallEnd(call=number, error=error, message=message):
                    call = socket.calls.pop(number)
                    call.ended_ns, call.error, call.error_message = at_ns, error, message
                    finish(self._addons, call)
