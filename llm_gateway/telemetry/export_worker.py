"""The exporter process: reads span batches from stdin, sends each as OTLP/HTTP, answers 1 or 0 on stdout.

Protobuf encoding and the HTTP post happen here, so they never hold the relay's GIL. `export_process.ExportProcess`
starts it at the lowest CPU priority (set before this module, and OpenTelemetry, is even imported): where it
shares a core with the relay, the relay's next chunk wins and the export waits for a gap (if a saturated core
never leaves one, the gateway's batch processor drops spans, and says so, rather than slowing traffic). It ignores
SIGINT and SIGTERM (a Ctrl-C reaches the whole process group): the gateway flushes its last spans through it on
shutdown, then closes stdin, and the end of stdin is the only signal to stop.
"""

from __future__ import annotations

import signal
import sys

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace.export import SpanExportResult

from llm_gateway.telemetry.span_wire import new_scope_cache, read_frame, readable_spans


def main() -> int:
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    config = read_frame(stdin)
    if config is None:
        return 0
    resource = Resource(config["resource"], config["schema_url"])
    # Headers, timeout, compression and certificates come from the OTEL_* variables the gateway passed on.
    exporter = OTLPSpanExporter(endpoint=config["endpoint"])
    scopes = new_scope_cache()
    try:
        while (records := read_frame(stdin)) is not None:
            result = exporter.export(readable_spans(records, resource, scopes))
            stdout.write(b"1" if result is SpanExportResult.SUCCESS else b"0")
            stdout.flush()
    finally:
        exporter.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
