"""The addon that turns each relayed model call into a `chat {model}` CLIENT span.

Nothing happens in front of the upstream call or the first byte to the client: right after the first response
chunk was written, the request body is parsed, the session tracker places the call and the span starts (at the
request's arrival time); each later chunk is parsed right after its write (a stream's gaps are long next to its
parsing). `done` / `error` close the parser, end the span and give the upstream HTTP call its CLIENT span
(`upstream_spans.py`). With `LLM_GATEWAY_HTTP_SPANS=aiohttp` the span starts at `request` instead and is made
current, so that the aiohttp-client instrumentation's span nests under it. Any failure in here is logged at
debug level and swallowed: telemetry never breaks traffic.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, replace

from opentelemetry import context, trace
from opentelemetry.context import _SUPPRESS_HTTP_INSTRUMENTATION_KEY
from opentelemetry.trace import SpanKind, Status, StatusCode

from llm_gateway.flow import Flow, model_call, observe_chunks
from llm_gateway.protocols.base import Adapter, HttpRequest, HttpResponseHead
from llm_gateway.protocols.run import ExchangeRun
from llm_gateway.telemetry.chat_attributes import (
    content_request_attributes,
    content_response_attributes,
    inference_details_event,
    request_attributes,
    response_attributes,
)
from llm_gateway.telemetry.chat_metrics import ChatMetrics
from llm_gateway.telemetry.content import content_capture
from llm_gateway.telemetry.cost import call_cost
from llm_gateway.telemetry.prices import usable_price_table
from llm_gateway.telemetry.session_spans import SESSION_IDS, SessionSpans
from llm_gateway.telemetry.setup import Telemetry
from llm_gateway.telemetry.spans import OpenSpan
from llm_gateway.telemetry.trace_context import chat_parent, incoming_mode
from llm_gateway.telemetry.upstream_spans import http_span_mode, record_upstream_span

log = logging.getLogger("llm_gateway.telemetry")


@dataclass(slots=True)
class _Call:
    adapter: Adapter
    http_request: HttpRequest
    started: bool = False  # `_start` ran (it may have failed: then `run` stays None)
    run: ExchangeRun | None = None
    span: OpenSpan | None = None
    #: what the span is started with, until it is: (name, parent, links)
    opening: tuple[str, trace.SpanContext, list] | None = None
    token: object = None  # the context token to detach when the flow ends (aiohttp HTTP spans only)
    start_attributes: dict | None = None
    exchange_id: int = 0  # the session tracker's id for this call


class ChatSpans:
    """Addon: one span per model call (see module docstring)."""

    def __init__(self, telemetry: Telemetry, env: Mapping[str, str], sessions: SessionSpans) -> None:
        """`sessions` places each call in its session and agent, and gives its span's parent."""
        self._spans = telemetry.spans
        mode = content_capture(env)
        self._capture = mode.on_spans
        self._read_content = mode.captured  # for spans, events or both
        # EVENT_ONLY / SPAN_AND_EVENT: each call's inference details event too
        self._events = telemetry.logger if mode.on_events else None
        self._metrics = ChatMetrics(telemetry.meter, telemetry.chat_histograms, sessions.open_sessions)
        self._http_spans = http_span_mode(env)
        self._sessions = sessions
        self._prices = usable_price_table(env)
        self._incoming = incoming_mode(env)

    def __repr__(self) -> str:
        return f"ChatSpans(capture={self._capture})"

    def request(self, flow: Flow) -> None:
        # A WebSocket's calls come as flows of their own (`addons/socket_calls.py`), not the upgrade.
        found = model_call(flow) if flow.route.protocol is not None and not flow.websocket else None
        if found is None:
            if self._http_spans == "aiohttp":
                # Not a model call: relayed untraced, and its upstream HTTP span would only be a stray root.
                flow.state()[self] = context.attach(context.set_value(_SUPPRESS_HTTP_INSTRUMENTATION_KEY, True))
            return
        call = _Call(*found)
        flow.state()[self] = call
        if self._http_spans == "aiohttp" and flow.socket is None:  # a call in a socket makes no HTTP request
            self._start(flow, call)
            if call.span is not None:  # the instrumentation's span names it as parent
                call.token = context.attach(trace.set_span_in_context(trace.NonRecordingSpan(call.span.context)))

        def observe(at_ns: int, data: bytes) -> None:
            if not call.started:
                self._start(flow, call)
            if call.run is not None:
                call.run.body(at_ns, data)

        observe_chunks(flow, observe)

    def _start(self, flow: Flow, call: _Call) -> None:
        """Parse the request, place the call in its session, start the span at the request's arrival."""
        call.started = True
        route = flow.route
        assert route.protocol is not None
        run = ExchangeRun(call.adapter, call.http_request, capture=self._read_content)
        # Parsed: the body (an agent's whole conversation, often hundreds of KB) is not held for the whole stream
        call.http_request = replace(call.http_request, body=b"")
        request = run.request
        provider = call.adapter.provider_name(call.http_request)
        attributes = request_attributes(request, provider, route.protocol.name, route.base_url)
        exchange_id, parent, session_attributes = self._sessions.call_started(
            flow.request_headers, request, provider, flow.started_ns
        )
        attributes.update(session_attributes)
        if self._capture:
            attributes.update(content_request_attributes(request))
        name = f"{request.operation} {request.model}" if request.model else request.operation
        parent, links = chat_parent(self._incoming, flow.request_headers, parent)
        call.start_attributes, call.exchange_id = attributes, exchange_id
        call.opening = (name, parent, links)
        if self._http_spans == "aiohttp":  # the instrumentation's HTTP span is its child: it must exist already
            self._open(flow, call)
        if flow.status is not None:
            run.response_head(HttpResponseHead(flow.status, flow.response_headers or {}))
        call.run = run

    def _open(self, flow: Flow, call: _Call) -> OpenSpan:
        """The span, started at the request's arrival; made when the call ends (with aiohttp HTTP spans, when it
        starts): nothing is held for it during a stream but what `opening` keeps."""
        if call.span is None:
            assert call.opening is not None
            name, parent, links = call.opening
            call.span = self._spans.start(name, SpanKind.CLIENT, flow.started_ns, call.start_attributes or {},
                                          parent, links)
            call.opening = None
        return call.span

    def response_headers(self, flow: Flow) -> None:
        call = flow.state().get(self)
        if isinstance(call, _Call) and call.run is not None and flow.status is not None:  # started at `request`
            call.run.response_head(HttpResponseHead(flow.status, flow.response_headers or {}))

    def done(self, flow: Flow) -> None:
        self._finish(flow)

    def error(self, flow: Flow) -> None:
        self._finish(flow)

    def _finish(self, flow: Flow) -> None:
        call = flow.state().pop(self, None)
        if call is None:
            return
        if not isinstance(call, _Call):  # the suppression token of a relayed non-call
            context.detach(call)
            return
        if call.token is not None:
            context.detach(call.token)  # here, in the handler's own context
        if not call.started:  # no response byte came: an upstream failure, or an empty body
            self._start(flow, call)
        if call.run is not None:
            self._complete(flow, call)

    def _complete(self, flow: Flow, call: _Call) -> None:
        """Close the parser, start the span and set its response attributes, end it, tell the session tracker."""
        span, run = self._open(flow, call), call.run
        assert run is not None
        status = None
        try:
            ended = flow.ended_ns or flow.started_ns
            record = run.finish(ended)
            error_type = flow.error or record.error_type
            error_message = flow.error_message if flow.error else record.error_message
            attributes = response_attributes(record, flow.started_ns, error_type, error_message)
            provider = call.adapter.provider_name(call.http_request)
            cost = call_cost(self._prices, provider, record, flow.started_ns, flow.route.base_url)
            attributes.update(cost.attributes())
            if self._capture:
                attributes.update(content_response_attributes(record))
            span.attributes.update(attributes)
            if error_type:
                status = Status(StatusCode.ERROR, error_message or error_type)
            self._metrics.record(call.start_attributes or {}, attributes, (ended - flow.started_ns) / 1e9,
                                 run.chunk_gaps_ns)
            if self._events is not None:
                self._events.emit(inference_details_event(span.context,
                                                          {**(call.start_attributes or {}), **attributes}, record,
                                                          ended))
            self._sessions.call_finished(call.exchange_id, record, ended, cost)
        except Exception:
            log.debug("chat span for %s %s failed", flow.method, flow.raw_path, exc_info=True)
        finally:
            if self._http_spans == "gateway" and flow.socket is None:  # a call in a socket had no HTTP request
                self._upstream_span(flow, span.context, call.start_attributes)
            self._spans.end(span, flow.ended_ns, status=status)

    def _upstream_span(self, flow: Flow, parent: trace.SpanContext, chat_attributes: dict | None) -> None:
        try:
            session = {k: v for k, v in (chat_attributes or {}).items() if k in SESSION_IDS}
            record_upstream_span(self._spans, parent, flow, session)
        except Exception:
            log.debug("upstream span for %s %s failed", flow.method, flow.raw_path, exc_info=True)

