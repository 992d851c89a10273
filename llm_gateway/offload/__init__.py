"""Tracing offloaded to a process of its own: the relay's process only copies each flow into a pipe.

Why: parsing bodies, placing calls in sessions, building spans and encoding OTLP cost about 0.3 ms of CPU per
model call in pure Python (bench/). In the relay's process that work sat in front of the next request and, on
the export thread, held the interpreter lock while a chunk waited. Here the relay's process does one cheap step
per hook (`shipper.FlowShipper`: a message into a batch; one pipe write every 10 ms at most), and the telemetry
process (`worker.py`) runs the tracing addons on a replica of each flow, at the lowest CPU priority. On a
machine with a core to spare it runs beside the relay; on a saturated core the relay wins, the backlog grows to
a bound, and new flows are then left untraced (counted and logged) rather than slowing traffic.

The layers: `frames` (length-prefixed pickles on a pipe), `flow_wire` (the named messages a flow becomes, and
the replicas built from them), `process` (the child process and the pipe's writing end), `shipper` (the relay's
addon), `worker` (the child's main loop). Nothing here knows OpenTelemetry: the worker hands the replicas to the
addons that `addons.default_addons` builds around a `telemetry.Telemetry`.
"""

from llm_gateway.offload.process import TelemetryProcess
from llm_gateway.offload.shipper import FlowShipper

__all__ = ["FlowShipper", "TelemetryProcess"]
