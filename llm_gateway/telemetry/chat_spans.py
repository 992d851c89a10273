"""The addon that turns each relayed model call into a `chat {model}` CLIENT span.

At `request` the request body is parsed (cheap next to the call it precedes) and the span starts at the
request's arrival time. When the exchange ends, the upstream HTTP call gets its own CLIENT span under it
(`upstream_spans.py`); with `LLM_GATEWAY_HTTP_SPANS=aiohttp` the chat span is made current instead, so that the
aiohttp-client instrumentation's span nests under it. The response is parsed as it
streams, each chunk right after the relay wrote it to the client (a stream's gaps are long next to its parsing);
`done` / `error` only close the parser and end the span. Any failure in here is logged at debug level and
swallowed: telemetry never breaks traffic.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

from opentelemetry import context, trace
from opentelemetry.context import _SUPPRESS_HTTP_INSTRUMENTATION_KEY
from opentelemetry.trace import SpanKind, Status, StatusCode

from llm_gateway.flow import Flow, model_call, observe_chunks
from llm_gateway.protocols.base import ExchangeRun, HttpResponseHead
from llm_gateway.telemetry.chat_attributes import (
    content_request_attributes,
    content_response_attributes,
    request_attributes,
    response_attributes,
)
from llm_gateway.telemetry.chat_metrics import ChatMetrics
from llm_gateway.telemetry.content import content_capture
from llm_gateway.telemetry.session_spans import SessionSpans
from llm_gateway.telemetry.setup import Telemetry
from llm_gateway.telemetry.upstream_spans import http_span_mode, record_upstream_span

log = logging.getLogger("llm_gateway.telemetry")


@dataclass(slots=True)
class _Call:
    run: ExchangeRun | None  # None for relayed non-call traffic
    span: trace.Span | None
    token: object  # the context token to detach when the flow ends (aiohttp HTTP spans only)
    start_attributes: dict | None = None
    exchange_id: int = 0  # the session tracker's id for this call


class ChatSpans:
    """Addon: one span per model call (see module docstring)."""

    def __init__(self, telemetry: Telemetry, env: Mapping[str, str]) -> None:
        self._tracer = telemetry.tracer
        self._capture = content_capture(env).on_spans
        self._metrics = ChatMetrics(telemetry.meter)
        self._http_spans = http_span_mode(env)
        self.sessions = SessionSpans(self._tracer, env, capture=self._capture)

    def __repr__(self) -> str:
        return f"ChatSpans(capture={self._capture})"

    def request(self, flow: Flow) -> None:
        route = flow.route
        call = model_call(flow)
        if call is None or route.protocol is None:
            if self._http_spans == "aiohttp":
                # Not a model call: relayed untraced, and its upstream HTTP span would only be a stray root.
                token = context.attach(context.set_value(_SUPPRESS_HTTP_INSTRUMENTATION_KEY, True))
                _scratch(flow)[self] = _Call(None, None, token)
            return
        adapter, http_request = call
        run = ExchangeRun(adapter, http_request, capture=self._capture)
        request = run.request
        provider = adapter.provider_name(http_request)
        attributes = request_attributes(request, provider, route.protocol.name, route.base_url)
        exchange_id, parent, session_attributes = self.sessions.call_started(
            flow.request_headers, request, provider, flow.started_ns
        )
        attributes.update(session_attributes)
        if self._capture:
            attributes.update(content_request_attributes(request))
        name = f"{request.operation} {request.model}" if request.model else request.operation
        span = self._tracer.start_span(name, context=parent, kind=SpanKind.CLIENT, attributes=attributes,
                                       start_time=flow.started_ns)
        token = context.attach(trace.set_span_in_context(span)) if self._http_spans == "aiohttp" else None
        observe_chunks(flow, run.body)
        _scratch(flow)[self] = _Call(run, span, token, attributes, exchange_id)

    def response_headers(self, flow: Flow) -> None:
        call = _scratch(flow).get(self)
        if call is not None and call.run is not None and flow.status is not None:
            call.run.response_head(HttpResponseHead(flow.status, flow.response_headers or {}))

    def done(self, flow: Flow) -> None:
        self._finish(flow)

    def error(self, flow: Flow) -> None:
        self._finish(flow)

    def _finish(self, flow: Flow) -> None:
        call = _scratch(flow).pop(self, None)
        if call is None:
            return
        if call.token is not None:
            context.detach(call.token)  # here, in the handler's own context
        if call.run is not None and call.span is not None:
            self._complete(flow, call)

    def _complete(self, flow: Flow, call: _Call) -> None:
        """Close the parser, set the response attributes, end the span, tell the session tracker."""
        span, run = call.span, call.run
        assert span is not None and run is not None
        try:
            ended = flow.ended_ns or flow.started_ns
            record = run.finish(ended)
            error_type = flow.error or record.error_type
            error_message = flow.error_message if flow.error else record.error_message
            attributes = response_attributes(record, flow.started_ns, error_type, error_message)
            if self._capture:
                attributes.update(content_response_attributes(record))
            span.set_attributes(attributes)
            if error_type:
                span.set_status(Status(StatusCode.ERROR, error_message or error_type))
            self._metrics.record(call.start_attributes or {}, attributes, (ended - flow.started_ns) / 1e9)
            self.sessions.call_finished(call.exchange_id, record, ended)
        except Exception:
            log.debug("chat span for %s %s failed", flow.method, flow.raw_path, exc_info=True)
        finally:
            if self._http_spans == "gateway":
                self._upstream_span(flow, span)
            span.end(end_time=flow.ended_ns)

    def _upstream_span(self, flow: Flow, parent: trace.Span) -> None:
        try:
            record_upstream_span(self._tracer, parent, flow)
        except Exception:
            log.debug("upstream span for %s %s failed", flow.method, flow.raw_path, exc_info=True)

    def tick(self, now_ns: int) -> None:
        """Periodic: close idle sessions."""
        self.sessions.tick(now_ns)

    def close(self) -> None:
        """Shutdown: end every open session."""
        self.sessions.close()


def _scratch(flow: Flow) -> dict:
    if flow.scratch is None:
        flow.scratch = {}
    return flow.scratch
