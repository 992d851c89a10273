"""The relay's one tracing addon when tracing runs in the telemetry process: each hook becomes a message."""

from __future__ import annotations

import itertools
import logging
import time

from llm_gateway.flow import Flow, observe_chunks
from llm_gateway.mcp.report import CallReport
from llm_gateway.offload import flow_wire
from llm_gateway.offload.process import TelemetryProcess

log = logging.getLogger("llm_gateway.telemetry")


class FlowShipper:
    """Addon: copies each flow into the telemetry process's pipe; sheds new flows while that process is behind."""

    def __init__(self, process: TelemetryProcess) -> None:
        self._process = process
        self._ids = itertools.count(1)
        self.untraced = 0
        self._warned_at = 0.0

    def __repr__(self) -> str:
        return f"FlowShipper(-> {self._process.destination})"

    def request(self, flow: Flow) -> None:
        process = self._process
        if not process.accepting():
            self._shed()
            return
        flow_id = next(self._ids)
        flow.state()[self] = flow_id
        process.send(flow_wire.opened(flow_id, flow))
        observe_chunks(flow, lambda at_ns, data: process.send(flow_wire.Chunk(flow_id, at_ns, data)))

    def response_headers(self, flow: Flow) -> None:
        flow_id = flow.state().get(self)
        if flow_id is not None:
            self._process.send(flow_wire.answered(flow_id, flow))

    def done(self, flow: Flow) -> None:
        self._end(flow)

    def error(self, flow: Flow) -> None:
        self._end(flow)

    def _end(self, flow: Flow) -> None:
        flow_id = flow.state().pop(self, None)
        if flow_id is not None:
            self._process.send(flow_wire.ended(flow_id, flow))

    def health(self) -> dict:
        """For `GET /_gateway/health`: is tracing keeping up?"""
        process = self._process
        return {"telemetry": {"destination": process.destination, "process_running": process.running,
                              "backlog_bytes": process.backlog_bytes, "untraced_requests": self.untraced}}

    def report(self, report: CallReport) -> None:
        """An MCP call report from an `llm-gateway mcp` wrapper (`POST /_gateway/mcp/calls`)."""
        self._process.send(flow_wire.Report(report))

    def _shed(self) -> None:
        self.untraced += 1
        now = time.monotonic()
        if now - self._warned_at >= 60:
            self._warned_at = now
            log.warning("llm-gateway: the telemetry process is behind; %d requests relayed untraced so far",
                        self.untraced)

