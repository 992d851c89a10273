"""MCP's JSON-RPC, observed: newline framing, message parsing and request/response pairing. Sans-IO.

The caller relays the bytes itself and hands this module copies; nothing here can change or hold back traffic,
and nothing here raises on what arrives: a line that is not JSON-RPC is skipped. Pairing works in both
directions (the client's requests, and the server's requests to the client: sampling, roots, elicitation) and
can take a response seen before its request (`out_of_order`), which happens over HTTP when the server's request
sits in a stream that is still open while the client's answer arrives on another POST.
"""

from __future__ import annotations

import enum
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson

log = logging.getLogger("llm_gateway.mcp")

RequestId = int | str

#: A line is buffered up to this size; a longer one is not kept whole (its ids are read from its ends, see
#: `Oversized`). The relayed bytes are never affected: this bounds only what the observer holds.
DEFAULT_MAX_LINE = 16 * 1024 * 1024
_KEEP = 4096  # bytes kept from each end of an oversized line

#: The methods whose span name carries a target, and the parameter that names it.
TARGET_PARAMS = {
    "tools/call": "name",
    "prompts/get": "name",
    "resources/read": "uri",
    "resources/subscribe": "uri",
    "resources/unsubscribe": "uri",
}
_VERSION_META = "io.modelcontextprotocol/protocolVersion"  # the 2026 protocol puts it in each request's _meta


class Direction(enum.Enum):
    #: sent by the client (the agent) to the server
    CLIENT_TO_SERVER = "client_to_server"
    #: sent by the server to the client
    SERVER_TO_CLIENT = "server_to_client"

    @property
    def reverse(self) -> Direction:
        return Direction.SERVER_TO_CLIENT if self is Direction.CLIENT_TO_SERVER else Direction.CLIENT_TO_SERVER


# --- framing ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Oversized:
    """A line longer than the framer's limit: only its first and last bytes were kept."""

    head: bytes
    tail: bytes
    size: int


class LineState(enum.Enum):
    #: the line is kept whole in the buffer
    BUFFERING = "buffering"
    #: the line outgrew the limit: only its first and last bytes are kept, and its size counted
    OVERSIZED = "oversized"


class LineFramer:
    """`feed(bytes) -> list[bytes | Oversized]` of complete non-blank lines. Memory is bounded by `max_line`;
    an oversized line is counted, not kept. An unterminated last line is never a message (MCP clients do not
    read one either), so there is no `close()`."""

    __slots__ = ("_buf", "_head", "_keep", "_max", "_size", "_tail", "state")

    def __init__(self, max_line: int = DEFAULT_MAX_LINE, keep: int = _KEEP) -> None:
        self._buf = bytearray()
        self._max = max_line
        self._keep = keep
        self._head = b""
        self._tail = b""
        self._size = 0
        self.state = LineState.BUFFERING

    def __repr__(self) -> str:
        if self.state is LineState.OVERSIZED:
            return f"LineFramer(OVERSIZED, {self._size} bytes)"
        return f"LineFramer(BUFFERING, {len(self._buf)} bytes buffered)"

    def feed(self, data: bytes) -> list[bytes | Oversized]:
        out: list[bytes | Oversized] = []
        start = 0
        while (end := data.find(b"\n", start)) >= 0:
            self._take(data[start:end])
            self._line(out)
            start = end + 1
        if start < len(data):
            self._take(data[start:])
        return out

    def _take(self, piece: bytes) -> None:
        if self.state is LineState.OVERSIZED:
            self._size += len(piece)
            self._tail = (self._tail + piece[-self._keep :])[-self._keep :]
            return
        self._buf += piece
        if len(self._buf) > self._max:
            self.state, self._size = LineState.OVERSIZED, len(self._buf)
            self._head, self._tail = bytes(self._buf[: self._keep]), bytes(self._buf[-self._keep :])
            self._buf = bytearray()

    def _line(self, out: list[bytes | Oversized]) -> None:
        if self.state is LineState.OVERSIZED:
            out.append(Oversized(self._head, self._tail, self._size))
            self.state, self._head, self._tail, self._size = LineState.BUFFERING, b"", b"", 0
        elif self._buf.strip():
            out.append(bytes(self._buf))
            self._buf.clear()
        else:
            self._buf.clear()


