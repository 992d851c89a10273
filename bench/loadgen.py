"""The load generator: `python -m bench.loadgen < spec.json > result.json`, in its own (pinned) process.

One spec, one measurement, one JSON answer with quantile summaries. The same code drives every path; the
paths of one measurement are interleaved in a shuffled order per round, so drift and idle effects fall on all
of them alike. Times come from `client.Exchange` (taken in `data_received`).
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import math
import random
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from bench import proc, wire
from bench.client import Client, Exchange, Tls
from bench.stats import summarize

NS_PER_MS = 1e-6
NS_PER_US = 1e-3


@dataclass(frozen=True, slots=True)
class Target:
    """Where the load generator sends one path's requests."""

    name: str
    host: str
    port: int
    path: str
    tls: Tls | None = None  # HTTPS, perhaps through the target as a forward proxy

    @classmethod
    def of(cls, spec: dict[str, Any]) -> Target:
        tls = Tls(**spec["tls"]) if spec.get("tls") else None
        return cls(spec["name"], spec["host"], spec["port"], spec["path"], tls)

    def client(self) -> Client:
        return Client(self.host, self.port, self.path, self.tls)

    @property
    def url(self) -> str:
        if self.tls is None:
            return f"http://{self.host}:{self.port}{self.path}"
        via = f" via the proxy {self.host}:{self.port}" if self.tls.connect else f" at {self.host}:{self.port}"
        return f"https://{self.tls.server_name}{self.path}{via}"


@dataclass(slots=True)
class _Failures:
    count: int = 0
    first: str | None = None

    def add(self, exchange: Exchange, what: str = "") -> None:
        self.count += 1
        if self.first is None:
            self.first = f"{what}status {exchange.status}, {exchange.error or 'no error'}"

    def as_dict(self) -> dict[str, Any]:
        return {"errors": self.count, "first_error": self.first}


NONSTREAM_BODY = wire.request_body(stream=False)

# Raw samples are nanoseconds; their summaries are in these units.
METRICS: dict[str, tuple[str, float]] = {
    "latency": ("latency_ms", NS_PER_MS),
    "ttfb": ("ttfb_ms", NS_PER_MS),
    "first_event": ("first_event_ms", NS_PER_MS),
    "chunk_delay": ("chunk_delay_us", NS_PER_US),
    "chunk_transit": ("chunk_transit_us", NS_PER_US),
}


def summarize_samples(samples: dict[str, list[int]]) -> dict[str, Any]:
    """`{"latency": [ns, ...]}` -> `{"latency_ms": summary}`."""
    return {METRICS[metric][0]: summarize(values, METRICS[metric][1]) for metric, values in samples.items()}


@dataclass(slots=True)
class _Samples:
    """Raw samples (ns) of one path, by metric, and its failures."""

    values: dict[str, list[int]] = field(default_factory=dict)
    failures: _Failures = field(default_factory=_Failures)

    def add(self, metric: str, *values: int) -> None:
        self.values.setdefault(metric, []).extend(values)

    def as_dict(self) -> dict[str, Any]:
        return {"samples": self.values, **self.failures.as_dict()}


# --- sequential, non-streamed --------------------------------------------------------------------------------


async def sequential(targets: Sequence[Target], rounds: int, idle_ms: float, pair: bool, seed: int) -> dict:
    """Concurrency 1. Per round every path once, in a shuffled order. `pair`: each measured request directly
    follows an unmeasured one on the same path (warm). `idle_ms`: sleep that long before each measured one
    (cold)."""
    rng = random.Random(seed)
    clients = {t.name: t.client() for t in targets}
    samples = {t.name: _Samples() for t in targets}
    order = [t.name for t in targets]
    try:
        for _ in range(rounds):
            rng.shuffle(order)
            for name in order:
                client = clients[name]
                if pair:
                    await client.send(NONSTREAM_BODY)
                if idle_ms:
                    await asyncio.sleep(idle_ms / 1000)
                exchange = await client.send(NONSTREAM_BODY)
                if exchange.ok:
                    samples[name].add("latency", exchange.latency_ns)
                else:
                    samples[name].failures.add(exchange)
    finally:
        for client in clients.values():
            client.close()
    return {name: s.as_dict() for name, s in samples.items()}


# --- one stream at a time ----------------------------------------------------------------------------------------


def _add_stream(samples: _Samples, exchange: Exchange) -> None:
    events = exchange.events
    samples.add("ttfb", exchange.ttfb_ns)
    samples.add("first_event", events[0][0] - exchange.sent_ns)
    samples.add("chunk_transit", *(arrived - sent for arrived, sent in events))
    samples.add("chunk_delay", *chunk_delays(events))


