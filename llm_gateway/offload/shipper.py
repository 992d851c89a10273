"""The relay's one tracing addon when tracing runs in the telemetry process: each hook becomes a message."""

from __future__ import annotations

import itertools

from llm_gateway.flow import Flow, observe_chunks, observe_messages
from llm_gateway.mcp.report import CallReport
from llm_gateway.offload import flow_wire
from llm_gateway.offload.process import TelemetryProcess


class FlowShipper:
    """Addon: copies each flow into the telemetry process's pipe; sheds new flows while that process is behind or
    not running (the process counts them)."""

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
        flow_id = next(self._ids)
        flow.state()[self] = (generation, flow_id)
        process.send(flow_wire.opened(flow_id, flow))
        if flow.websocket:
            observe_messages(flow, lambda at_ns, message: process.send(flow_wire.relayed(flow_id, at_ns, message)))
        else:
            observe_chunks(flow, lambda at_ns, data: process.send(flow_wire.Chunk(flow_id, at_ns, data)))

    def response_headers(self, flow: Flow) -> None:
        ours = flow.state().get(self)
        if ours is not None and ours[0] == self._process.generation:
            self._process.send(flow_wire.answered(ours[1], flow))

    def done(self, flow: Flow) -> None:
        self._end(flow)

    def error(self, flow: Flow) -> None:
        self._end(flow)

    def _end(self, flow: Flow) -> None:
        ours = flow.state().pop(self, None)
        if ours is not None and self._process.end_flow(ours[0]):
            self._process.send(flow_wire.ended(ours[1], flow))

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
        self._process.send(flow_wire.Report(report))
