"""GenAI client metrics for each model call: token usage, operation duration, time to first chunk and time per
output chunk (streamed calls only), and cost; and the agent sessions open.

Instruments are the conventions' (`gen_ai_metrics`), with the bucket boundaries the conventions advise. Only the
duration carries `error.type`: the others' attributes do not have it. Cost has no metric in the conventions:
`llm_gateway.client.cost` counts USD with the token usage's dimensions, for dashboards to sum. Neither have
sessions: `llm_gateway.sessions.open` is how many the gateway is following, read at each collection.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from opentelemetry.metrics import CallbackOptions, Meter, Observation
from opentelemetry.semconv._incubating.attributes import gen_ai_attributes as gen_ai
from opentelemetry.semconv._incubating.metrics import gen_ai_metrics as metrics
from opentelemetry.semconv.attributes import error_attributes as err
from opentelemetry.semconv.attributes import server_attributes as server

from llm_gateway.telemetry.cost import USAGE_COST

if TYPE_CHECKING:  # the metrics SDK is loaded where a metrics pipeline is built, never in the relay
    from llm_gateway.telemetry.local_histogram import LocalHistogram

CLIENT_COST = "llm_gateway.client.cost"
SESSIONS_OPEN = "llm_gateway.sessions.open"
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
_TOKEN_TYPES = (("input", gen_ai.GEN_AI_USAGE_INPUT_TOKENS), ("output", gen_ai.GEN_AI_USAGE_OUTPUT_TOKENS))


@dataclass(frozen=True, slots=True)
class ChatHistograms:
    """The histograms aggregated by the gateway (see `local_histogram.py`): the SDK's `record` cleans and hashes the
    attributes each time, 10-20 µs; time per output chunk is recorded once per stream chunk, token usage twice a
    call, the duration once. The SDK's periodic reader exports only when its own instruments have data: the open
    sessions, observed at every collection, give it some whenever there is a pipeline."""

    chunk_gaps: LocalHistogram
    tokens: LocalHistogram
    time_to_first_chunk: LocalHistogram
    duration: LocalHistogram

    def __iter__(self) -> Iterator[LocalHistogram]:
        return iter((self.chunk_gaps, self.tokens, self.time_to_first_chunk, self.duration))


def chat_histograms() -> ChatHistograms:
    from llm_gateway.telemetry.local_histogram import LocalHistogram

    return ChatHistograms(
        # The conventions advise no boundaries for time per output chunk (CHUNK_BUCKETS).
        chunk_gaps=LocalHistogram(metrics.GEN_AI_CLIENT_OPERATION_TIME_PER_OUTPUT_CHUNK, "s",
                                  "Time per output chunk of a streamed response, for each chunk after the first",
                                  CHUNK_BUCKETS),
        tokens=LocalHistogram(metrics.GEN_AI_CLIENT_TOKEN_USAGE, "{token}", "Number of input and output tokens used",
                              TOKEN_BUCKETS),
        time_to_first_chunk=LocalHistogram(metrics.GEN_AI_CLIENT_OPERATION_TIME_TO_FIRST_CHUNK, "s",
                                           "Time to receive the first chunk of a streamed response", DURATION_BUCKETS),
        duration=LocalHistogram(metrics.GEN_AI_CLIENT_OPERATION_DURATION, "s", "GenAI operation duration",
                                DURATION_BUCKETS),
    )


class ChatMetrics:
    """The histograms go to `local`, the local histograms of the pipeline's metric reader (`setup.py` builds them
    with every reader); None where no metric is exported. `open_sessions` tells how many sessions are open."""

    __slots__ = ("_cost", "_local", "_recorded")

    def __init__(self, meter: Meter, local: ChatHistograms | None = None,
                 open_sessions: Callable[[], int] | None = None) -> None:
        self._local = local
        self._recorded = False
        self._cost = meter.create_counter(CLIENT_COST, unit="USD", description="Cost of the model calls")
        if open_sessions is not None:
            def observe(options: CallbackOptions) -> Iterable[Observation]:
                # nothing before the first call: a gateway that traced nothing has nothing to export at exit
                return (Observation(open_sessions()),) if self._recorded else ()

            meter.create_observable_up_down_counter(SESSIONS_OPEN, [observe], unit="{session}",
                                                    description="Agent sessions the gateway is following")

    def record(self, request_attrs: dict[str, Any], response_attrs: dict[str, Any], duration_s: float,
               chunk_gaps_ns: Sequence[int] = ()) -> None:
        """Record one call from its span attributes (known at the start, and at the end) and, for a streamed call,
        the time between each chunk and the one before it."""
        self._recorded = True
        dims = {k: v for k in _DIMENSIONS if (v := response_attrs.get(k, request_attrs.get(k))) is not None}
        local = self._local
        if local is not None:
            if request_attrs.get(gen_ai.GEN_AI_REQUEST_STREAM):
                local.chunk_gaps.record_many([gap_ns / 1e9 for gap_ns in chunk_gaps_ns], dims)
                if (ttfc := response_attrs.get(gen_ai.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK)) is not None:
                    local.time_to_first_chunk.record_many((ttfc,), dims)
            for token_type, key in _TOKEN_TYPES:
                if key in response_attrs:
                    local.tokens.record_many((response_attrs[key],), {**dims, gen_ai.GEN_AI_TOKEN_TYPE: token_type})
            error_type = response_attrs.get(err.ERROR_TYPE)
            local.duration.record_many((duration_s,), {**dims, err.ERROR_TYPE: error_type} if error_type else dims)
        if USAGE_COST in response_attrs:
            self._cost.add(response_attrs[USAGE_COST], dims)