# --- messages --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Request:
    id: RequestId
    method: str
    params: Any = None
    partial: bool = False  # read from the ends of an oversized line: params hold at most the target


@dataclass(frozen=True, slots=True)
class Notification:
    method: str
    params: Any = None


@dataclass(frozen=True, slots=True)
class Response:
    id: RequestId | None
    result: Any = None
    error: Any = None
    partial: bool = False  # read from the ends of an oversized line: result and error unknown


Message = Request | Notification | Response


def parse(line: bytes | Oversized) -> list[Message]:
    """The JSON-RPC messages in one line (a batch gives several); anything else gives none."""
    try:
        if isinstance(line, Oversized):
            sniffed = _sniff(line)
            return [sniffed] if sniffed is not None else []
        doc = orjson.loads(line)
    except orjson.JSONDecodeError:
        return []
    items = doc if isinstance(doc, list) else [doc]
    return [m for m in map(_message, items) if m is not None]


def _valid_id(value: Any) -> bool:
    return isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))


def _message(doc: Any) -> Message | None:
    if not isinstance(doc, dict):
        return None
    method = doc.get("method")
    if isinstance(method, str):
        if "id" not in doc:
            return Notification(method, doc.get("params"))
        return Request(doc["id"], method, doc.get("params")) if _valid_id(doc["id"]) else None
    if "result" in doc or "error" in doc:
        ident = doc.get("id")
        return Response(ident if _valid_id(ident) else None, doc.get("result"), doc.get("error"))
    return None


# Ids of an oversized message: SDKs write the envelope first (`{"jsonrpc":"2.0","id":1,...`, Python) or last
# (`...,"jsonrpc":"2.0","id":1}`, TypeScript, which writes a request's method first). Only those exact places
# are trusted, never an "id" or "method" deeper in the message.
_ID = rb'("(?:[^"\\]|\\.)*"|-?\d+)'
_HEAD_ID = re.compile(rb'^\s*\{\s*"jsonrpc"\s*:\s*"2\.0"\s*,\s*"id"\s*:\s*' + _ID)
_TAIL_ID = re.compile(rb'"jsonrpc"\s*:\s*"2\.0"\s*,\s*"id"\s*:\s*' + _ID + rb"\s*\}\s*$")
_HEAD_METHOD = re.compile(rb'^\s*\{\s*(?:"jsonrpc"\s*:\s*"2\.0"\s*,\s*"id"\s*:\s*' + _ID
                          + rb'\s*,\s*)?"method"\s*:\s*"([^"\\]+)"')
_HEAD_TARGET = re.compile(rb'\s*,\s*"params"\s*:\s*\{\s*"(name|uri)"\s*:\s*("(?:[^"\\]|\\.)*")')


def _sniff(line: Oversized) -> Message | None:
    found = _HEAD_ID.match(line.head) or _TAIL_ID.search(line.tail)
    if found is None:
        return None  # a notification, or an envelope in no known order
    ident = orjson.loads(found.group(1))
    if not _valid_id(ident):
        return None  # a number past 64 bits reads as a float
    request = _HEAD_METHOD.match(line.head)
    if request is None:
        return Response(ident, partial=True)
    target = _HEAD_TARGET.match(line.head, request.end())
    params = {target.group(1).decode(): orjson.loads(target.group(2))} if target else None
    return Request(ident, request.group(2).decode(), params, partial=True)


# --- calls -----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CallStarted:
    """A request was seen; its answer is pending. Spans use it to find their parent while the agent's turn is
    still open."""

    method: str
    request_id: RequestId
    direction: Direction
    started_ns: int
    target: str | None = None
    arguments: Any = None  # tools/call arguments (they tell which agent tool call this is)


