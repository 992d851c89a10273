"""The upstream HTTP call of a model call as a CLIENT span (HTTP semantic conventions), built after the fact.

The relay notes when it sent the request upstream and when the last byte came back (`Flow`); this span is made
from those times when the exchange ends, under its chat span. Nothing runs in front of the upstream call: the
aiohttp-client instrumentation, which does the same work on the request path, cost 0.12 ms of added latency at
p50 in bench/ (still available with `LLM_GATEWAY_HTTP_SPANS=aiohttp`).
"""

from __future__ import annotations

from collections.abc import Mapping

from opentelemetry.semconv.attributes import error_attributes as err
from opentelemetry.semconv.attributes import http_attributes as http
from opentelemetry.semconv.attributes import server_attributes as server
from opentelemetry.semconv.attributes import url_attributes as url
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode

from llm_gateway.flow import Flow
from llm_gateway.redact import url_without_credentials
from llm_gateway.telemetry.spans import SpanMaker
from llm_gateway.upstream.http1 import host_and_port

ENV_HTTP_SPANS = "LLM_GATEWAY_HTTP_SPANS"
#: gateway: this module (default); aiohttp: opentelemetry-instrumentation-aiohttp-client; none: no HTTP span
HTTP_SPAN_MODES = ("gateway", "aiohttp", "none")



def http_span_mode(env: Mapping[str, str]) -> str:
    mode = env.get(ENV_HTTP_SPANS, "").strip().lower() or "gateway"
    if mode not in HTTP_SPAN_MODES:
        raise ValueError(f"{ENV_HTTP_SPANS}={mode!r}: use one of {', '.join(HTTP_SPAN_MODES)}")
    return mode


def record_upstream_span(
    spans: SpanMaker, parent: SpanContext, flow: Flow, session: Mapping[str, str] | None = None
) -> None:
    """One `{METHOD}` CLIENT span from the request leaving for the upstream to its last byte (or the failure);
    `session`: the session's ids, which every span of a session carries."""
    sent = flow.upstream_started_ns
    if sent is None:
        return  # the exchange failed before the upstream was called
    host, port = host_and_port(flow.upstream_url)
    attributes: dict[str, str | int] = {
        http.HTTP_REQUEST_METHOD: flow.method,
        url.URL_FULL: url_without_credentials(flow.upstream_url),
        server.SERVER_ADDRESS: host or "",
        server.SERVER_PORT: port,
    }
    if session:
        attributes.update(session)
    status = flow.status
    if status is not None:
        attributes[http.HTTP_RESPONSE_STATUS_CODE] = status
    error_type = str(status) if status is not None and status >= 400 else flow.error
    if error_type:
        attributes[err.ERROR_TYPE] = error_type
    span_status = Status(StatusCode.ERROR, flow.error_message if flow.error else None) if error_type else None
    spans.record(flow.method, SpanKind.CLIENT, sent, flow.ended_ns, attributes, parent, span_status)