def chunk_delays(events: Sequence[tuple[int, int]]) -> list[int]:
    """Per event after the first: its arrival gap minus the upstream's send gap (ns)."""
    return [(a1 - a0) - (s1 - s0) for (a0, s0), (a1, s1) in itertools.pairwise(events)]


async def streams(targets: Sequence[Target], rounds: int, chunks: int, interval_us: int, seed: int) -> dict:
    """Concurrency 1. Per round one SSE stream per path, in a shuffled order, each right after an unmeasured
    non-streamed request on the same path (so the time to first byte is a warm one)."""
    rng = random.Random(seed)
    clients = {t.name: t.client() for t in targets}
    samples = {t.name: _Samples() for t in targets}
    body = wire.request_body(stream=True, chunks=chunks, interval_us=interval_us)
    timeout = 30 + chunks * interval_us / 1e6 * 5
    order = [t.name for t in targets]
    try:
        for _ in range(rounds):
            rng.shuffle(order)
            for name in order:
                await clients[name].send(NONSTREAM_BODY)
                exchange = await clients[name].send(body, sse=True, timeout=timeout)
                if exchange.ok and len(exchange.events) == chunks:
                    _add_stream(samples[name], exchange)
                else:
                    samples[name].failures.add(exchange, f"{len(exchange.events)}/{chunks} events, ")
    finally:
        for client in clients.values():
            client.close()
    return {name: s.as_dict() for name, s in samples.items()}


# --- throughput ---------------------------------------------------------------------------------------------------


async def throughput(target: Target, concurrency: int, duration_s: float, warmup_s: float) -> dict:
    """Closed loop: `concurrency` keep-alive connections, each sending the next request when the last answer
    ended, for `duration_s` after `warmup_s` of the same unmeasured."""
    clients = [target.client() for _ in range(concurrency)]
    latencies: list[int] = []
    failures = _Failures()

    async def worker(client: Client, until: float, record: bool) -> None:
        while time.monotonic() < until:
            exchange = await client.send(NONSTREAM_BODY, timeout=10)
            if not record:
                continue
            if exchange.ok:
                latencies.append(exchange.latency_ns)
            else:
                failures.add(exchange)

    try:
        if warmup_s:
            until = time.monotonic() + warmup_s
            await asyncio.gather(*(worker(c, until, False) for c in clients))
        start = time.monotonic()
        await asyncio.gather(*(worker(c, start + duration_s, True) for c in clients))
        elapsed = time.monotonic() - start
    finally:
        for client in clients:
            client.close()
    return {
        "generator": "bench.loadgen (asyncio, uvloop)",
        "concurrency": concurrency,
        "duration_s": round(elapsed, 3),
        "requests": len(latencies),
        "rps": round(len(latencies) / elapsed, 1),
        "latency_ms": summarize(latencies, NS_PER_MS),
        **failures.as_dict(),
    }


# --- concurrent slow streams ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StallSettings:
    interval_ms: float  # the upstream's gap between two events of one stream
    ramp_per_s: float  # streams opened per second
    hold_s: float  # how long every stream of a level is open at once
    stall_ms: float  # an arrival gap this much longer than the upstream's gap is a stall


async def _slow_stream(target: Target, body: bytes, timeout: float) -> Exchange:
    client = target.client()  # a connection of its own
    try:
        return await client.send(body, sse=True, timeout=timeout)
    finally:
        client.close()


async def stall_level(target: Target, level: int, settings: StallSettings, rss_pid: int | None) -> dict:
    """Open `level` streams at the ramp rate; each lasts ramp + hold, so all are open together for `hold_s`."""
    ramp_s = level / settings.ramp_per_s
    chunks = math.ceil((ramp_s + settings.hold_s) * 1000 / settings.interval_ms) + 1
    body = wire.request_body(stream=True, chunks=chunks, interval_us=int(settings.interval_ms * 1000))
    timeout = 2 * ramp_s + settings.hold_s + 20
    rss_idle = proc.tree_rss_kib(rss_pid) if rss_pid else None
    started = time.monotonic()
    tasks: list[asyncio.Task[Exchange]] = []
    for index in range(level):
        tasks.append(asyncio.create_task(_slow_stream(target, body, timeout)))
        due = started + (index + 1) / settings.ramp_per_s
        if (pause := due - time.monotonic()) > 0:
            await asyncio.sleep(pause)
    ramp_end_ns = time.monotonic_ns()
    await asyncio.sleep(settings.hold_s / 2)
    rss_held = proc.tree_rss_kib(rss_pid) if rss_pid else None
    runs = await asyncio.gather(*tasks)
    return _level_outcome(level, chunks, runs, ramp_end_ns, settings) | {
        "ramp_s": round(ramp_s, 3),
        "duration_s": round(time.monotonic() - started, 3),
        "rss_idle_kib": rss_idle,
        "rss_held_kib": rss_held,
        "rss_per_stream_kib": round((rss_held - rss_idle) / level, 2) if rss_idle and rss_held else None,
    }


