"""A relayed flow as messages for the telemetry process, and the flow replicas built again from them.

One message per addon hook: `Opened` (request), `Answered` (response_headers), `Chunk` (each relayed chunk),
`Relayed` (each relayed WebSocket message), `Ended` (done or error); `Report` carries an MCP call report from an
`llm-gateway mcp` wrapper. The relay sends a flow's `Opened` and `Answered` with its first chunk or message, or with
its end (`shipper.py`): the telemetry process replays the hooks in their order all the same. They are named tuples,
cheap to build on the relay's path; on the pipe they travel as plain tuples led by a kind number (`encode` /
`decode`). `FlowReplicas.apply` turns each message back into the hook to call.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

from multidict import CIMultiDict, CIMultiDictProxy

from llm_gateway.flow import Flow
from llm_gateway.mcp.report import CallReport
from llm_gateway.protocols.base import Opcode, SocketMessage
from llm_gateway.routing import Kind, Route, protocol_named

Headers = list[tuple[str, str]]


class Opened(NamedTuple):
    """The request was read and routed (the `request` hook)."""

    flow_id: int
    method: str
    raw_path: str
    request_headers: Headers
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
    response_headers: Headers | None
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


class Report(NamedTuple):
    """An MCP call report (`POST /_gateway/mcp/calls`), for the addons' `report` hook."""

    report: CallReport


Message = Opened | Answered | Chunk | Ended | Report | Relayed
_KINDS: tuple[type[Message], ...] = (Opened, Answered, Chunk, Ended, Report, Relayed)
_KIND_NUMBERS = {kind: number for number, kind in enumerate(_KINDS)}


def encode(batch: list[Message]) -> list[tuple]:
    """The batch as plain tuples, for the pipe: marshal (`frames.py`) writes only plain builtin types, and pickle
    wrote a named tuple through its Python-level reduce (per chunk message, built and pickled: 1.4 µs as a named
    tuple, 0.6 µs converted here)."""
    numbers = _KIND_NUMBERS
    return [(numbers[type(message)], *message) for message in batch]


def decode(batch: list[tuple]) -> list[Message]:
    return [_KINDS[raw[0]]._make(raw[1:]) for raw in batch]


def opened(flow_id: int, flow: Flow) -> Opened:
    route = flow.route
    protocol = route.protocol
    return Opened(flow_id, flow.method, flow.raw_path, _plain(flow.request_headers), flow.request_body,
                  protocol.name if protocol else None, protocol.upstream if protocol else None, route.kind.value,
                  route.base_url, route.prefix, flow.upstream_url, flow.started_ns, flow.websocket)


def relayed(flow_id: int, at_ns: int, message: SocketMessage) -> Relayed:
    return Relayed(flow_id, at_ns, message.from_client, int(message.opcode), message.payload)


def answered(flow_id: int, flow: Flow) -> Answered:
    headers = _plain(flow.response_headers) if flow.response_headers is not None else None
    return Answered(flow_id, flow.upstream_started_ns, flow.status, headers, flow.response_started_ns)


def ended(flow_id: int, flow: Flow) -> Ended:
    return Ended(flow_id, flow.upstream_started_ns, flow.ended_ns, flow.error, flow.error_message)


def _plain(headers: CIMultiDictProxy[str]) -> Headers:
    # aiohttp's parser names headers with `istr`, a str subclass: marshal cannot write it (the whole batch would go
    # as a pickle, which writes it through a Python-level reduce)
    return [(str(name), value) for name, value in headers.items()]


def _headers(pairs: Headers) -> CIMultiDictProxy[str]:
    return CIMultiDictProxy(CIMultiDict(pairs))


class FlowReplicas:
    """The receiving side: `apply(message)` yields (hook, flow, chunk args) for each addon call a flow message
    implies (`Report` is not a flow message: the worker hands it to the `report` hook itself)."""

    def __init__(self) -> None:
        self._open: dict[int, Flow] = {}

    def __len__(self) -> int:
        return len(self._open)

    def apply(self, message: Opened | Answered | Chunk | Relayed | Ended) -> Iterator[tuple[str, Flow, tuple]]:
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
                headers = message.response_headers
                flow.response_headers = _headers(headers) if headers is not None else None
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
            message.method, message.raw_path, _headers(message.request_headers), message.request_body, route,
            message.upstream_url, message.started_ns, websocket=message.websocket)
        return flow
