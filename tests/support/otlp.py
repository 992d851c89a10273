"""A real OTLP/HTTP receiver on loopback: accepts protobuf exports at /v1/traces, /v1/metrics and /v1/logs and
keeps the spans and log records (events) as plain dataclasses for assertions."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from llm_gateway.recordings.replay import listen

KINDS = {0: "UNSPECIFIED", 1: "INTERNAL", 2: "SERVER", 3: "CLIENT", 4: "PRODUCER", 5: "CONSUMER"}


def _value(v: AnyValue) -> Any:
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return [_value(x) for x in v.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: _value(kv.value) for kv in v.kvlist_value.values}
    return getattr(v, kind) if kind else None


@dataclass
class ReceivedSpan:
    name: str
    trace_id: str
    span_id: str
    parent_id: str | None
    kind: str
    start_ns: int
    end_ns: int
    attributes: dict[str, Any]
    status_code: int  # 0 unset, 1 ok, 2 error
    status_message: str
    resource: dict[str, Any] = field(default_factory=dict)
    links: list[tuple[str, str]] = field(default_factory=list)  # (trace id, span id) of each linked span

    @property
    def duration_s(self) -> float:
        return (self.end_ns - self.start_ns) / 1e9


@dataclass
class ReceivedLog:
    event_name: str
    trace_id: str
    span_id: str
    time_ns: int
    severity_number: int
    attributes: dict[str, Any]


class OTLPReceiver:
    def __init__(self) -> None:
        self.spans: list[ReceivedSpan] = []
        self.trace_headers: list[dict[str, str]] = []  # the HTTP headers of each trace export
        self.metric_names: set[str] = set()
        self.metrics: dict[str, list[Any]] = {}
        self.logs: list[ReceivedLog] = []
        self._runner: web.AppRunner | None = None
        self.port = 0
        self._arrived = asyncio.Event()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self, port: int = 0) -> OTLPReceiver:
        """Serves on `port` (0: a free one); started again after `stop()` on its old port, it is a backend back
        from an outage, with the spans it had."""
        app = web.Application()
        app.router.add_post("/v1/traces", self._traces)
        app.router.add_post("/v1/metrics", self._metrics)
        app.router.add_post("/v1/logs", self._logs)
        self._runner = web.AppRunner(app, access_log=None)
        self.port = await listen(self._runner, "127.0.0.1", port)
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _traces(self, request: web.Request) -> web.Response:
        export = ExportTraceServiceRequest.FromString(await request.read())
        self.trace_headers.append(dict(request.headers))
        for rs in export.resource_spans:
            resource = {kv.key: _value(kv.value) for kv in rs.resource.attributes}
            for ss in rs.scope_spans:
                for s in ss.spans:
                    self.spans.append(ReceivedSpan(
                        name=s.name, trace_id=s.trace_id.hex(), span_id=s.span_id.hex(),
                        parent_id=s.parent_span_id.hex() or None, kind=KINDS[s.kind],
                        start_ns=s.start_time_unix_nano, end_ns=s.end_time_unix_nano,
                        attributes={kv.key: _value(kv.value) for kv in s.attributes},
                        status_code=s.status.code, status_message=s.status.message, resource=resource,
                        links=[(link.trace_id.hex(), link.span_id.hex()) for link in s.links],
                    ))
        self._arrived.set()
        return web.Response(content_type="application/x-protobuf")

    async def _metrics(self, request: web.Request) -> web.Response:
        export = ExportMetricsServiceRequest.FromString(await request.read())
        for rm in export.resource_metrics:
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    self.metric_names.add(m.name)
                    self.metrics.setdefault(m.name, []).append(m)
        return web.Response(content_type="application/x-protobuf")

    async def _logs(self, request: web.Request) -> web.Response:
        export = ExportLogsServiceRequest.FromString(await request.read())
        for rl in export.resource_logs:
            for sl in rl.scope_logs:
                for r in sl.log_records:
                    self.logs.append(ReceivedLog(
                        event_name=r.event_name, trace_id=r.trace_id.hex(), span_id=r.span_id.hex(),
                        time_ns=r.time_unix_nano, severity_number=r.severity_number,
                        attributes={kv.key: _value(kv.value) for kv in r.attributes},
                    ))
        return web.Response(content_type="application/x-protobuf")

    async def wait_for(self, predicate: Callable[[list[ReceivedSpan]], bool], timeout: float = 10.0
                       ) -> list[ReceivedSpan]:
        """Wait until predicate(spans) holds; returns the spans."""
        deadline = time.monotonic() + timeout
        while not predicate(self.spans):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                names = [s.name for s in self.spans]
                raise AssertionError(f"spans never matched within {timeout}s; received {names}")
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), min(remaining, 0.2))
        return self.spans
