"""One relayed exchange (`Flow`) and the observers (`Addon`) that watch it.

The relay knows HTTP and nothing about providers. Addons see a flow at fixed moments; the relay calls them
in this order: `request`, then `response_headers` when the upstream answered, then exactly one of `done` or
`error`. Hooks are synchronous and must be cheap: they run on the request path. An addon that wants the response
body as it streams adds a callable with `observe_chunks` in `request`; it is called with each chunk right after
the chunk was written to the client.

A WebSocket upgrade is a flow too (`websocket` set): `request` when the upgrade request was read, `response_headers`
when the upstream answered it (101, or the status it refused with), then each relayed message to the callables
added with `observe_messages` (right after the message went on to the other side), then `done` (the socket closed
with a close handshake) or `error` (a side went away without one, or the upgrade failed). The model calls inside a
socket become flows of their own (`socket` names the WebSocket flow), made by `addons/socket_calls.py`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from multidict import CIMultiDictProxy

from llm_gateway.protocols.base import Adapter, HttpRequest, SocketMessage
from llm_gateway.routing import Kind, Route, adapter_for
from llm_gateway.upstream.http1 import Fields, text_headers

log = logging.getLogger("llm_gateway.relay")


@dataclass(slots=True)
class Flow:
    method: str
    raw_path: str  # path and query exactly as the client sent them
    #: the request's header fields as received, (name, value) bytes in order: what the telemetry process is sent;
    #: `request_headers` reads them
    request_fields: Fields
    request_body: bytes
    route: Route
    upstream_url: str
    started_ns: int  # wall clock (time.time_ns) when the request arrived
    upstream_started_ns: int | None = None  # the request left for the upstream
    status: int | None = None
    response_started_ns: int | None = None  # upstream headers received
    #: (time_ns, bytes) per chunk as relayed; None unless an addon asked for the body in `request`
    chunks: list[tuple[int, bytes]] | None = None
    #: an addon needs every chunk at the end (recorder, chat spans); otherwise a reader that has consumed the
    #: chunks of a long-lived stream (an MCP GET stream) may drop them
    keep_chunks: bool = False
    #: called with (time_ns, bytes) for each chunk, after it was written to the client (`observe_chunks`)
    chunk_observers: list[Callable[[int, bytes], None]] | None = None
    ended_ns: int | None = None  # last byte written to the client, or the failure
    error: str | None = None  # a cause class: "upstream_unreachable", "upstream_timeout", "client_gone", ...
    error_message: str | None = None
    scratch: dict[object, Any] | None = None  # per-flow state of addons, keyed by addon: see `state()`
    #: the request upgraded to a WebSocket: messages follow the response head, never body chunks
    websocket: bool = False
    #: (time_ns, message) per relayed WebSocket message; None unless an addon asked for them in `request`
    messages: list[tuple[int, SocketMessage]] | None = None
    #: called with (time_ns, message) for each WebSocket message, after it went on (`observe_messages`)
    message_observers: list[Callable[[int, SocketMessage], None]] | None = None
    #: for a model call read from a WebSocket's messages: that WebSocket's flow (None for an HTTP exchange)
    socket: Flow | None = None
    #: the response's header fields as received, None until the upstream answered; `response_headers` reads them
    response_fields: Fields | None = None
    _request_headers: CIMultiDictProxy[str] | None = field(default=None, init=False, repr=False)
    _response_headers: CIMultiDictProxy[str] | None = field(default=None, init=False, repr=False)

    @property
    def request_headers(self) -> CIMultiDictProxy[str]:
        """The request's headers as text, read from `request_fields` when first asked for (the relay itself reads
        none but the few it routes by)."""
        if self._request_headers is None:
            self._request_headers = text_headers(self.request_fields)
        return self._request_headers

    @request_headers.setter
    def request_headers(self, headers: CIMultiDictProxy[str]) -> None:
        self._request_headers = headers
        self.request_fields = _fields(headers)

    @property
    def response_headers(self) -> CIMultiDictProxy[str] | None:
        """The response's headers as text, read from `response_fields` when first asked for: in the relay's process
        no addon may ever ask (tracing in the telemetry process takes the fields)."""
        if self._response_headers is None and self.response_fields is not None:
            self._response_headers = text_headers(self.response_fields)
        return self._response_headers

    @response_headers.setter
    def response_headers(self, headers: CIMultiDictProxy[str] | None) -> None:
        self._response_headers = headers
        self.response_fields = None if headers is None else _fields(headers)

    def state(self) -> dict[object, Any]:
        """The addons' per-flow state (key: the addon), made on first use."""
        if self.scratch is None:
            self.scratch = {}
        return self.scratch


