"""How much of each measurement a run takes: the full run (< 10 minutes) and `--quick` (< 60 s)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Plan:
    mode: str
    # Rounds are per proxy: each round is one measured exchange on direct and one on the proxy, in a shuffled
    # order (see `run.Bench._interleaved`).
    #: non-streamed, concurrency 1: each measured request right after an unmeasured one on the same path
    warm_rounds: int
    #: non-streamed, concurrency 1: each measured request after `cold_idle_ms` of idle
    cold_rounds: int
    cold_idle_ms: float
    #: SSE streams at concurrency 1, one per path per round
    stream_rounds: int
    stream_chunks: int
    stream_interval_us: int
    #: short SSE streams at concurrency 1, one per path per round: the time to first byte (the long streams above
    #: are too few for a p99 of it)
    ttfb_rounds: int
    #: both stream phases run in this many passes over the proxies (each pass a block of rounds per proxy in a
    #: shuffled order, then in the reverse): their p99s are tails of a few dozen samples, and a burst of the
    #: machine's noise on one long block moved them by tens of µs (per chunk) and tenths of ms (TTFB)
    stream_passes: int
    #: closed-loop throughput
    rps_concurrency: int
    rps_duration_s: float
    rps_warmup_s: float
    #: concurrent slow streams: levels tried in order until one stalls
    stall_levels: tuple[int, ...]
    stall_interval_ms: float
    stall_ramp_per_s: float
    stall_hold_s: float
    stall_ms: float
    stall_budget_s: float  # per path
    #: after its throughput and stall tests a server gets this long to finish queued work (a span export batch
    #: is due up to 5 s after the last span) before it is frozen again
    settle_s: float
    #: py-spy recording per scenario (with --profile)
    profile_s: float
    #: before measuring, wait up to this long for other work on the machine to drop below `quiet_share`
    quiet_wait_s: float
    quiet_share: float = 0.15


FULL = Plan(
    mode="full",
    warm_rounds=1000,
    cold_rounds=200,
    cold_idle_ms=25,
    stream_rounds=40,
    stream_chunks=200,
    stream_interval_us=2000,
    ttfb_rounds=1500,
    stream_passes=5,
    rps_concurrency=32,
    rps_duration_s=5,
    rps_warmup_s=1,
    stall_levels=(250, 500, 1000, 2000),
    stall_interval_ms=200,
    stall_ramp_per_s=1000,
    stall_hold_s=4,
    stall_ms=50,
    stall_budget_s=60,
    settle_s=6,
    profile_s=10,
    quiet_wait_s=180,
)

QUICK = Plan(
    mode="quick",
    warm_rounds=100,
    cold_rounds=10,
    cold_idle_ms=25,
    stream_rounds=2,
    stream_chunks=200,
    stream_interval_us=2000,
    ttfb_rounds=20,
    stream_passes=1,
    rps_concurrency=32,
    rps_duration_s=1,
    rps_warmup_s=0,
    stall_levels=(50, 100),
    stall_interval_ms=200,
    stall_ramp_per_s=500,
    stall_hold_s=1,
    stall_ms=50,
    stall_budget_s=8,
    settle_s=0,
    profile_s=3,
    quiet_wait_s=0,
)
