"""The gateway's own spans (`telemetry/spans.py`) are what the SDK's Tracer would have made from the same inputs: the
same attributes (lists as tuples, limits applied), status, parent, links, flags and trace state, and the same
sampling decisions, for the default sampler and any other the provider has."""

from __future__ import annotations

import time

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, TraceIdRatioBased
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, NonRecordingSpan, SpanContext, SpanKind, Status, StatusCode, TraceFlags
from opentelemetry.trace import set_span_in_context as in_context
from opentelemetry.trace.span import TraceState

from llm_gateway.telemetry.otlp_encoding import OtlpSpanEncoder
from llm_gateway.telemetry.spans import SpanMaker

SCOPE = InstrumentationScope("llm_gateway", "test")
REMOTE = SpanContext(0x0AF7651916CD43DD8448EB211C80319C, 0xB7AD6B7169203331, is_remote=True,
                     trace_flags=TraceFlags(TraceFlags.SAMPLED), trace_state=TraceState([("vendor", "v1")]))
ATTRIBUTES = {"gen_ai.operation.name": "chat", "gen_ai.usage.input_tokens": 1234, "llm_gateway.usage.cost": 0.25,
              "llm_gateway.call.auxiliary": True, "llm_gateway.models": ["a", "b"]}


def _pair(provider: TracerProvider) -> tuple[SpanMaker, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    processor = SimpleSpanProcessor(exporter)
    provider.add_span_processor(processor)  # the SDK tracer's spans
    return SpanMaker(provider, processor, SCOPE), exporter


def _comparable(span) -> dict:
    return {"name": span.name, "kind": span.kind, "attributes": dict(span.attributes),
            "dropped": span.dropped_attributes, "status": (span.status.status_code, span.status.description),
            "parent": span.parent, "trace_id": span.context.trace_id, "flags": span.context.trace_flags,
            "trace_state": span.context.trace_state, "links": [link.context for link in span.links],
            "times": (span.start_time, span.end_time), "resource": span.resource}


def _both(provider: TracerProvider, attributes: dict, more: dict | None = None) -> tuple:
    """The span `SpanMaker` makes and the one the SDK's tracer makes from the same inputs, as the exporter gets
    them."""
    maker, exporter = _pair(provider)
    tracer = provider.get_tracer(SCOPE.name, SCOPE.version)
    links = [Link(REMOTE)]
    made = maker.start("chat m", SpanKind.CLIENT, 10, attributes, REMOTE, links)
    maker.end(made, 20, more, Status(StatusCode.ERROR, "overloaded"))
    sdk = tracer.start_span("chat m", context=in_context(NonRecordingSpan(REMOTE)), kind=SpanKind.CLIENT,
                            attributes=attributes, links=links, start_time=10)
    sdk.set_attributes(more or {})
    sdk.set_status(Status(StatusCode.ERROR, "overloaded"))
    sdk.end(end_time=20)
    return exporter.get_finished_spans()


def test_a_span_is_the_one_the_sdk_tracer_makes_from_the_same_inputs():
    ours, theirs = _both(TracerProvider(), ATTRIBUTES, {"gen_ai.usage.output_tokens": 7})
    assert _comparable(ours) == _comparable(theirs)
    assert ours.attributes["llm_gateway.models"] == ("a", "b")  # a sequence kept as a tuple, as the SDK keeps it
    # and on the wire too (ids aside, which are random)
    encoder = OtlpSpanEncoder()
    assert len(encoder.encode([ours])) == len(encoder.encode([theirs]))


def test_attribute_limits_from_the_environment_apply_as_in_the_sdk(monkeypatch):
    monkeypatch.setenv("OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT", "2")
    monkeypatch.setenv("OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT", "3")
    ours, theirs = _both(TracerProvider(), {"a": "long text", "b": 1, "c": 2}, {"d": "more text"})
    assert _comparable(ours) == _comparable(theirs)
    assert len(ours.attributes) == 2 and ours.dropped_attributes == 2 and ours.attributes["d"] == "mor"


def test_values_the_fast_path_does_not_know_are_kept_as_the_sdk_keeps_them():
    ours, theirs = _both(TracerProvider(), {"ok": "yes", "none": None, "mixed": ["a", 1], "numbers": [1, 2]})
    assert _comparable(ours) == _comparable(theirs)


def test_a_root_gets_the_trace_and_span_ids_it_is_given_and_children_follow_it():
    maker, exporter = _pair(TracerProvider())
    root = maker.start("session kiro", SpanKind.INTERNAL, 1, {}, trace_id=0xABC, span_id=0xDEF)
    child = maker.start("invoke_agent kiro", SpanKind.INTERNAL, 2, {}, root.context)
    maker.end(child, 3)
    maker.end(root, 4)
    ended_child, ended_root = exporter.get_finished_spans()
    assert (ended_root.context.trace_id, ended_root.context.span_id, ended_root.parent) == (0xABC, 0xDEF, None)
    assert ended_child.context.trace_id == 0xABC and ended_child.parent.span_id == 0xDEF
    assert ended_root.context.trace_flags.sampled and ended_root.context.trace_flags.random_trace_id


def test_the_default_sampler_follows_an_unsampled_parent():
    maker, exporter = _pair(TracerProvider())
    unsampled = SpanContext(REMOTE.trace_id, REMOTE.span_id, is_remote=True, trace_flags=TraceFlags(0))
    span = maker.start("chat m", SpanKind.CLIENT, 1, {}, unsampled)
    child = maker.start("POST", SpanKind.CLIENT, 1, {}, span.context)
    maker.end(child, 2)
    maker.end(span, 2)
    assert exporter.get_finished_spans() == ()
    assert not span.context.trace_flags.sampled and span.context.trace_id == REMOTE.trace_id


@pytest.mark.parametrize("sampler", [ALWAYS_OFF, TraceIdRatioBased(0.0)], ids=["always_off", "ratio_0"])
def test_another_sampler_is_asked_as_the_sdk_asks_it(sampler):
    maker, exporter = _pair(TracerProvider(sampler=sampler))
    root = maker.start("session kiro", SpanKind.INTERNAL, 1, ATTRIBUTES)
    maker.end(root, 2)
    assert exporter.get_finished_spans() == ()
    assert root.context.is_valid and not root.context.trace_flags.sampled


def test_a_span_ended_without_a_time_ends_now_as_in_the_sdk():
    maker, exporter = _pair(TracerProvider())
    before = time.time_ns()
    maker.end(maker.start("execute_tool read", SpanKind.INTERNAL, before, {}), None)
    (span,) = exporter.get_finished_spans()
    assert before <= span.end_time <= time.time_ns()
