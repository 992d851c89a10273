"""The OTLP/HTTP span exporter with the gateway's own encoder (`otlp_encoding.py`).

The SDK's OTLPSpanExporter builds its HTTP client from every OTEL_EXPORTER_OTLP_* setting (endpoint, headers,
compression, certificates, timeout) and retries within the timeout; it is kept for exactly that. Only the encoding
is the gateway's: spans are encoded once, the bytes posted with that client, and, when the backend cannot take them,
the same bytes spooled (`spool.py`).
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Callable, Sequence

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from llm_gateway.telemetry.otlp_encoding import OtlpSpanEncoder


class Sent(enum.Enum):
    """What became of one attempt to send an encoded batch."""

    #: the backend took it
    OK = "ok"
    #: the backend cannot be reached, or answered that it cannot take it now: try again later
    RETRY = "retry"
    #: the backend refused it for good (a 4xx other than 408 and 429): sending it again would not help
    REFUSED = "refused"


#: sends one encoded batch
Sender = Callable[[bytes], Sent]
#: encodes a batch of spans as an OTLP ExportTraceServiceRequest
Encoder = Callable[[Sequence[ReadableSpan]], bytes]


def otlp_sender(exporter: SpanExporter) -> Sender | None:
    """A sender that posts an encoded batch with `exporter`'s own HTTP client (its endpoint, headers, compression,
    certificates, timeout and retries); None when this exporter version has no such client."""
    client = getattr(exporter, "_client", None)
    if not callable(getattr(client, "export", None)):
        return None

    def send(data: bytes) -> Sent:
        result = client.export(data)
        if result.success:
            return Sent.OK
        status = result.status_code
        return Sent.REFUSED if status is not None and 400 <= status < 500 and status not in (408, 429) else Sent.RETRY

    return send


@functools.cache
def shared_encoder() -> OtlpSpanEncoder:
    """The process's encoder: its exporters share what it keeps, and the telemetry process makes it forget that
    once traffic pauses (`offload/memory.py`)."""
    return OtlpSpanEncoder()


def otlp_encoder() -> Encoder:
    return shared_encoder().encode


class EncodingSpanExporter(SpanExporter):
    """`inner`'s HTTP client (`send`) fed by the gateway's encoder; `inner` is kept for flush and shutdown."""

    def __init__(self, inner: SpanExporter, send: Sender, encode: Encoder | None = None) -> None:
        self._inner = inner
        self._send = send
        self._encode = encode or otlp_encoder()

    def __repr__(self) -> str:
        return f"EncodingSpanExporter({self._inner!r})"

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS if self._send(self._encode(spans)) is Sent.OK else SpanExportResult.FAILURE

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._inner.force_flush(timeout_millis)

    def shutdown(self) -> None:
        self._inner.shutdown()
