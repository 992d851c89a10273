"""The span spool alone (`telemetry/spool.py`): the directory's bound and order, and the exporter wrapper against a
backend that goes down and comes back. A real gateway through a real outage: reliability/test_trace_outage.py."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from llm_gateway.telemetry import TelemetryConfigError, spool
from llm_gateway.telemetry.setup import export_plan
from llm_gateway.telemetry.spool import (
    Sent,
    SpanSpool,
    SpoolingSpanExporter,
    SpoolState,
    spool_bytes,
    spool_directory,
)


def _spans(*names: str) -> list[ReadableSpan]:
    tracer = TracerProvider().get_tracer("test")
    spans = []
    for name in names:
        span = tracer.start_span(name)
        span.end()
        spans.append(span)
    return spans


class Backend(SpanExporter):
    """A trace backend that is up or down, and the exporter's HTTP client in front of it (`send`) in one."""

    def __init__(self) -> None:
        self.up = True
        self.received: list[list[str]] = []  # span names, one list per export

    def send(self, data: bytes) -> Sent:
        if not self.up:
            return Sent.RETRY
        request = ExportTraceServiceRequest.FromString(data)
        self.received.append([s.name for rs in request.resource_spans for ss in rs.scope_spans for s in ss.spans])
        return Sent.OK

    def shutdown(self) -> None:
        pass


def _wait(condition, within_s: float = 5.0) -> None:
    deadline = time.monotonic() + within_s
    while not condition():
        assert time.monotonic() < deadline, "not within the time"
        time.sleep(0.01)


@pytest.fixture(autouse=True)
def _quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(spool, "RETRY_S", 0.05)


def test_past_its_limit_the_spool_drops_its_oldest_batches_and_counts_their_spans(tmp_path: Path):
    directory = SpanSpool(tmp_path / "spool", limit=100)
    assert directory.put(b"a" * 40, 1) == 0
    assert directory.put(b"b" * 40, 2) == 0
    assert directory.put(b"c" * 40, 3) == 1  # the oldest made room
    assert [directory.read(b) for b in directory.batches()] == [b"b" * 40, b"c" * 40]
    assert directory.put(b"d" * 101, 4) == 4  # larger than the whole spool: itself
    assert directory.put(b"e" * 100, 5) == 5  # fits only alone
    assert [(b.size, b.spans) for b in directory.batches()] == [(100, 5)]
    assert directory.dropped == 1 + 4 + 2 + 3
    assert directory.state() == SpoolState(spans=5, bytes=100, delivered=0, dropped=10)


def test_one_process_at_a_time_sends_from_a_spool_directory(tmp_path: Path):
    first, second = SpanSpool(tmp_path, 1000), SpanSpool(tmp_path, 1000)
    assert first.claim() and first.claim()
    assert not second.claim()
    first.release()
    assert second.claim()
    second.release()


def test_the_spool_directory_is_one_per_endpoint_under_the_state_directory(tmp_path: Path):
    env = {"LLM_GATEWAY_STATE_DIR": str(tmp_path)}
    one = spool_directory(env, "http://127.0.0.1:4318/v1/traces")
    assert one.parent == tmp_path / "spool" and one.name.startswith("http_127.0.0.1_4318_v1_traces-")
    assert spool_directory(env, "https://other.example/v1/traces") != one
    assert spool_directory({}, "http://x/v1/traces").parent == Path("~/.llm-gateway/state/spool").expanduser()


@pytest.mark.parametrize("value", ["-1", "64MiB", "1.5"])
def test_a_spool_size_that_is_not_a_number_of_bytes_is_refused_at_startup(value: str):
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318", "LLM_GATEWAY_SPOOL_BYTES": value}
    with pytest.raises(TelemetryConfigError, match="LLM_GATEWAY_SPOOL_BYTES"):
        export_plan(env)
    assert spool_bytes({"LLM_GATEWAY_SPOOL_BYTES": "0"}) == 0
    assert spool_bytes({}) == 64 * 1024 * 1024


