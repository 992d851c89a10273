"""A relayed flow as messages for the telemetry process, and the flow replicas built again from them.

One message per addon hook: `Opened` (request), `Answered` (response_headers), `Chunk` (each relayed chunk),
`Relayed` (each relayed WebSocket message), `Ended` (done or error); `Report` carries an MCP call report from an
`llm-gateway mcp` wrapper. The relay sends a flow's `Opened` and `Answered` with its first chunk or message, or with
its end (`shipper.py`): the telemetry process replays the hooks in their order all the same. A flow that ends before
any of it was sent (an answer that came in one piece, a failure) goes whole as one `Exchanged`, most model calls
that are not streamed: one message instead of four.

On the pipe a message is a plain tuple led by its kind number (marshal, `frames.py`, writes only builtin types);
the relay builds those tuples directly (`opened`, `answered`, `chunk`, ..., a function call each and nothing
more), the telemetry process reads them as the named tuples below (`decode`). `FlowReplicas.apply` turns each
message back into the hooks to call.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

from llm_gateway.flow import Flow
from llm_gateway.mcp.report import CallReport
from llm_gateway.protocols.base import Opcode, SocketMessage
from llm_gateway.routing import Kind, Route, protocol_named
from llm_gateway.upstream.http1 import Fields


class Opened(NamedTuple):
    """The request was read and routed (the `request` hook)."""

    flow_id: int
    method: str
    raw_path: str
    request_headers: Fields  # as received: bytes, read as text in the telemetry process
    request_body: bytes
    protocol: str | None  # the route's protocol name, None for a relayed non-call
    upstream: str | None
    route_kind: str
    base_url: str
    prefix: str
    upstream_url: str
    started_ns: int
    websocket: bool = False  # the request upgrades to a WebSocket


class Answered(NamedTuple):
    """The upstream answered with a status and headers (the `response_headers` hook)."""

    flow_id: int
    upstream_started_ns: int | None
    status: int | None
    response_headers: Fields | None
    response_started_ns: int | None


class Chunk(NamedTuple):
    """A response chunk, after it was written to the client."""

    flow_id: int
    at_ns: int
    data: bytes


class Relayed(NamedTuple):
    """A WebSocket message, after it went on to the other side."""

    flow_id: int
    at_ns: int
    from_client: bool
    opcode: int
    payload: bytes


class Ended(NamedTuple):
    """The flow is over: `done`, or `error` when `error` is set."""

    flow_id: int
    upstream_started_ns: int | None
    ended_ns: int | None
    error: str | None
    error_message: str | None


#: A flow whole, ended before any of it was sent: `Opened`'s fields, then those of its `Answered` (when
#: `response_started_ns` is set), its one `Chunk` (when `chunk_at_ns` is) and its `Ended`.
Exchanged = NamedTuple("Exchanged", [
    *Opened.__annotations__.items(),
    ("upstream_started_ns", "int | None"), ("status", "int | None"), ("response_headers", "Fields | None"),
    ("response_started_ns", "int | None"), ("chunk_at_ns", "int | None"), ("chunk_data", "bytes | None"),
    ("ended_ns", "int | None"), ("error", "str | None"), ("error_message", "str | None"),
])
_OPENED_LENGTH = len(Opened._fields)


class Report(NamedTuple):
    """An MCP call report (`POST /_gateway/mcp/calls`), for the addons' `report` hook."""

    report: CallReport


Message = Opened | Answered | Chunk | Ended | Report | Relayed | Exchanged
#: a message's kind number (the first item of its tuple on the pipe) is its place here
_KINDS: tuple[type[Message], ...] = (Opened, Answered, Chunk, Ended, Report, Relayed, Exchanged)
OPENED, ANSWERED, CHUNK, ENDED, REPORT, RELAYED, EXCHANGED = range(len(_KINDS))


def decode(batch: list[tuple]) -> list[Message]:
    return [_KINDS[raw[0]]._make(raw[1:]) for raw in batch]


def opened(flow_id: int, flow: Flow) -> tuple:
    return OPENED, flow_id, *_request(flow)


def _request(flow: Flow) -> tuple:
    """`Opened`'s fields after its flow id."""
    route = flow.route
    protocol = route.protocol
    return (flow.method, flow.raw_path, flow.request_fields, flow.request_body, protocol.name if protocol else None,
            protocol.upstream if protocol else None, route.kind.value, route.base_url, route.prefix,
            flow.upstream_url, flow.started_ns, flow.websocket)