@dataclass(frozen=True, slots=True)
class McpCall:
    """One finished request/response pair (or a request that will get no answer: `failure` says why)."""

    method: str
    request_id: RequestId
    direction: Direction
    started_ns: int
    ended_ns: int
    target: str | None = None
    #: tools/call arguments, always: they match the call to the agent's tool call. Spans show them only under
    #: content capture.
    arguments: Any = None
    protocol_version: str | None = None
    params: Any = None  # only under content capture
    result: Any = None  # only under content capture
    error_code: int | None = None
    error_message: str | None = None
    is_error: bool = False  # a result with `isError: true`
    failure: str | None = None  # no answer came: "connection_closed", "cancelled", an HTTP status, ...

    @property
    def error_type(self) -> str | None:
        if self.error_code is not None:
            return str(self.error_code)
        if self.failure is not None:
            return self.failure
        return "tool_error" if self.is_error else None


Event = CallStarted | McpCall


@dataclass(frozen=True, slots=True)
class _Pending:
    request: Request
    started_ns: int
    version: str | None


class CallTracker:
    """Pairs requests with responses by id, per direction. `feed(direction, message, at_ns) -> list[Event]`.

    With `out_of_order`, a response to no pending request is kept (bounded) for a request still to be seen;
    otherwise it is dropped, as on a single pipe where an answer never comes first."""

    __slots__ = ("_early", "_pending", "capture", "max_pending", "out_of_order", "protocol_version", "server_name")

    def __init__(self, *, capture: bool = False, out_of_order: bool = False, max_pending: int = 1024) -> None:
        self.capture = capture
        self.out_of_order = out_of_order
        self.max_pending = max_pending
        #: from initialize, or set by the transport (HTTP's MCP-Protocol-Version header)
        self.protocol_version: str | None = None
        self.server_name: str | None = None  # serverInfo.name from the initialize result
        self._pending: dict[tuple[Direction, RequestId], _Pending] = {}
        self._early: dict[tuple[Direction, RequestId], tuple[Response, int]] = {}

    def __repr__(self) -> str:
        return f"CallTracker(pending={len(self._pending)}, early={len(self._early)})"

    @property
    def pending(self) -> int:
        return len(self._pending)

    def feed(self, direction: Direction, message: Message, at_ns: int) -> list[Event]:
        if isinstance(message, Request):
            return self._request(direction, message, at_ns)
        if isinstance(message, Response):
            if message.id is None:
                return []  # an error about a message that could not be read: nothing to pair
            key = (direction.reverse, message.id)
            pending = self._pending.pop(key, None)
            if pending is None:
                if self.out_of_order:
                    _bounded_put(self._early, key, (message, at_ns), self.max_pending)
                else:
                    log.debug("response %r (%s) answers no pending request: dropped", message.id, direction.value)
                return []
            return [self._finish(key[0], pending, message, at_ns)]
        if message.method == "notifications/cancelled" and isinstance(message.params, dict):
            # The sender gave up on its own request: no answer is due.
            ids = [message.params.get("requestId")]
            return self.fail(direction, ids, "cancelled", at_ns)
        return []

    def feed_all(self, direction: Direction, messages: Iterable[Message], at_ns: int) -> list[Event]:
        return [event for m in messages for event in self.feed(direction, m, at_ns)]

    def fail(self, direction: Direction, ids: Iterable[Any], reason: str, at_ns: int) -> list[Event]:
        """The requests `ids` sent in `direction` will get no answer (`reason`): finish them as failed."""
        out: list[Event] = []
        for ident in ids:
            pending = self._pending.pop((direction, ident), None) if _valid_id(ident) else None
            if pending is not None:
                out.append(self._finish(direction, pending, None, at_ns, failure=reason))
        return out

    def close(self, reason: str, at_ns: int) -> list[Event]:
        """End of the connection: every unanswered request fails with `reason`."""
        out: list[Event] = [self._finish(d, p, None, at_ns, failure=reason) for (d, _), p in self._pending.items()]
        self._pending.clear()
        self._early.clear()
        return out

    def _request(self, direction: Direction, request: Request, at_ns: int) -> list[Event]:
        params = request.params if isinstance(request.params, dict) else {}
        if request.method == "initialize" and isinstance(params.get("protocolVersion"), str):
            self.protocol_version = self.protocol_version or params["protocolVersion"]
        meta = params.get("_meta")
        version = meta.get(_VERSION_META) if isinstance(meta, dict) else None
        pending = _Pending(request, at_ns, version if isinstance(version, str) else None)
        key = (direction, request.id)
        early = self._early.pop(key, None)
        if early is not None:
            return [self._finish(direction, pending, early[0], early[1])]
        _bounded_put(self._pending, key, pending, self.max_pending)
        started = CallStarted(request.method, request.id, direction, at_ns, _target(request),
                              _arguments(request))
        return [started] if request.method == "tools/call" else []

    def _finish(self, direction: Direction, pending: _Pending, response: Response | None, at_ns: int,
                failure: str | None = None) -> McpCall:
        request = pending.request
        result = response.result if response is not None else None
        error = response.error if response is not None else None
        if request.method == "initialize" and isinstance(result, dict):
            if isinstance(result.get("protocolVersion"), str):
                self.protocol_version = result["protocolVersion"]  # the negotiated one
            info = result.get("serverInfo")
            if isinstance(info, dict) and isinstance(info.get("name"), str):
                self.server_name = info["name"]
        code = error.get("code") if isinstance(error, dict) else None
        message = error.get("message") if isinstance(error, dict) else None
        return McpCall(
            method=request.method,
            request_id=request.id,
            direction=direction,
            started_ns=pending.started_ns,
            ended_ns=max(at_ns, pending.started_ns),
            target=_target(request),
            arguments=_arguments(request),
            protocol_version=pending.version or self.protocol_version,
            params=request.params if self.capture and not request.partial else None,
            result=result if self.capture else None,
            error_code=code if isinstance(code, int) and not isinstance(code, bool) else None,
            error_message=message if isinstance(message, str) else None,
            is_error=isinstance(result, dict) and result.get("isError") is True,
            failure=failure,
        )


