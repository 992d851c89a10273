"""The addon that turns each relayed model call into a `chat {model}` CLIENT span.

At `request` the request body is parsed (cheap next to the call it precedes) and the span starts at the
request's arrival time, made current so that the upstream HTTP span nests under it. The response body is
only collected while it streams; it is parsed after the last byte went to the client, in `done` / `error`.
Any failure in here is logged at debug level and swallowed: telemetry never breaks traffic.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass

from opentelemetry import context, trace
from opentelemetry.context import _SUPPRESS_HTTP_INSTRUMENTATION_KEY
from opentelemetry.trace import SpanKind, Status, StatusCode

from llm_gateway.flow import Flow, model_call
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

log = logging.getLogger("llm_gateway.telemetry")


@dataclass(slots=True)
class _Call:
    run: ExchangeRun | None  # None for relayed non-call traffic
    span: trace.Span | None
    token: object  # the context token to detach when the flow ends
    start_attributes: dict | None = None
    exchange_id: int = 0  # the session tracker's id for this call


class ChatSpans:
    """Addon: one span per model call (see module docstring)."""

    def __init__(self, telemetry: Telemetry, env: Mapping[str, str]) -> None:
        self._tracer = telemetry.tracer
        self._capture = content_capture(env).on_spans
        self._metrics = ChatMetrics(telemetry.meter)
        self.sessions = SessionSpans(self._tracer, env, capture=self._capture)
        self._pending: set[_Finish] = set()

    def __repr__(self) -> str:
        return f"ChatSpans(capture={self._capture})"

    def request(self, flow: Flow) -> None:
        route = flow.route
        call = model_call(flow)
        if call is None or route.protocol is None:
            # Not a model call: relayed untraced, and its upstream HTTP span would only be a stray root.
            token = context.attach(context.set_value(_SUPPRESS_HTTP_INSTRUMENTATION_KEY, True))
            _scratch(flow)[self] = _Call(None, None, token)
            return
        adapter, http_request = call
        run = ExchangeRun(adapter, http_request, capture=self._capture)
        request = run.request
        if self._pending:
            self._flush()
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
        token = context.attach(trace.set_span_in_context(span))
        if flow.chunks is None:
            flow.chunks = []
        flow.keep_chunks = True
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
        context.detach(call.token)  # here, in the handler's own context
        if call.run is None or call.span is None:
            return
        job = _Finish(self, flow, call)
        self._pending.add(job)
        job.step()

    def _complete(self, flow: Flow, call: _Call) -> None:
        """The body is parsed: set the response attributes, end the span, tell the session tracker."""
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
            span.end(end_time=flow.ended_ns)

    def _flush(self) -> None:
        """Finish every response still being parsed (before a new call is placed, and at shutdown), so the
        session tracker sees calls in the order they happened."""
        for job in list(self._pending):
            job.run_to_end()

    def tick(self, now_ns: int) -> None:
        """Periodic: close idle sessions."""
        self.sessions.tick(now_ns)

    def close(self) -> None:
        """Shutdown: finish pending responses, then end every open session."""
        self._flush()
        self.sessions.close()


class _Finish:
    """Parses a relayed response in slices of `SLICE` chunks, one slice per event-loop turn: a long stream that
    just ended never holds up the chunks of the streams still running."""

    __slots__ = ("_call", "_flow", "_next", "_owner")

    SLICE = 64

    def __init__(self, owner: ChatSpans, flow: Flow, call: _Call) -> None:
        self._owner = owner
        self._flow = flow
        self._call = call
        self._next = 0

    def step(self) -> None:
        if self not in self._owner._pending:
            return  # already run to the end by a flush
        chunks = self._flow.chunks or []
        stop = min(self._next + self.SLICE, len(chunks))
        self._feed(chunks, stop)
        if stop < len(chunks):
            try:
                asyncio.get_running_loop().call_soon(self.step)
                return
            except RuntimeError:  # no loop (shutdown): finish now
                pass
        self.run_to_end()

    def run_to_end(self) -> None:
        if self not in self._owner._pending:
            return
        chunks = self._flow.chunks or []
        self._feed(chunks, len(chunks))
        self._owner._pending.discard(self)
        self._owner._complete(self._flow, self._call)

    def _feed(self, chunks: list[tuple[int, bytes]], stop: int) -> None:
        run = self._call.run
        assert run is not None
        for t_ns, data in chunks[self._next : stop]:
            run.body(t_ns, data)
        self._next = stop


def _scratch(flow: Flow) -> dict:
    if flow.scratch is None:
        flow.scratch = {}
    return flow.scratch