def answered(flow_id: int, flow: Flow) -> tuple:
    return ANSWERED, flow_id, flow.upstream_started_ns, flow.status, flow.response_fields, flow.response_started_ns


def chunk(flow_id: int, at_ns: int, data: bytes) -> tuple:
    return CHUNK, flow_id, at_ns, data


def relayed(flow_id: int, at_ns: int, message: SocketMessage) -> tuple:
    return RELAYED, flow_id, at_ns, message.from_client, int(message.opcode), message.payload


def ended(flow_id: int, flow: Flow) -> tuple:
    return ENDED, flow_id, flow.upstream_started_ns, flow.ended_ns, flow.error, flow.error_message


def exchanged(flow_id: int, flow: Flow, last_chunk: tuple[int, bytes] | None) -> tuple:
    """`last_chunk`: (time_ns, bytes) of its one chunk, if it had one."""
    at_ns, data = last_chunk if last_chunk is not None else (None, None)
    return (EXCHANGED, flow_id, *_request(flow), flow.upstream_started_ns, flow.status, flow.response_fields,
            flow.response_started_ns, at_ns, data, flow.ended_ns, flow.error, flow.error_message)


def report(call: CallReport) -> tuple:
    return REPORT, call


def _parts(whole: Exchanged) -> Iterator[Opened | Answered | Chunk | Ended]:
    flow_id = whole.flow_id
    yield Opened._make(whole[:_OPENED_LENGTH])
    if whole.response_started_ns is not None:
        yield Answered(flow_id, whole.upstream_started_ns, whole.status, whole.response_headers,
                       whole.response_started_ns)
    if whole.chunk_at_ns is not None and whole.chunk_data is not None:
        yield Chunk(flow_id, whole.chunk_at_ns, whole.chunk_data)
    yield Ended(flow_id, whole.upstream_started_ns, whole.ended_ns, whole.error, whole.error_message)


class FlowReplicas:
    """The receiving side: `apply(message)` yields (hook, flow, chunk args) for each addon call a flow message
    implies (`Report` is not a flow message: the worker hands it to the `report` hook itself)."""

    def __init__(self) -> None:
        self._open: dict[int, Flow] = {}

    def __len__(self) -> int:
        return len(self._open)

    def apply(self, message: Opened | Answered | Chunk | Relayed | Ended | Exchanged
              ) -> Iterator[tuple[str, Flow, tuple]]:
        if isinstance(message, Exchanged):
            for part in _parts(message):
                yield from self.apply(part)
            return
        if isinstance(message, Opened):
            yield "request", self._open_flow(message), ()
            return
        flow = self._open.get(message.flow_id)
        if flow is None:
            return  # its opening was shed: nothing to replay
        match message:
            case Answered():
                flow.upstream_started_ns, flow.status = message.upstream_started_ns, message.status
                flow.response_started_ns = message.response_started_ns
                flow.response_fields = message.response_headers  # read as text when an addon asks
                yield "response_headers", flow, ()
            case Chunk():
                if flow.chunks is not None:
                    flow.chunks.append((message.at_ns, message.data))
                yield "chunk", flow, (message.at_ns, message.data)
                # Every addon has read the request by its first chunk (the chat spans parse it then, MCP at the
                # response head): the replica does not hold an agent's whole conversation for the whole stream
                flow.request_body = b""
            case Relayed():
                relayed = SocketMessage(message.from_client, Opcode(message.opcode), message.payload)
                if flow.messages is not None:
                    flow.messages.append((message.at_ns, relayed))
                yield "message", flow, (message.at_ns, relayed)
            case Ended():
                flow.upstream_started_ns, flow.ended_ns = message.upstream_started_ns, message.ended_ns
                flow.error, flow.error_message = message.error, message.error_message
                del self._open[message.flow_id]
                yield ("error" if flow.error else "done"), flow, ()

    def _open_flow(self, message: Opened) -> Flow:
        protocol = protocol_named(message.protocol, message.upstream) if message.protocol else None
        route = Route(protocol, Kind(message.route_kind), message.base_url, message.prefix)
        flow = self._open[message.flow_id] = Flow(
            message.method, message.raw_path, message.request_headers, message.request_body, route,
            message.upstream_url, message.started_ns, websocket=message.websocket)
        return flow