def test_batches_made_while_the_backend_is_down_are_sent_after_it_in_order(tmp_path: Path):
    backend = Backend()
    exporter = SpoolingSpanExporter(backend, SpanSpool(tmp_path, 1 << 20), backend.send, "test")
    try:
        assert exporter.export(_spans("a")) is SpanExportResult.SUCCESS
        backend.up = False
        for name in "bcd":
            assert exporter.export(_spans(name)) is SpanExportResult.SUCCESS  # spooled
        assert len(list(tmp_path.glob("*.otlp"))) == 3
        assert exporter.spool.state().spans == 3
        backend.up = True
        assert exporter.export(_spans("e")) is SpanExportResult.SUCCESS  # behind the spooled ones
        _wait(lambda: len(backend.received) == 5)
        exporter.export(_spans("f"))  # straight through again, the spool being empty
    finally:
        exporter.shutdown()
    assert backend.received == [["a"], ["b"], ["c"], ["d"], ["e"], ["f"]]
    assert list(tmp_path.glob("*.otlp")) == []
    assert exporter.spool.state() == SpoolState(spans=0, bytes=0, delivered=4, dropped=0)  # b-e went by the spool


def test_what_was_spooled_at_shutdown_is_sent_by_the_next_start_unasked(tmp_path: Path):
    backend = Backend()
    backend.up = False
    exporter = SpoolingSpanExporter(backend, SpanSpool(tmp_path, 1 << 20), backend.send, "test")
    exporter.export(_spans("a", "b"))
    exporter.shutdown()
    assert len(list(tmp_path.glob("*.otlp"))) == 1
    backend.up = True
    again = SpoolingSpanExporter(backend, SpanSpool(tmp_path, 1 << 20), backend.send, "test")
    try:
        _wait(lambda: backend.received == [["a", "b"]])
        again.export(_spans("c"))
    finally:
        again.shutdown()
    assert backend.received == [["a", "b"], ["c"]]


def test_a_batch_the_backend_refuses_for_good_is_dropped_and_counted(tmp_path: Path):
    backend = Backend()
    backend.up = False
    directory = SpanSpool(tmp_path, 1 << 20)
    answers = [Sent.REFUSED, Sent.RETRY]  # the first attempt finds the backend down; the spool's, a refusal
    exporter = SpoolingSpanExporter(backend, directory, lambda data: answers.pop() if answers else
                                    backend.send(data), "test")
    try:
        exporter.export(_spans("bad", "bad"))
        exporter.export(_spans("good"))
        backend.up = True
        _wait(lambda: backend.received == [["good"]])
    finally:
        exporter.shutdown()
    assert directory.dropped == 2


def test_a_batch_the_backend_refuses_for_good_when_up_is_a_failed_export_and_not_spooled(tmp_path: Path):
    backend = Backend()
    directory = SpanSpool(tmp_path, 1 << 20)
    answers = [Sent.REFUSED]
    exporter = SpoolingSpanExporter(backend, directory, lambda data: answers.pop() if answers else
                                    backend.send(data), "test")
    try:
        assert exporter.export(_spans("bad")) is SpanExportResult.FAILURE
        assert exporter.export(_spans("good")) is SpanExportResult.SUCCESS
    finally:
        exporter.shutdown()
    assert backend.received == [["good"]]
    assert directory.batches() == [] and directory.dropped == 0


def test_a_spooled_batch_is_the_exporters_own_encoding(tmp_path: Path):
    backend = Backend()
    backend.up = False
    spans = _spans("a", "b")
    exporter = SpoolingSpanExporter(backend, SpanSpool(tmp_path, 1 << 20), backend.send, "test")
    exporter.export(spans)
    exporter.shutdown()
    (file,) = tmp_path.glob("*.otlp")
    assert file.read_bytes() == encode_spans(spans).SerializePartialToString()
    assert file.name.endswith("-2.otlp")  # the span count, for counting what is dropped
