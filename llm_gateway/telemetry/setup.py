"""OpenTelemetry SDK setup from the standard `OTEL_*` environment.

With no endpoint and no exporter named, nothing is built: `configure()` returns None and the relay does no
tracing work at all. Export runs on the SDK's background thread (BatchSpanProcessor), so a slow or dead
backend never blocks a request. When exporting, all of this runs in the telemetry process (`offload/`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from opentelemetry import _logs as otel_logs
from opentelemetry import metrics as otel_metrics
from opentelemetry.propagate import set_global_textmap
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, SynchronousMultiSpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

if TYPE_CHECKING:  # the metrics and logs SDKs are imported where a pipeline is built: the relay never needs them
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import LogRecordExporter
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import MetricReader

    from llm_gateway.telemetry.chat_metrics import ChatHistograms

from llm_gateway import __version__
from llm_gateway.redact import url_without_credentials
from llm_gateway.telemetry.content import content_capture
from llm_gateway.telemetry.prices import check_price_file
from llm_gateway.telemetry.span_losses import SpanLosses, WaitingBatchSpanProcessor
from llm_gateway.telemetry.spans import SpanMaker
from llm_gateway.telemetry.spool import SpanSpool, SpoolingSpanExporter, spool_bytes, spooled
from llm_gateway.telemetry.upstream_spans import http_span_mode

log = logging.getLogger("llm_gateway.telemetry")

DEFAULT_SERVICE_NAME = "llm-gateway"
INSTRUMENTATION_NAME = "llm_gateway"
_SUPPORTED_PROTOCOLS = ("http/protobuf", "")
_DEFAULT_TRACES_ENDPOINT = "http://localhost:4318/v1/traces"


class TelemetryConfigError(ValueError):
    """An OTEL_* variable names something this gateway cannot do; the message says which."""


@dataclass(slots=True)
class Telemetry:
    """What the rest of the gateway needs from OpenTelemetry, and the one place that shuts it down."""

    tracer_provider: TracerProvider
    #: makes the gateway's spans (`spans.py`), which go to `span_processors`
    spans: SpanMaker
    #: every span processor, registered with the provider (the instrumentations' spans go there too)
    span_processors: SynchronousMultiSpanProcessor
    meter_provider: MeterProvider | None
    destination: str  # for the startup line, e.g. "otlp http://127.0.0.1:4318/v1/traces"
    #: events (log records): only when the content capture mode asks for the inference details events
    logger_provider: LoggerProvider | None = None
    #: spans lost by cause, with `configure(wait_for_room=True)` (the telemetry process)
    span_losses: SpanLosses | None = None
    #: where spans wait while the trace backend is down (`spool.py`); None when nothing spools
    spool: SpanSpool | None = None
    #: the histograms aggregated by the gateway and exported with the meter provider's metrics
    chat_histograms: ChatHistograms | None = None

    def add_span_processor(self, processor: SpanProcessor) -> None:
        """Another processor for every span, the gateway's and the instrumentations' (`llm-gateway run`, tests)."""
        self.span_processors.add_span_processor(processor)

    @property
    def meter(self) -> otel_metrics.Meter:
        provider = self.meter_provider or otel_metrics.NoOpMeterProvider()
        return provider.get_meter(INSTRUMENTATION_NAME, __version__)

    @property
    def logger(self) -> otel_logs.Logger | None:
        if self.logger_provider is None:
            return None
        return self.logger_provider.get_logger(INSTRUMENTATION_NAME, __version__)

    def shutdown(self) -> None:
        """Flush what is pending and stop the exporters (bounded by OTEL_BSP_EXPORT_TIMEOUT)."""
        self.tracer_provider.shutdown()
        if self.meter_provider is not None:
            self.meter_provider.shutdown()
        if self.logger_provider is not None:
            self.logger_provider.shutdown()


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


def traces_endpoint(env: Mapping[str, str]) -> str | None:
    """The OTLP/HTTP traces URL as the spec's path rule gives it, or None when none is configured."""
    specific = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip()
    if specific:
        return specific
    generic = env.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
    if generic:
        return generic.rstrip("/") + "/v1/traces"
    return None


def _exporter_names(env: Mapping[str, str], endpoint: str | None) -> list[str]:
    raw = env.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if not raw:
        return ["otlp"] if endpoint else []
    names = [n.strip() for n in raw.split(",") if n.strip()]
    return [] if names == ["none"] else [n for n in names if n != "none"]


