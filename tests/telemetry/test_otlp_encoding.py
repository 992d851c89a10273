"""The gateway's OTLP span encoder (`telemetry/otlp_encoding.py`) against the OTLP exporter's own: the same spans
give the same bytes, whatever the spans hold. The exporter's encoder is the reference: what a backend receives must
not change with the encoder."""

from __future__ import annotations

import logging

import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanLimits, TracerProvider
from opentelemetry.trace import (
    Link,
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    set_span_in_context,
)
from opentelemetry.trace.span import TraceState

from llm_gateway.telemetry.otlp_encoding import OtlpSpanEncoder

ATTRIBUTES = {
    "gen_ai.operation.name": "chat",
    "gen_ai.request.model": "claude-sonnet-4-5",
    "empty": "",
    "unicode": "Grüße, 世界",
    "long": "x" * 300,  # a length of two varint bytes
    "gen_ai.usage.input_tokens": 1234,
    "zero": 0,
    "negative": -7,
    "int64.max": (1 << 63) - 1,
    "int64.min": -(1 << 63),
    "flag.true": True,
    "flag.false": False,
    "ratio": 0.25,
    "nan.free.negative": -1.5e300,
    "gen_ai.response.finish_reasons": ("end_turn",),
    "numbers": (1, 2, 300),
    "floats": (0.5, 1.5),
    "bools": (True, False),
    "no.items": (),
}


def _spans(provider: TracerProvider, exported: list[ReadableSpan]) -> list[ReadableSpan]:
    tracer = provider.get_tracer("llm-gateway", "1.2.3", schema_url="https://opentelemetry.io/schemas/1.37.0")
    other = provider.get_tracer("other.scope", attributes={"scope.attr": "s", "scope.n": 3})
    remote = SpanContext(0x0AF7651916CD43DD8448EB211C80319C, 0xB7AD6B7169203331, is_remote=True,
                         trace_flags=TraceFlags(1), trace_state=TraceState([("vendor", "v1"), ("other", "x")]))
    local = SpanContext(0x1, 0x2, is_remote=False)
    with tracer.start_as_current_span("invoke_agent kiro", kind=SpanKind.INTERNAL) as agent:
        agent.set_status(Status(StatusCode.OK))
        chat = tracer.start_span("chat claude-sonnet-4-5", kind=SpanKind.CLIENT, attributes=ATTRIBUTES,
                                 links=[Link(remote, {"link.kind": "follows"}), Link(local)])
        chat.add_event("gen_ai.choice", {"index": 0, "finish_reason": "end_turn"}, timestamp=1_700_000_000_000_000_001)
        chat.add_event("no attributes")
        chat.set_status(Status(StatusCode.ERROR, "upstream answered 529"))
        chat.end()
        tool = other.start_span("execute_tool read_file", kind=SpanKind.INTERNAL)
        tool.set_status(Status(StatusCode.ERROR))
        tool.end()
    tracer.start_span("under a remote parent", context=set_span_in_context(NonRecordingSpan(remote)),
                      kind=SpanKind.SERVER).end()
    tracer.start_span("producer", kind=SpanKind.PRODUCER, attributes={"big": 1 << 40}).end()
    tracer.start_span("consumer", kind=SpanKind.CONSUMER, start_time=1).end(end_time=2)
    tracer.start_span("").end()  # no name
    provider.force_flush()
    return list(exported)


def _provider(exported: list[ReadableSpan], **kwargs) -> TracerProvider:
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

    class Keep(SpanExporter):
        def export(self, spans):
            exported.extend(spans)
            return SpanExportResult.SUCCESS

    provider = TracerProvider(**kwargs)
    provider.add_span_processor(SimpleSpanProcessor(Keep()))
    return provider


def _exporters_bytes(spans: list[ReadableSpan]) -> bytes:
    return encode_spans(spans).SerializePartialToString()


def test_spans_of_every_shape_encode_to_the_exporters_bytes():
    exported: list[ReadableSpan] = []
    resource = Resource({"service.name": "llm-gateway", "service.version": "0.1", "pid": 42},
                        schema_url="https://opentelemetry.io/schemas/1.37.0")
    spans = _spans(_provider(exported, resource=resource), exported)
    assert len(spans) == 7
    assert OtlpSpanEncoder().encode(spans) == _exporters_bytes(spans)


def test_spans_of_two_resources_and_dropped_counts_encode_to_the_exporters_bytes():
    exported: list[ReadableSpan] = []
    limits = SpanLimits(max_span_attributes=3, max_events=1, max_links=1, max_event_attributes=1)
    first = _spans(_provider(exported, span_limits=limits, resource=Resource({"service.name": "a"})), exported)
    exported.clear()
    second = _spans(_provider(exported, resource=Resource({"service.name": "b"})), exported)
    spans = first[:4] + second + first[4:]  # interleaved: grouped by resource and scope in the order first seen
    assert any(span.dropped_attributes and span.dropped_events and span.dropped_links for span in spans)
    assert OtlpSpanEncoder().encode(spans) == _exporters_bytes(spans)


def test_what_the_encoder_remembers_never_changes_its_output():
    exported: list[ReadableSpan] = []
    spans = _spans(_provider(exported), exported)
    encoder = OtlpSpanEncoder(cache_entries=3)  # forgets over and over within one span's attributes
    expected = _exporters_bytes(spans)
    assert [encoder.encode(spans) for _ in range(3)] == [expected] * 3
    assert encoder.encode([]) == _exporters_bytes([]) == b""
    remembering = OtlpSpanEncoder()
    assert remembering.encode(spans) == expected
    remembering.forget()  # what the telemetry process does once traffic paused
    assert remembering.encode(spans) == expected


def test_an_attribute_the_wire_cannot_carry_is_left_out_and_logged_like_the_exporter_does(
        caplog: pytest.LogCaptureFixture):
    exported: list[ReadableSpan] = []
    provider = _provider(exported)
    provider.get_tracer("t").start_span("s", attributes={"fits": 1, "too.big": 1 << 64, "after": "kept"}).end()
    with caplog.at_level(logging.ERROR):
        expected = _exporters_bytes(exported)  # the exporter's encoder logs and leaves the attribute out
        caplog.clear()
        assert OtlpSpanEncoder().encode(exported) == expected
    assert "too.big" in caplog.text
