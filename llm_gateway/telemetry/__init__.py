"""Everything that knows OpenTelemetry lives in this package; nothing outside it imports `opentelemetry`."""

from llm_gateway.telemetry.setup import Telemetry, TelemetryConfigError, configure, upstream_trace_configs

__all__ = ["Telemetry", "TelemetryConfigError", "configure", "upstream_trace_configs"]
