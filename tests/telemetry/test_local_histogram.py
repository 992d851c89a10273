"""The locally aggregated histogram (time_per_output_chunk) exports what the metrics SDK would have exported for
the same values: its own Histogram instrument, with the same bounds, is the reference. Both go through one SDK
periodic reader, into one export, under the gateway's scope."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
from opentelemetry.sdk.metrics import Histogram as HistogramInstrument
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    MetricExporter,
    MetricExportResult,
    MetricsData,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from llm_gateway.telemetry.chat_metrics import CHUNK_BUCKETS
from llm_gateway.telemetry.local_histogram import LocalHistogram, WithLocalHistograms

SCOPE = InstrumentationScope("llm_gateway", "1")
# On the bounds, between them, below the first and above the last: the bucket rule shows at the edges.
VALUES = [0.01, 0.0100001, 0.003, 0.05, 0.2, 0.2, 2.5, 7.0, 0.075]
DIMS = {"gen_ai.operation.name": "chat", "gen_ai.provider.name": "anthropic", "server.port": 443}


class Captured(MetricExporter):
    def __init__(self, temporality: AggregationTemporality) -> None:
        super().__init__(preferred_temporality={HistogramInstrument: temporality})
        self.exports: list[MetricsData] = []

    def export(self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any) -> MetricExportResult:
        self.exports.append(metrics_data)
        return MetricExportResult.SUCCESS

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        pass


def _pipeline(temporality: AggregationTemporality) -> tuple[MeterProvider, LocalHistogram, Any, Captured]:
    captured = Captured(temporality)
    local = LocalHistogram("local", "s", "gaps", CHUNK_BUCKETS)
    reader = PeriodicExportingMetricReader(WithLocalHistograms(captured, [local], SCOPE, Resource.get_empty()),
                                           export_interval_millis=3_600_000)
    provider = MeterProvider(metric_readers=[reader])
    reference = provider.get_meter(SCOPE.name, SCOPE.version).create_histogram(
        "reference", unit="s", explicit_bucket_boundaries_advisory=CHUNK_BUCKETS)
    return provider, local, reference, captured


def _by_name(data: MetricsData) -> dict[str, Any]:
    (resource,) = data.resource_metrics
    (scope,) = resource.scope_metrics  # one scope: the local histogram joined the SDK's own
    assert scope.scope.name == SCOPE.name
    return {m.name: m for m in scope.metrics}


def _fields(point: Any) -> tuple:
    return (dict(point.attributes), point.count, pytest.approx(point.sum), list(point.bucket_counts),
            list(point.explicit_bounds), point.min, point.max)


def _record(local: LocalHistogram, reference: Any, values: Sequence[float]) -> None:
    local.record_many(values, DIMS)
    for value in values:
        reference.record(value, DIMS)


@pytest.mark.parametrize("temporality", [AggregationTemporality.CUMULATIVE, AggregationTemporality.DELTA])
def test_the_local_histogram_exports_what_the_sdk_would_in_the_same_export(temporality) -> None:
    provider, local, reference, captured = _pipeline(temporality)
    _record(local, reference, VALUES)
    provider.force_flush()
    _record(local, reference, VALUES[:3])
    provider.force_flush()
    provider.shutdown()
    assert len(captured.exports) >= 2
    for data in captured.exports[:2]:
        metrics = _by_name(data)
        (mine,), (theirs,) = metrics["local"].data.data_points, metrics["reference"].data.data_points
        assert metrics["local"].data.aggregation_temporality == temporality
        assert _fields(mine) == _fields(theirs)
    second = _by_name(captured.exports[1])["local"].data.data_points[0]
    assert second.count == (3 if temporality == AggregationTemporality.DELTA else len(VALUES) + 3)


def test_local_points_wait_for_the_next_export_the_sdk_makes() -> None:
    """The SDK's reader skips an export when its own instruments have nothing new (delta): local points recorded
    then go with the next one. ChatMetrics records the chunk times before the call's duration, so that one comes."""
    provider, local, reference, captured = _pipeline(AggregationTemporality.DELTA)
    local.record_many([0.02], DIMS)
    provider.force_flush()
    reference.record(1.0, DIMS)
    provider.force_flush()
    provider.shutdown()
    (point,) = _by_name(captured.exports[-1])["local"].data.data_points
    assert (point.count, point.sum) == (1, 0.02)
