"""When the chat span's work happens: nothing in front of the upstream call or of the first byte to the client, and
the span itself only when the call ends (nothing is held for it during a stream), with the times of the request and
of its end. Driven hook by hook, as the relay calls them, with the recorded Anthropic stream cut
as it was recorded."""

from __future__ import annotations

import time

import orjson
from multidict import CIMultiDict, CIMultiDictProxy
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from llm_gateway.config import Settings
from llm_gateway.flow import Flow
from llm_gateway.recordings import load
from llm_gateway.routing import Router
from llm_gateway.telemetry import configure
from llm_gateway.telemetry.chat_spans import ChatSpans
from llm_gateway.telemetry.session_spans import SessionSpans
from tests.support import FIXTURES

EXCHANGE = load(FIXTURES / "anthropic/tools-streaming.json").exchanges[0]


def _flow() -> Flow:
    request = EXCHANGE.request
    headers = CIMultiDictProxy(CIMultiDict(request.headers))
    route = Router(Settings(), {}).resolve(request.method, request.path, headers)
    assert route is not None
    flow = Flow(request.method, request.path, (), request.body, route, "http://127.0.0.1:9" + request.path,
                started_ns=time.time_ns())
    flow.request_headers = headers
    return flow


def test_the_span_is_made_when_the_call_ends_with_the_times_of_its_request_and_its_end():
    telemetry = configure({}, local=True)
    assert telemetry is not None
    ended = InMemorySpanExporter()
    telemetry.add_span_processor(SimpleSpanProcessor(ended))
    chat = ChatSpans(telemetry, {}, SessionSpans(telemetry.spans, {}, capture=False))
    flow = _flow()

    chat.request(flow)
    flow.upstream_started_ns = time.time_ns()
    flow.status, flow.response_headers = EXCHANGE.response.status, CIMultiDictProxy(
        CIMultiDict(EXCHANGE.response.headers))
    chat.response_headers(flow)
    assert flow.state()[chat].run is None  # nothing parsed or started in front of the upstream call and first byte

    first, *rest = EXCHANGE.response.chunks
    for observe in flow.chunk_observers or ():
        observe(time.time_ns(), first.data)
    name = f"chat {orjson.loads(EXCHANGE.request.body)['model']}"
    for chunk in rest:
        for observe in flow.chunk_observers or ():
            observe(time.time_ns(), chunk.data)
    assert flow.state()[chat].run is not None  # the stream is parsed as it goes ...
    assert flow.state()[chat].span is None and not ended.get_finished_spans()  # ... its span waits for the end
    assert flow.state()[chat].http_request.body == b""  # parsed: the call does not hold the request body any more
    assert flow.request_body == EXCHANGE.request.body  # ... whose flow is the relay's, untouched

    flow.ended_ns = time.time_ns()
    chat.done(flow)
    finished = {s.name: s for s in ended.get_finished_spans()}
    chat_span = finished[name]
    http_span = finished[EXCHANGE.request.method]
    assert chat_span.start_time == flow.started_ns and chat_span.end_time == flow.ended_ns
    assert http_span.parent.span_id == chat_span.context.span_id
    assert http_span.start_time == flow.upstream_started_ns
