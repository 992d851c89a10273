"""Spans are never dropped silently: the batch processor waits for room instead of dropping, and every span lost
anyway is counted by cause.

The SDK's BatchSpanProcessor drops a span when its queue (OTEL_BSP_MAX_QUEUE_SIZE) is full and only logs "Queue
full, dropping Span". In the telemetry process, whose flows wait in a pipe anyway, the right answer to a full queue
is to stop taking flows until the exporter caught up: `WaitingBatchSpanProcessor.on_end` blocks the thread that
ends the span (the replay, or the ticker) until there is room. The pipe then fills, and the relay sheds new flows
(counted there as untraced requests): backpressure reaches the one place that may decide to trace less. A span is
still lost when the exporter makes no room for `wait_s` (a backend that hangs), or when an export fails
(`CountingSpanExporter`); both are counted in `SpanLosses`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

#: how long a span waits for room in the queue before it is dropped (and counted): past every export timeout
WAIT_FOR_ROOM_S = 60.0
_POLL_S = 0.002


@dataclass(slots=True)
class SpanLosses:
    """Spans lost by cause, and spans handed to the exporter successfully; shared by the threads that count."""

    queue_full: int = 0  # no room in the batch queue within WAIT_FOR_ROOM_S
    export_failed: int = 0  # the exporter said FAILURE (or raised) for their batch
    exported: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, cause: str, spans: int) -> None:
        with self._lock:
            setattr(self, cause, getattr(self, cause) + spans)

    @property
    def lost(self) -> int:
        return self.queue_full + self.export_failed

    def as_dict(self) -> dict[str, int]:
        return {"queue_full": self.queue_full, "export_failed": self.export_failed, "exported": self.exported}


class CountingSpanExporter(SpanExporter):
    """Wraps the exporter the batch processor calls, and counts what each export did with its spans."""

    def __init__(self, inner: SpanExporter, losses: SpanLosses) -> None:
        self._inner = inner
        self._losses = losses

    def __repr__(self) -> str:
        return f"CountingSpanExporter({self._inner!r})"

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        try:
            result = self._inner.export(spans)
        except Exception:
            self._losses.add("export_failed", len(spans))
            raise
        self._losses.add("exported" if result is SpanExportResult.SUCCESS else "export_failed", len(spans))
        return result

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._inner.force_flush(timeout_millis)

    def shutdown(self) -> None:
        self._inner.shutdown()


class WaitingBatchSpanProcessor(BatchSpanProcessor):
    """A BatchSpanProcessor (every OTEL_BSP_* variable applies) whose `on_end` waits for room in a full queue.

    Only for a thread that may block: the telemetry process's replay and ticker, never an event loop."""

    def __init__(self, exporter: SpanExporter, losses: SpanLosses, wait_s: float = WAIT_FOR_ROOM_S) -> None:
        super().__init__(CountingSpanExporter(exporter, losses))
        self._losses = losses
        self._wait_s = wait_s
        # The SDK's queue and its worker's wake-up event (BatchProcessor, opentelemetry-sdk >= 1.33); without
        # them, spans are counted as lost when the SDK drops them but nobody waits.
        batch = getattr(self, "_batch_processor", None)
        self._queue = getattr(batch, "_queue", None)
        self._wake = getattr(batch, "_worker_awaken", None)

    def on_end(self, span: ReadableSpan) -> None:
        if not (span.context and span.context.trace_flags.sampled):
            return
        queue = self._queue
        full = queue is not None and queue.maxlen is not None and len(queue) >= queue.maxlen
        if full and not self._wait_for_room(queue):
            self._losses.add("queue_full", 1)  # the SDK drops the oldest queued span to take this one
        super().on_end(span)

    def _wait_for_room(self, queue) -> bool:
        if self._wake is not None:
            self._wake.set()  # the worker exports now instead of at its next scheduled time
        deadline = time.monotonic() + self._wait_s
        while len(queue) >= queue.maxlen:
            if time.monotonic() > deadline:
                return False
            time.sleep(_POLL_S)
        return True
