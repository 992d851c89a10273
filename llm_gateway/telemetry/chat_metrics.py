"""GenAI client metrics for each model call: token usage, operation duration, time to first chunk and time per
output chunk (streamed calls only), and cost.

Instruments are the conventions' (`gen_ai_metrics`), with the bucket boundaries the conventions advise. Only the
duration carries `error.type`: the others' attributes do not have it. Cost has no metric in the conventions:
`llm_gateway.client.cost` counts USD with the token usage's dimensions, for dashboards to sum.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from opentelemetry.metrics import Meter
from opentelemetry.semconv._incubating.attributes import gen_ai_attributes as gen_ai
from opentelemetry.semconv._incubating.metrics import gen_ai_metrics as metrics
from opentelemetry.semconv.attributes import error_attributes as err
from opentelemetry.semconv.attributes import server_attributes as server

from llm_gateway.telemetry.cost import USAGE_COST

if TYPE_CHECKING:  # the metrics SDK is loaded where a metrics pipeline is built, never in the relay
    from llm_gateway.telemetry.local_histogram import LocalHistogram

CLIENT_COST = "llm_gateway.client.cost"
TOKEN_BUCKETS = [1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864]
DURATION_BUCKETS = [0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92]
#: the conventions advise none for time per output chunk: these are their server time-per-output-token boundaries
CHUNK_BUCKETS = [0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5]

# Span attributes that are also metric dimensions (low cardinality only).
_DIMENSIONS = (
    gen_ai.GEN_AI_OPERATION_NAME,
    gen_ai.GEN_AI_PROVIDER_NAME,
    gen_ai.GEN_AI_REQUEST_MODEL,
    gen_ai.GEN_AI_RESPONSE_MODEL,
    server.SERVER_ADDRESS,
    server.SERVER_PORT,
)


def chunk_gap_histogram() -> LocalHistogram:
    """time_per_output_chunk aggregated by the gateway (see `local_histogram.py`: the SDK's record, once per chunk,
    cost more than the rest of a call's telemetry)."""
    from llm_gateway.telemetry.local_histogram import LocalHistogram

    return LocalHistogram(metrics.GEN_AI_CLIENT_OPERATION_TIME_PER_OUTPUT_CHUNK, "s",
                          "Time per output chunk of a streamed response, for each chunk after the first", CHUNK_BUCKETS)


class ChatMetrics:
    """The per-chunk times go to `chunk_gaps`, the local histogram of the pipeline's metric reader (`setup.py`
    builds one with every reader); None where no metric is exported."""

    __slots__ = ("_chunk_gaps", "_cost", "_duration", "_tokens", "_ttfc")

    def __init__(self, meter: Meter, chunk_gaps: LocalHistogram | None = None) -> None:
        self._tokens = meter.create_histogram(
            metrics.GEN_AI_CLIENT_TOKEN_USAGE, unit="{token}",
            description="Number of input and output tokens used",
            explicit_bucket_boundaries_advisory=TOKEN_BUCKETS,
        )
        self._duration = meter.create_histogram(
            metrics.GEN_AI_CLIENT_OPERATION_DURATION, unit="s", description="GenAI operation duration",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
        self._ttfc = meter.create_histogram(
            metrics.GEN_AI_CLIENT_OPERATION_TIME_TO_FIRST_CHUNK, unit="s",
            description="Time to receive the first chunk of a streamed response",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
        self._chunk_gaps = chunk_gaps
        self._cost = meter.create_counter(CLIENT_COST, unit="USD", description="Cost of the model calls")

    def record(self, request_attrs: dict[str, Any], response_attrs: dict[str, Any], duration_s: float,
               chunk_gaps_ns: Sequence[int] = ()) -> None:
        """Record one call from its span attributes (known at the start, and at the end) and, for a streamed call,
        the time between each chunk and the one before it."""
        dims = {k: v for k in _DIMENSIONS if (v := response_attrs.get(k, request_attrs.get(k))) is not None}
        streamed = request_attrs.get(gen_ai.GEN_AI_REQUEST_STREAM)
        if streamed and self._chunk_gaps is not None:
            # Before the SDK's records: the reader exports only when its own instruments have something, and the
            # duration below then makes sure that an export follows these.
            self._chunk_gaps.record_many([gap_ns / 1e9 for gap_ns in chunk_gaps_ns], dims)
        error_type = response_attrs.get(err.ERROR_TYPE)
        self._duration.record(duration_s, {**dims, err.ERROR_TYPE: error_type} if error_type else dims)
        if streamed and (ttfc := response_attrs.get(gen_ai.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK)) is not None:
            self._ttfc.record(ttfc, dims)
        for token_type, key in (
            ("input", gen_ai.GEN_AI_USAGE_INPUT_TOKENS),
            ("output", gen_ai.GEN_AI_USAGE_OUTPUT_TOKENS),
        ):
            if key in response_attrs:
                self._tokens.record(response_attrs[key], {**dims, gen_ai.GEN_AI_TOKEN_TYPE: token_type})
        if USAGE_COST in response_attrs:
            self._cost.add(response_attrs[USAGE_COST], dims)
