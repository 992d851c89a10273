"""Addon: MCP calls relayed over streamable HTTP (`/mcp/NAME` routes) become call reports; `report()` also takes
the calls stdio wrappers POST to the gateway (see `endpoint.py`). Both go to one sink, the MCP spans.

A POST carries one JSON-RPC message or a batch. Its messages are read when the upstream answers: by then the
session id is known even for initialize, whose answer brings it (`Mcp-Session-Id`). The answer is JSON, or an
SSE stream of messages that may carry the server's own requests; the client answers those on another POST
while the stream is still open, so the session's open streams are read up to date before each new POST is.
The relay keeps the chunks; this addon only reads copies and keeps a cursor.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from llm_gateway.flow import Flow
from llm_gateway.mcp.jsonrpc import CallTracker, Direction, Event, Request, parse
from llm_gateway.mcp.report import TCP, CallReport
from llm_gateway.protocols.framing import FramingError
from llm_gateway.protocols.framing.sse import SSEDecoder
from llm_gateway.routing import MCP_PROTOCOL

log = logging.getLogger("llm_gateway.mcp")

SESSION_HEADER = "Mcp-Session-Id"
VERSION_HEADER = "MCP-Protocol-Version"
_MAX_SESSIONS = 256

Sink = Callable[[CallReport], None]
_Key = tuple[str, str]  # (server name, session id or "")


@dataclass(slots=True)
class _Exchange:
    key: _Key
    tracker: CallTracker
    request_ids: list = field(default_factory=list)  # the requests this POST carried
    decoder: SSEDecoder | None = None  # an SSE answer; None for JSON (read whole at the end) or none
    read: int = 0  # chunks read so far


class McpObserver:
    """Addon for `/mcp/NAME` flows, and the sink for reports from stdio wrappers."""

    def __init__(self, sink: Sink, *, capture: bool = False, max_sessions: int = _MAX_SESSIONS) -> None:
        self._sink = sink
        self._capture = capture
        self._max_sessions = max_sessions
        self._trackers: OrderedDict[_Key, CallTracker] = OrderedDict()
        self._open: dict[int, tuple[Flow, _Exchange]] = {}  # id(flow) -> its SSE answer being streamed

    def __repr__(self) -> str:
        return f"McpObserver(sessions={len(self._trackers)}, open_streams={len(self._open)})"

    def report(self, report: CallReport) -> None:
        self._sink(report)

    def request(self, flow: Flow) -> None:
        if _is_mcp(flow) and flow.chunks is None:
            flow.chunks = []

    def response_headers(self, flow: Flow) -> None:
        if _is_mcp(flow):
            self._begin(flow)

    def done(self, flow: Flow) -> None:
        if not _is_mcp(flow):
            return
        exchange = self._end(flow)
        if exchange is None:
            return
        status = flow.status or 0
        if status >= 400:
            self._emit(exchange.key, exchange.tracker.fail(Direction.CLIENT_TO_SERVER, exchange.request_ids,
                                                          str(status), flow.ended_ns or flow.started_ns))
        if flow.method == "DELETE" and status < 300:  # the client ended the session: no answer is coming
            self._drain_session(exchange.key)
            self._trackers.pop(exchange.key, None)
            self._emit(exchange.key, exchange.tracker.close("connection_closed", flow.ended_ns or flow.started_ns))

    def error(self, flow: Flow) -> None:
        if not _is_mcp(flow):
            return
        scratch = flow.scratch or {}
        if self not in scratch:
            self._begin(flow)  # the upstream never answered: its requests still count, as failed calls
        exchange = self._end(flow)
        if exchange is not None:
            self._emit(exchange.key, exchange.tracker.fail(Direction.CLIENT_TO_SERVER, exchange.request_ids,
                                                          flow.error or "error", flow.ended_ns or flow.started_ns))

    def _begin(self, flow: Flow) -> None:
        headers = flow.response_headers
        server = flow.route.protocol.upstream  # type: ignore[union-attr]  # _is_mcp checked it
        session = flow.request_headers.get(SESSION_HEADER) or (headers or {}).get(SESSION_HEADER) or ""
        key = (server, session)
        tracker = self._tracker(key)
        tracker.protocol_version = tracker.protocol_version or flow.request_headers.get(VERSION_HEADER)
        self._drain_session(key)  # the server's requests this POST may answer come first
        messages = parse(flow.request_body) if flow.request_body else []
        exchange = _Exchange(key, tracker, [m.id for m in messages if isinstance(m, Request)])
        flow.state()[self] = exchange
        self._emit(key, tracker.feed_all(Direction.CLIENT_TO_SERVER, messages, flow.started_ns))
        if "text/event-stream" in (headers or {}).get("Content-Type", ""):
            exchange.decoder = SSEDecoder()
            self._open[id(flow)] = (flow, exchange)

    def _end(self, flow: Flow) -> _Exchange | None:
        exchange: _Exchange | None = (flow.scratch or {}).pop(self, None)
        self._open.pop(id(flow), None)
        if exchange is None:
            return None
        ended = flow.ended_ns or flow.started_ns
        if exchange.decoder is not None:
            self._drain(flow, exchange, final=True)
        elif flow.chunks and "json" in (flow.response_headers or {}).get("Content-Type", ""):
            body = b"".join(data for _, data in flow.chunks)
            self._emit(exchange.key, exchange.tracker.feed_all(Direction.SERVER_TO_CLIENT, parse(body), ended))
        return exchange

    def _drain_session(self, key: _Key) -> None:
        for flow, exchange in list(self._open.values()):
            if exchange.key == key:
                self._drain(flow, exchange)

    def _drain(self, flow: Flow, exchange: _Exchange, final: bool = False) -> None:
        chunks = flow.chunks or []
        decoder = exchange.decoder
        try:
            while decoder is not None and exchange.read < len(chunks):
                at_ns, data = chunks[exchange.read]
                exchange.read += 1
                self._sse_events(exchange, decoder.feed(data), at_ns)
            if not flow.keep_chunks and exchange.read:  # a GET stream may stay open for hours: free what was read
                del chunks[: exchange.read]
                exchange.read = 0
            if final and decoder is not None:
                self._sse_events(exchange, decoder.close(), flow.ended_ns or flow.started_ns)
        except FramingError:
            log.debug("MCP stream of %s: an event over the size limit; the rest is not read", exchange.key)
            exchange.decoder = None

    def _sse_events(self, exchange: _Exchange, events: list, at_ns: int) -> None:
        for event in events:
            if event.data:  # an event with an id and no data only marks a point to resume from
                messages = parse(event.data.encode())
                self._emit(exchange.key, exchange.tracker.feed_all(Direction.SERVER_TO_CLIENT, messages, at_ns))

    def _tracker(self, key: _Key) -> CallTracker:
        tracker = self._trackers.get(key)
        if tracker is None:
            tracker = self._trackers[key] = CallTracker(capture=self._capture, out_of_order=True)
            while len(self._trackers) > self._max_sessions:
                self._trackers.popitem(last=False)
        else:
            self._trackers.move_to_end(key)
        return tracker

    def _emit(self, key: _Key, events: list[Event]) -> None:
        server, session = key
        for event in events:
            self._sink(CallReport(event, server, TCP, session or None))


def _is_mcp(flow: Flow) -> bool:
    protocol = flow.route.protocol
    # MCP has no WebSocket transport: an upgrade on an MCP route is relayed unread
    return protocol is not None and protocol.name == MCP_PROTOCOL and not flow.websocket
