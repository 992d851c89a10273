"""The GenAI client metrics of one call (issue 14): time to first chunk and time per output chunk for streamed calls
only, `error.type` on the duration only."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from multidict import CIMultiDict
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import AggregationTemporality, InMemoryMetricReader

from llm_gateway.protocols import openai_chat
from llm_gateway.protocols.base import HttpResponseHead
from llm_gateway.protocols.run import ExchangeRun
from llm_gateway.telemetry.chat_metrics import ChatMetrics, chat_histograms
from tests.support.exchanges import exchange_with
from tests.support.records import http_request

REQUEST = {"gen_ai.operation.name": "chat", "gen_ai.provider.name": "anthropic", "gen_ai.request.model": "m",
           "server.address": "127.0.0.1", "server.port": 80}
RESPONSE = {"gen_ai.usage.input_tokens": 10, "gen_ai.usage.output_tokens": 3,
            "gen_ai.response.time_to_first_chunk": 0.25}


def _points(stream: bool, response: dict[str, Any], gaps: list[int]) -> dict[str, list[Any]]:
    """The points of one call: the SDK's instruments, and the gateway's local histograms."""
    reader = InMemoryMetricReader()
    histograms = chat_histograms()
    metrics = ChatMetrics(MeterProvider(metric_readers=[reader]).get_meter("test"), histograms)
    metrics.record({**REQUEST, "gen_ai.request.stream": stream}, response, 1.5, gaps)
    data = reader.get_metrics_data()
    found: dict[str, list[Any]] = {}
    local = [m for h in histograms if (m := h.collect(AggregationTemporality.CUMULATIVE)) is not None]
    sdk = [metric for resource in data.resource_metrics for scope in resource.scope_metrics
           for metric in scope.metrics] if data else []
    for metric in [*sdk, *local]:
        found[metric.name] = list(metric.data.data_points)
    return found


def test_streamed_call_gets_first_chunk_and_per_chunk_times() -> None:
    points = _points(True, RESPONSE, [40_000_000, 60_000_000, 20_000_000])
    (chunk,) = points["gen_ai.client.operation.time_per_output_chunk"]
    assert (chunk.count, chunk.sum) == (3, pytest.approx(0.12))
    assert chunk.explicit_bounds[0] == 0.01
    (first,) = points["gen_ai.client.operation.time_to_first_chunk"]
    assert (first.count, first.sum) == (1, 0.25)


def test_whole_answer_gets_neither_chunk_metric() -> None:
    points = _points(False, RESPONSE, [40_000_000])
    assert "gen_ai.client.operation.time_per_output_chunk" not in points
    assert "gen_ai.client.operation.time_to_first_chunk" not in points
    assert "gen_ai.client.operation.duration" in points


def test_only_the_duration_carries_the_error_type() -> None:
    points = _points(True, {**RESPONSE, "error.type": "overloaded_error"}, [40_000_000])
    (duration,) = points["gen_ai.client.operation.duration"]
    assert duration.attributes["error.type"] == "overloaded_error"
    others = [p for name, ps in points.items() if name != "gen_ai.client.operation.duration" for p in ps]
    assert {p.attributes.get("gen_ai.token.type") for p in points["gen_ai.client.token.usage"]} == {"input", "output"}
    assert others and not [p for p in others if "error.type" in p.attributes]


def _chat_run() -> tuple[ExchangeRun, list[bytes]]:
    """A Chat Completions stream: five text chunks and a finish, each one SSE event that gives events."""
    request = exchange_with("/v1/chat/completions", {"model": "m", "stream": True, "messages": []}, b"",
                            "text/event-stream")
    deltas = [{"content": c} for c in "hello"]
    chunks = [{"id": "c1", "model": "m", "choices": [{"index": 0, "delta": d, "finish_reason": None}]}
              for d in deltas]
    chunks.append({"id": "c1", "model": "m", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    run = ExchangeRun(openai_chat.ADAPTER, http_request(request))
    run.response_head(HttpResponseHead(200, CIMultiDict({"content-type": "text/event-stream"})))
    return run, [b"data: " + orjson.dumps(c) + b"\n\n" for c in chunks]


def test_each_chunk_that_completes_events_is_timed_from_the_one_before() -> None:
    run, events = _chat_run()
    for i, event in enumerate(events):
        run.body((i + 1) * 1_000_000_000, event[:3])  # no event completed yet: not a chunk
        run.body((i + 1) * 1_000_000_000 + 7, event[3:])
    run.body(99_000_000_000, b"data: [DONE]\n\n")  # the end marker gives no event: not a chunk either
    assert run.chunk_gaps_ns == [1_000_000_000] * (len(events) - 1)
    assert run.finish(100_000_000_000).finish_reasons == ["stop"]


def test_a_whole_body_in_one_piece_has_no_gap() -> None:
    run, events = _chat_run()
    run.body(1, b"".join(events))
    assert run.chunk_gaps_ns == []


def test_the_sessions_open_are_read_at_each_collection_once_a_call_was_recorded() -> None:
    reader = InMemoryMetricReader()
    open_sessions = [3]
    metrics = ChatMetrics(MeterProvider(metric_readers=[reader]).get_meter("test"), chat_histograms(),
                          lambda: open_sessions[0])
    assert reader.get_metrics_data() is None  # nothing traced: nothing to export (nor to fail exporting at exit)
    metrics.record(REQUEST, RESPONSE, 1.5)
    values = []
    for count in (3, 0):
        open_sessions[0] = count
        (metric,) = reader.get_metrics_data().resource_metrics[0].scope_metrics[0].metrics
        values.append((metric.name, metric.data.data_points[0].value, metric.data.is_monotonic))
    assert values == [("llm_gateway.sessions.open", 3, False), ("llm_gateway.sessions.open", 0, False)]