def _level_outcome(
    level: int, chunks: int, runs: Sequence[Exchange], ramp_end_ns: int, settings: StallSettings
) -> dict:
    failures = _Failures()
    excess_ramp: list[int] = []
    excess_hold: list[int] = []
    ttfb: list[int] = []
    stalled = 0
    stall_ns = settings.stall_ms * 1e6
    for exchange in runs:
        if not exchange.ok or len(exchange.events) != chunks:
            failures.add(exchange, f"{len(exchange.events)}/{chunks} events, ")
            continue
        events = exchange.events
        ttfb.append(exchange.ttfb_ns)
        delays = chunk_delays(events)
        for (arrived, _), excess in zip(events[1:], delays, strict=True):
            (excess_ramp if arrived < ramp_end_ns else excess_hold).append(excess)
        stalled += any(d > stall_ns for d in delays)
    every = excess_ramp + excess_hold
    return {
        "level": level,
        "held": failures.count == 0 and stalled == 0,
        "streams_ok": level - failures.count,
        "stalled_streams": stalled,
        "max_excess_ms": round(max(every) * NS_PER_MS, 3) if every else None,
        "excess_ms": summarize(every, NS_PER_MS),
        "ramp_max_excess_ms": round(max(excess_ramp) * NS_PER_MS, 3) if excess_ramp else None,
        "hold_max_excess_ms": round(max(excess_hold) * NS_PER_MS, 3) if excess_hold else None,
        "ttfb_ms": summarize(ttfb, NS_PER_MS),
        "chunks_per_stream": chunks,
        **failures.as_dict(),
    }


async def stalls(
    target: Target, levels: Sequence[int], settings: StallSettings, rss_pid: int | None, budget_s: float
) -> dict:
    """Levels in increasing order until one stalls or fails, or the time budget would be overrun."""
    outcomes: list[dict] = []
    deadline = time.monotonic() + budget_s
    for level in levels:
        expected = 2 * level / settings.ramp_per_s + settings.hold_s + 2
        if time.monotonic() + expected > deadline:
            outcomes.append({"level": level, "held": None, "skipped": "time budget of the stall test spent"})
            break
        outcome = await stall_level(target, level, settings, rss_pid)
        outcomes.append(outcome)
        if not outcome["held"]:
            break
        await asyncio.sleep(0.5)  # closed connections settle before the next level
    held = [o["level"] for o in outcomes if o.get("held")]
    return {"levels": outcomes, "max_held": max(held) if held else 0}


# --- entry point -------------------------------------------------------------------------------------------------


async def run_spec(spec: dict[str, Any]) -> dict:
    op = spec["op"]
    if op == "sequential":
        targets = [Target.of(t) for t in spec["targets"]]
        return await sequential(targets, spec["rounds"], spec.get("idle_ms", 0), spec.get("pair", False),
                                spec.get("seed", 1))
    if op == "streams":
        targets = [Target.of(t) for t in spec["targets"]]
        return await streams(targets, spec["rounds"], spec["chunks"], spec["interval_us"], spec.get("seed", 1))
    if op == "throughput":
        return await throughput(Target.of(spec["target"]), spec["concurrency"], spec["duration_s"],
                                spec.get("warmup_s", 0))
    if op == "stalls":
        settings = StallSettings(spec["interval_ms"], spec["ramp_per_s"], spec["hold_s"], spec["stall_ms"])
        return await stalls(Target.of(spec["target"]), spec["levels"], settings, spec.get("rss_pid"),
                            spec.get("budget_s", 120))
    raise ValueError(f"unknown op {op!r}")


def main() -> None:
    spec = orjson.loads(sys.stdin.buffer.read())
    # A collector pause in the client would show up as latency of whichever path it hit: the measurements
    # allocate little and free it by reference counting, so the cyclic collector stays off.
    gc.collect()
    gc.freeze()
    gc.disable()
    try:
        import uvloop
    except ImportError:
        result = asyncio.run(run_spec(spec))
    else:
        result = uvloop.run(run_spec(spec))
    sys.stdout.buffer.write(orjson.dumps(result))


if __name__ == "__main__":
    main()
