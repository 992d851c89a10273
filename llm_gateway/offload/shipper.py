"""The relay's one tracing addon when tracing runs in the telemetry process: each hook becomes a message, sent
once the bytes it is about went to the client."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from llm_gateway.flow import Flow, observe_chunks, observe_messages
from llm_gateway.mcp.report import CallReport
from llm_gateway.offload import flow_wire
from llm_gateway.offload.process import TelemetryProcess
from llm_gateway.protocols.base import SocketMessage


@dataclass(slots=True)
class _Shipping:
    """A flow on its way to the telemetry process."""

    generation: int  # of the telemetry process it goes to
    flow_id: int
    announced: bool = False  # its request (and response head) went into the pipe
    last_chunk: tuple[int, bytes] | None = None  # its one chunk, held for `Exchanged` (the flow had ended)


class FlowShipper:
    """Addon: copies each flow into the telemetry process's pipe; sheds new flows while that process is behind or
    not running (the process counts them).

    Nothing is copied in front of the upstream call or the first byte to the client: a flow's request and response
    head go into the pipe with its first chunk (or message), right after that chunk was written, or with its end
    (about 8 µs a request that traced requests no longer wait for). A flow that had ended when its first chunk came
    (the relay had the answer whole: `Flow.ended_ns` is set before its one chunk is observed) goes as one message.
    """

    def __init__(self, process: TelemetryProcess) -> None:
        self._process = process
        self._ids = itertools.count(1)

    def __repr__(self) -> str:
        return f"FlowShipper(-> {self._process.destination})"

    def request(self, flow: Flow) -> None:
        process = self._process
        generation = process.open_flow()
        if generation is None:
            return
        shipping = _Shipping(generation, next(self._ids))
        flow.state()[self] = shipping
        flow_id, send = shipping.flow_id, process.send

        if flow.websocket:
            def on_message(at_ns: int, message: SocketMessage) -> None:
                if not shipping.announced:
                    self._announce(flow, shipping)
                send(flow_wire.relayed(flow_id, at_ns, message))

            observe_messages(flow, on_message)
        else:
            def on_chunk(at_ns: int, data: bytes) -> None:
                if not shipping.announced:
                    if flow.ended_ns is not None:  # the whole answer: it goes with the flow's end, in one message
                        shipping.last_chunk = (at_ns, data)
                        return
                    self._announce(flow, shipping)
                send(flow_wire.chunk(flow_id, at_ns, data))

            observe_chunks(flow, on_chunk)

    def done(self, flow: Flow) -> None:
        self._end(flow)

    def error(self, flow: Flow) -> None:
        self._end(flow)

    def _announce(self, flow: Flow, shipping: _Shipping) -> None:
        """The flow's request, and its response head once there is one, ahead of anything else of it."""
        shipping.announced = True
        process = self._process
        if shipping.generation != process.generation:
            return  # the process it was admitted to was lost since (counted there): the new one never hears of it
        process.send(flow_wire.opened(shipping.flow_id, flow))
        if flow.response_started_ns is not None:  # the upstream answered: the relay set it for `response_headers`
            process.send(flow_wire.answered(shipping.flow_id, flow))

    def _end(self, flow: Flow) -> None:
        shipping = flow.state().pop(self, None)
        if shipping is None or not self._process.end_flow(shipping.generation):
            return  # untraced, or its telemetry process was lost (it was counted as untraced then)
        if shipping.announced:
            self._process.send(flow_wire.ended(shipping.flow_id, flow))
        else:
            self._process.send(flow_wire.exchanged(shipping.flow_id, flow, shipping.last_chunk))

    def health(self) -> dict:
        """For `GET /_gateway/health`: is tracing keeping up?"""
        process = self._process
        return {"telemetry": {"destination": process.destination, "process_running": process.running,
                              "backlog_bytes": process.backlog_bytes,
                              "unacknowledged_flows": process.unacknowledged_flows,
                              "untraced_requests": process.untraced,
                              "spans_lost": process.spans_lost, "spool": process.spool}}

    def report(self, report: CallReport) -> None:
        """An MCP call report from an `llm-gateway mcp` wrapper (`POST /_gateway/mcp/calls`)."""
        self._process.send(flow_wire.report(report))