def _resource(env: Mapping[str, str]) -> Resource:
    """Resource attributes from the given environment (not only the process's: the demo and tests pass their
    own), `OTEL_SERVICE_NAME` over `service.name` in `OTEL_RESOURCE_ATTRIBUTES`, default `llm-gateway`."""
    attributes: dict[str, str] = {"service.version": __version__}
    for item in env.get("OTEL_RESOURCE_ATTRIBUTES", "").split(","):
        key, sep, value = item.partition("=")
        if sep and key.strip():
            attributes[key.strip()] = unquote(value.strip())
    attributes["service.name"] = env.get("OTEL_SERVICE_NAME") or attributes.get("service.name") or (
        DEFAULT_SERVICE_NAME
    )
    return Resource.create(attributes)


def _destination(name: str, env: Mapping[str, str]) -> str:
    """Where exporter `name` sends spans, for the startup line; raises on a setting this gateway cannot honour."""
    if name == "console":
        return "console"
    if name != "otlp":
        raise TelemetryConfigError(f"OTEL_TRACES_EXPORTER={name!r} is not supported (use otlp, console or none)")
    protocol = (
        env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or env.get("OTEL_EXPORTER_OTLP_PROTOCOL") or ""
    ).strip()
    if protocol not in _SUPPORTED_PROTOCOLS:
        raise TelemetryConfigError(
            f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol!r} is not supported; llm-gateway exports http/protobuf"
        )
    for variable in ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"):
        _check_endpoint(variable, env.get(variable, "").strip())
    return f"otlp {traces_endpoint(env) or _DEFAULT_TRACES_ENDPOINT}"


def _check_endpoint(variable: str, url: str) -> None:
    try:
        parts = urlsplit(url)
        usable = parts.scheme in ("http", "https") and bool(parts.hostname)
    except ValueError:
        usable = False
    if url and not usable:
        raise TelemetryConfigError(f"{variable}={url!r} is not an http:// or https:// URL "
                                   "(e.g. http://localhost:4318)")


def _span_exporter(name: str, env: Mapping[str, str]) -> SpanExporter:
    if name == "console":
        return ConsoleSpanExporter()
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    # The exporter reads headers, timeout, compression and certificates from the process environment. What it
    # cannot send while the backend is down is spooled to disk and sent later (`spool.py`).
    endpoint = traces_endpoint(env) or _DEFAULT_TRACES_ENDPOINT
    return spooled(OTLPSpanExporter(endpoint=endpoint), env, endpoint)


def export_plan(env: Mapping[str, str]) -> list[tuple[str, str]]:
    """(exporter name, destination) for each span exporter the environment asks for; [] when nothing is to be
    exported. Checks every setting (raises TelemetryConfigError) without building anything."""
    names = [] if _truthy(env.get("OTEL_SDK_DISABLED")) else _exporter_names(env, traces_endpoint(env))
    plan = [(name, _destination(name, env)) for name in names]
    if plan:
        try:
            http_span_mode(env)
            spool_bytes(env)
            check_price_file(env)  # the spans' costs: a bad LLM_GATEWAY_PRICES stops serve here
        except ValueError as exc:
            raise TelemetryConfigError(str(exc)) from None
    return plan