def _target(request: Request) -> str | None:
    key = TARGET_PARAMS.get(request.method)
    value = request.params.get(key) if key and isinstance(request.params, dict) else None
    return value if isinstance(value, str) else None


def _arguments(request: Request) -> Any:
    if request.method != "tools/call" or not isinstance(request.params, dict):
        return None
    return request.params.get("arguments")


def _bounded_put(table: dict, key: Any, value: Any, limit: int) -> None:
    table.pop(key, None)
    while len(table) >= limit:
        oldest = next(iter(table))
        log.debug("%d entries waiting: the oldest, %r, is dropped", len(table), oldest)
        del table[oldest]  # a request whose answer never came
    table[key] = value


# --- a whole newline-delimited connection ----------------------------------------------------------------


class StreamObserver:
    """Both directions of one newline-delimited JSON-RPC connection (MCP's stdio transport): copies of the
    relayed bytes in, call events out."""

    __slots__ = ("_framers", "tracker")

    def __init__(self, *, capture: bool = False, max_line: int = DEFAULT_MAX_LINE) -> None:
        self.tracker = CallTracker(capture=capture)
        self._framers = {d: LineFramer(max_line) for d in Direction}

    def __repr__(self) -> str:
        return f"StreamObserver({self.tracker!r})"

    def feed(self, direction: Direction, data: bytes, at_ns: int) -> list[Event]:
        lines = self._framers[direction].feed(data)
        return [e for line in lines for e in self.tracker.feed_all(direction, parse(line), at_ns)]

    def close(self, reason: str, at_ns: int) -> list[Event]:
        """End of the connection: unanswered requests fail with `reason`."""
        return self.tracker.close(reason, at_ns)
