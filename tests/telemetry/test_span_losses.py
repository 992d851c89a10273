"""Spans are never dropped silently (issue 19): a full batch queue makes the span's end wait for room, and what is
lost anyway (no room in time, a failed export) is counted by cause."""

from __future__ import annotations

import threading
from collections.abc import Sequence

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from llm_gateway.telemetry.span_losses import SpanLosses, WaitingBatchSpanProcessor


class SlowExporter(SpanExporter):
    """Takes `delay_s` per batch, or fails every batch; keeps the names it got."""

    def __init__(self, delay_s: float = 0.0, result: SpanExportResult = SpanExportResult.SUCCESS) -> None:
        self.delay_s, self.result = delay_s, result
        self.names: list[str] = []
        self.go_on = threading.Event()
        self.go_on.set()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.go_on.wait()
        threading.Event().wait(self.delay_s)
        self.names += [span.name for span in spans]
        return self.result

    def shutdown(self) -> None:
        self.go_on.set()


def _provider(exporter: SpanExporter, losses: SpanLosses, wait_s: float, monkeypatch) -> TracerProvider:
    monkeypatch.setenv("OTEL_BSP_MAX_QUEUE_SIZE", "8")
    monkeypatch.setenv("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "4")
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "5000")
    provider = TracerProvider()
    provider.add_span_processor(WaitingBatchSpanProcessor(exporter, losses, wait_s=wait_s))
    return provider


def test_a_full_queue_makes_the_span_end_wait_and_no_span_is_lost(monkeypatch) -> None:
    exporter, losses = SlowExporter(delay_s=0.01), SpanLosses()
    provider = _provider(exporter, losses, 10.0, monkeypatch)  # OTEL_BSP_MAX_QUEUE_SIZE=8 applies
    tracer = provider.get_tracer("test")
    for n in range(100):
        tracer.start_span(f"span {n}").end()
    provider.shutdown()

    assert sorted(exporter.names) == sorted(f"span {n}" for n in range(100))
    assert losses.as_dict() == {"queue_full": 0, "export_failed": 0, "exported": 100}


def test_spans_that_find_no_room_in_time_and_failed_exports_are_counted(monkeypatch) -> None:
    exporter, losses = SlowExporter(), SpanLosses()
    exporter.go_on.clear()  # a backend that hangs
    provider = _provider(exporter, losses, 0.01, monkeypatch)
    tracer = provider.get_tracer("test")
    for n in range(20):
        tracer.start_span(f"span {n}").end()
    assert losses.queue_full > 0
    exporter.go_on.set()
    provider.shutdown()
    assert losses.queue_full + losses.exported == 20

    failing, losses = SlowExporter(result=SpanExportResult.FAILURE), SpanLosses()
    provider = _provider(failing, losses, 10.0, monkeypatch)
    for n in range(5):
        provider.get_tracer("test").start_span(f"span {n}").end()
    provider.shutdown()
    assert losses.as_dict() == {"queue_full": 0, "export_failed": 5, "exported": 0}
    assert losses.lost == 5