def _metric_reader(env: Mapping[str, str], resource: Resource) -> tuple[MetricReader, ChatHistograms] | None:
    """The periodic OTLP reader, whose exports also carry the gateway's local histograms (returned with it)."""
    exporter_name = env.get("OTEL_METRICS_EXPORTER", "").strip().lower()
    generic = env.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
    specific = env.get("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "").strip()
    if exporter_name == "none" or not (generic or specific or exporter_name == "otlp"):
        return None
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
    from opentelemetry.sdk.util.instrumentation import InstrumentationScope

    from llm_gateway.telemetry.chat_metrics import chat_histograms
    from llm_gateway.telemetry.local_histogram import WithLocalHistograms

    endpoint = specific or (generic.rstrip("/") + "/v1/metrics" if generic else None)
    histograms = chat_histograms()
    scope = InstrumentationScope(INSTRUMENTATION_NAME, __version__)
    exporter = WithLocalHistograms(OTLPMetricExporter(endpoint=endpoint), list(histograms), scope, resource)
    return PeriodicExportingMetricReader(exporter), histograms


def _logs_endpoint(env: Mapping[str, str]) -> str:
    specific = env.get("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", "").strip()
    generic = env.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
    return specific or (generic.rstrip("/") + "/v1/logs" if generic else "http://localhost:4318/v1/logs")


def _log_exporter(name: str, env: Mapping[str, str]) -> LogRecordExporter:
    if name == "console":
        from opentelemetry.sdk._logs.export import ConsoleLogRecordExporter

        return ConsoleLogRecordExporter()
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter

    return OTLPLogExporter(endpoint=_logs_endpoint(env))


def _logger_provider(env: Mapping[str, str], resource: Resource, plan: list[tuple[str, str]]) -> LoggerProvider | None:
    """Events go where the spans go (OTLP logs, or the console), and only when `EVENT_ONLY` or `SPAN_AND_EVENT`
    asks for them: otherwise no logs pipeline is built."""
    if not plan or not content_capture(env).on_events or env.get("OTEL_LOGS_EXPORTER", "").strip() == "none":
        return None
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor

    provider = LoggerProvider(resource=resource)
    for name, _ in plan:
        provider.add_log_record_processor(BatchLogRecordProcessor(_log_exporter(name, env)))
    return provider


def configure(env: Mapping[str, str] | None = None, *, local: bool = False,
              wait_for_room: bool = False) -> Telemetry | None:
    """Build the SDK from the environment, or return None when nothing is to be exported. With `local`, a
    provider is built even with no exporter (the demo renders its trees from it), and exports nothing. With
    `wait_for_room` (the telemetry process, whose threads may block), ending a span waits for room in a full
    batch queue instead of dropping a span, and lost spans are counted (`span_losses.py`)."""
    env = os.environ if env is None else env
    plan = export_plan(env)
    if not plan and not local:
        return None
    resource = _resource(env)
    provider = TracerProvider(resource=resource)
    # Every processor the provider calls, which the gateway's own spans are handed to (`spans.py`).
    processors = SynchronousMultiSpanProcessor()
    provider.add_span_processor(processors)
    losses = SpanLosses() if wait_for_room else None
    spool = None
    for name, _ in plan:
        exporter = _span_exporter(name, env)
        if isinstance(exporter, SpoolingSpanExporter):
            spool = exporter.spool
        processor = WaitingBatchSpanProcessor(exporter, losses) if losses is not None else BatchSpanProcessor(exporter)
        processors.add_span_processor(processor)
    metrics = _metric_reader(env, resource) if plan else None
    meter_provider = histograms = None
    if metrics is not None:
        from opentelemetry.sdk.metrics import MeterProvider

        reader, histograms = metrics
        meter_provider = MeterProvider(resource=resource, metric_readers=[reader])
    if not env.get("OTEL_PROPAGATORS"):
        # The relay forwards requests byte for byte: no traceparent is added unless the user asks for it.
        set_global_textmap(CompositePropagator([]))
    spans = SpanMaker(provider, processors, InstrumentationScope(INSTRUMENTATION_NAME, __version__))
    return Telemetry(provider, spans, processors, meter_provider, describe(plan),
                     _logger_provider(env, resource, plan), losses, spool, histograms)


def describe(plan: list[tuple[str, str]]) -> str:
    return ", ".join(destination for _, destination in plan) or "nowhere (no OTEL_* exporter configured)"


def upstream_trace_configs(telemetry: Telemetry | None, env: Mapping[str, str] | None = None) -> list:
    """With `LLM_GATEWAY_HTTP_SPANS=aiohttp`: aiohttp TraceConfigs that give each upstream call its HTTP CLIENT
    span from opentelemetry-instrumentation-aiohttp-client, as a child of the current span. By default the chat
    spans build that span themselves, after the exchange (`upstream_spans.py`)."""
    env = os.environ if env is None else env
    if telemetry is None or http_span_mode(env) != "aiohttp":
        return []
    from opentelemetry.instrumentation.aiohttp_client import create_trace_config

    return [
        create_trace_config(
            url_filter=_without_credentials,
            tracer_provider=telemetry.tracer_provider,
            # No HTTP client metrics: gen_ai.client.operation.duration already times each call, and the
            # instrumentation's histograms cost more per request than the span itself.
            meter_provider=otel_metrics.NoOpMeterProvider(),
        )
    ]


def _without_credentials(url) -> str:
    return url_without_credentials(str(url))