def _fields(headers: CIMultiDictProxy[str]) -> list[tuple[bytes, bytes]]:
    return [(name.encode(), value.encode("utf-8", "surrogateescape")) for name, value in headers.items()]


def model_call(flow: Flow) -> tuple[Adapter, HttpRequest] | None:
    """The adapter for a flow that is a model call, and the request as the adapter reads it; None otherwise."""
    route = flow.route
    adapter = adapter_for(route.protocol.name) if route.protocol and route.kind is Kind.CALL else None
    if adapter is None:
        return None
    return adapter, HttpRequest(flow.method, flow.raw_path, flow.request_headers, flow.request_body, route.base_url)


def observe_chunks(flow: Flow, observer: Callable[[int, bytes], None]) -> None:
    """Have `observer(time_ns, data)` called with each response chunk as it is relayed. It runs between two
    writes of a live stream: it must be quick, and what it raises is logged and dropped. When `flow.ended_ns` is
    set already, the chunk is the flow's last (the relay had the answer whole and wrote it in one go)."""
    if flow.chunk_observers is None:
        flow.chunk_observers = []
    flow.chunk_observers.append(observer)


def observe_messages(flow: Flow, observer: Callable[[int, SocketMessage], None]) -> None:
    """Have `observer(time_ns, message)` called with each message of a WebSocket flow as it is relayed. Like a
    chunk observer it runs between two sends: it must be quick, and what it raises is logged and dropped."""
    if flow.message_observers is None:
        flow.message_observers = []
    flow.message_observers.append(observer)


class Addon(Protocol):
    def request(self, flow: Flow) -> None:
        """The request has been read and routed; the upstream has not been called. Set `flow.chunks = []`
        here to receive the response bytes (`flow.messages = []`, a WebSocket's messages)."""

    def response_headers(self, flow: Flow) -> None:
        """The upstream answered with a status and headers; the body has not been relayed yet."""

    def done(self, flow: Flow) -> None:
        """The last byte went to the client. Fires instead of `error`, never with it."""

    def error(self, flow: Flow) -> None:
        """The exchange failed (`flow.error` says why): upstream unreachable or timing out, the stream cut,
        or the client gone. Fires instead of `done`, never with it."""


def call_hook(addons: Sequence[object], hook: str, *args: Any) -> None:
    """Call `hook` on every addon that has it (`tick` and `close` are optional); an observer's bug is logged,
    never passed on to the traffic."""
    for addon in addons:
        method = getattr(addon, hook, None)
        if method is None:
            continue
        try:
            method(*args)
        except Exception:
            log.debug("addon %r failed in %s", addon, hook, exc_info=True)


def finish(addons: Sequence[object], flow: Flow) -> None:
    """The flow's last hook: `error` when `flow.error` says why it failed, else `done`. Then its observers and the
    addons' state are dropped: they close over the flow, a cycle that would otherwise wait for the cyclic garbage
    collector (in the telemetry process some forty objects a call, found by passes over every open session)."""
    call_hook(addons, "error" if flow.error else "done", flow)
    flow.chunk_observers = flow.message_observers = flow.scratch = None


def fail(addons: Sequence[object], flow: Flow, cause: str, message: str) -> None:
    """End the flow as failed (`error`), unless it has ended already: `cause` is the class of failure
    ("upstream_unreachable", "client_gone", ...), `message` says what happened."""
    if flow.ended_ns is not None:
        return  # done or error already fired
    flow.ended_ns = time.time_ns()
    flow.error = cause
    flow.error_message = message
    finish(addons, flow)


def notify_chunk(observers: Sequence[Callable[[int, bytes], None]], at_ns: int, data: bytes) -> None:
    """Hand a relayed chunk to the flow's chunk observers, the same way."""
    for observe in observers:
        try:
            observe(at_ns, data)
        except Exception:
            log.debug("chunk observer %r failed", observe, exc_info=True)


def notify_message(observers: Sequence[Callable[[int, SocketMessage], None]], at_ns: int,
                   message: SocketMessage) -> None:
    """Hand a relayed WebSocket message to the flow's message observers, the same way."""
    for observe in observers:
        try:
            observe(at_ns, message)
        except Exception:
            log.debug("message observer %r failed", observe, exc_info=True)
