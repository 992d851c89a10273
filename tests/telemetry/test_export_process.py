"""Spans leave through a child exporter process: same OTLP bytes as in-process export, and a child that dies,
is interrupted or cannot reach its backend never takes the gateway down with it."""

from __future__ import annotations

import asyncio
import os
import pickle
import signal

import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import (
    Link,
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    TraceState,
    set_span_in_context,
)

from llm_gateway.replay import listen
from llm_gateway.telemetry import export_process
from llm_gateway.telemetry.export_process import ExportProcess
from llm_gateway.telemetry.span_wire import new_scope_cache, readable_spans, span_record
from tests.support.otlp import OTLPReceiver

RESOURCE = Resource.create({"service.name": "export-test", "deployment.environment": "ci"})


def _finished_spans():
    """Spans with every field the OTLP encoder reads, from two tracers (two instrumentation scopes)."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=RESOURCE)
    provider.add_span_processor(SimpleSpanProcessor(memory))
    gen_ai = provider.get_tracer("llm_gateway", "0.1.0", schema_url="https://opentelemetry.io/schemas/1.37.0")
    http = provider.get_tracer("opentelemetry.instrumentation.aiohttp_client", "0.66b1")
    remote = SpanContext(0x1234, 0x5678, is_remote=True, trace_flags=TraceFlags(1),
                         trace_state=TraceState([("vendor", "value")]))
    linked = SpanContext(0xABC, 0xDEF, is_remote=False, trace_flags=TraceFlags(1))
    parent = gen_ai.start_span(
        "chat claude", context=set_span_in_context(NonRecordingSpan(remote)), kind=SpanKind.CLIENT,
        attributes={"gen_ai.request.model": "claude", "gen_ai.usage.input_tokens": 12, "flag": True,
                    "temperature": 0.5, "gen_ai.response.finish_reasons": ("end_turn", "tool_use"),
                    "ints": (1, 2), "unicode": "é ✓"},
        links=[Link(linked, {"link.kind": "previous"})], start_time=1_000,
    )
    parent.add_event("gen_ai.first_token", {"at": 3}, timestamp=2_000)
    child = http.start_span("POST", context=set_span_in_context(parent), start_time=1_100)
    child.set_status(Status(StatusCode.ERROR, "boom"))
    child.end(end_time=1_900)
    parent.set_status(Status(StatusCode.OK))
    parent.end(end_time=5_000)
    return memory.get_finished_spans()


def test_records_rebuild_spans_that_encode_to_the_same_otlp_bytes():
    spans = _finished_spans()
    records = pickle.loads(pickle.dumps([span_record(s) for s in spans]))
    rebuilt = readable_spans(records, Resource(dict(RESOURCE.attributes), RESOURCE.schema_url), new_scope_cache())
    assert encode_spans(rebuilt).SerializeToString() == encode_spans(spans).SerializeToString()


@pytest.fixture
async def receiver():
    r = await OTLPReceiver().start()
    yield r
    await r.stop()


def _exporter(endpoint: str, **env: str) -> ExportProcess:
    return ExportProcess(endpoint, RESOURCE, {"OTEL_EXPORTER_OTLP_TRACES_TIMEOUT": "2", **env}, timeout_s=10)


async def test_the_child_posts_each_batch_and_survives_an_interrupt(receiver):
    exporter = _exporter(f"{receiver.endpoint}/v1/traces", OTEL_EXPORTER_OTLP_HEADERS="x-tenant=acme")
    spans = _finished_spans()
    try:
        assert await asyncio.to_thread(exporter.export, spans) is SpanExportResult.SUCCESS
        assert [s.name for s in receiver.spans] == [s.name for s in spans]
        assert receiver.spans[0].resource["service.name"] == "export-test"
        assert receiver.trace_headers[0]["x-tenant"] == "acme"  # OTEL_* from the gateway's env, not os.environ
        child = exporter._child
        assert child is not None
        assert os.getpriority(os.PRIO_PROCESS, child.pid) == 19  # traffic wins a shared core
        os.kill(child.pid, signal.SIGINT)  # a Ctrl-C reaches the whole process group
        assert await asyncio.to_thread(exporter.export, spans) is SpanExportResult.SUCCESS
        assert exporter._child is child and len(receiver.spans) == 2 * len(spans)
    finally:
        await asyncio.to_thread(exporter.shutdown)
    assert child.returncode == 0


async def test_an_unreachable_backend_is_a_failed_batch_not_a_dead_child():
    runner_port = await _closed_port()
    exporter = _exporter(f"http://127.0.0.1:{runner_port}/v1/traces")
    try:
        assert await asyncio.to_thread(exporter.export, _finished_spans()) is SpanExportResult.FAILURE
        assert exporter._child is not None and exporter._child.poll() is None
    finally:
        await asyncio.to_thread(exporter.shutdown)


async def test_a_killed_child_fails_its_batch_and_is_replaced_after_a_pause(receiver, monkeypatch):
    exporter = _exporter(f"{receiver.endpoint}/v1/traces")
    spans = _finished_spans()
    try:
        assert await asyncio.to_thread(exporter.export, spans) is SpanExportResult.SUCCESS
        first = exporter._child
        assert first is not None
        first.kill()
        first.wait()
        assert await asyncio.to_thread(exporter.export, spans) is SpanExportResult.FAILURE
        assert await asyncio.to_thread(exporter.export, spans) is SpanExportResult.FAILURE  # no restart loop
        monkeypatch.setattr(export_process, "_RESTART_AFTER_S", 0.0)
        assert await asyncio.to_thread(exporter.export, spans) is SpanExportResult.SUCCESS
        assert exporter._child is not first
        assert len(receiver.spans) == 2 * len(spans)
    finally:
        await asyncio.to_thread(exporter.shutdown)


async def _closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    from aiohttp import web

    runner = web.AppRunner(web.Application())
    port = await listen(runner, "127.0.0.1", 0)
    await runner.cleanup()
    return port
