"""Flows as messages, so the telemetry process can watch what the relay process relays (see `process.py`).

Sans-IO. The relay side turns each hook into a tuple of plain values (`opened`, `answered`, `chunk`, `ended`);
`FlowReplicas` on the other side rebuilds an equivalent `Flow` from them and says which addon hook to call.
"""

from __future__ import annotations

from collections.abc import Iterator

from multidict import CIMultiDict, CIMultiDictProxy

from llm_gateway.flow import Flow
from llm_gateway.routing import Kind, Route, protocol_named

OPEN, HEAD, CHUNK, END, REPORT = "open", "head", "chunk", "end", "report"


def opened(flow_id: int, flow: Flow) -> tuple:
    route = flow.route
    protocol = route.protocol
    return (OPEN, flow_id, flow.method, flow.raw_path, list(flow.request_headers.items()), flow.request_body,
            protocol.name if protocol else None, protocol.upstream if protocol else None, route.kind.value,
            route.base_url, route.prefix, flow.upstream_url, flow.started_ns)


def answered(flow_id: int, flow: Flow) -> tuple:
    headers = list(flow.response_headers.items()) if flow.response_headers is not None else None
    return (HEAD, flow_id, flow.upstream_started_ns, flow.status, headers, flow.response_started_ns)


def chunk(flow_id: int, at_ns: int, data: bytes) -> tuple:
    return (CHUNK, flow_id, at_ns, data)


def ended(flow_id: int, flow: Flow) -> tuple:
    return (END, flow_id, flow.upstream_started_ns, flow.ended_ns, flow.error, flow.error_message)


def _headers(pairs: list[tuple[str, str]]) -> CIMultiDictProxy[str]:
    return CIMultiDictProxy(CIMultiDict(pairs))


class FlowReplicas:
    """The receiving side: `apply(message)` yields (hook, flow[, chunk args]) for each addon call it implies."""

    def __init__(self) -> None:
        self._open: dict[int, Flow] = {}

    def __len__(self) -> int:
        return len(self._open)

    def apply(self, message: tuple) -> Iterator[tuple[str, Flow, tuple]]:
        kind, flow_id = message[0], message[1]
        if kind == OPEN:
            (_, _, method, raw_path, headers, body, protocol, upstream, route_kind, base_url, prefix, upstream_url,
             started_ns) = message
            route = Route(protocol_named(protocol, upstream) if protocol else None, Kind(route_kind), base_url,
                          prefix)
            flow = self._open[flow_id] = Flow(method, raw_path, _headers(headers), body, route, upstream_url,
                                              started_ns)
            yield "request", flow, ()
            return
        flow = self._open.get(flow_id)
        if flow is None:
            return  # its opening was shed: nothing to replay
        if kind == HEAD:
            _, _, flow.upstream_started_ns, flow.status, headers, flow.response_started_ns = message
            flow.response_headers = _headers(headers) if headers is not None else None
            yield "response_headers", flow, ()
        elif kind == CHUNK:
            _, _, at_ns, data = message
            if flow.chunks is not None:
                flow.chunks.append((at_ns, data))
            yield "chunk", flow, (at_ns, data)
        elif kind == END:
            _, _, flow.upstream_started_ns, flow.ended_ns, flow.error, flow.error_message = message
            del self._open[flow_id]
            yield ("error" if flow.error else "done"), flow, ()
