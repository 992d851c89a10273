"""When the gateway's processes run full collections of Python's cyclic garbage collector.

A full (generation 2) collection walks every object the process tracks, in one go: with 2,000 streams open the
relay holds some 200,000 more, and a full collection took 120 ms untraced, 190 ms traced, during which no stream
moves (measured with gc callbacks; the bench's stall test saw one such wait, 197 ms, at 2,000 streams). CPython
before 3.14 has no incremental collector. So the relay turns automatic full collections off and runs them itself:
when no exchange is in flight (agents pause between calls: nothing is there to wait), or, when traffic never
pauses, every `FORCED_EVERY_S`, so that cyclic garbage cannot grow without bound. Young collections (generations
0 and 1) stay automatic: they are short.

The telemetry process does the same with its flows: with 10,000 sessions open, automatic full collections cost
50 µs of every traced call (14 of them in 30,000 calls, 110 ms each), and made tracing CPU grow with the sessions.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Callable
from dataclasses import dataclass

#: a full collection at most this often while nothing is in flight
IDLE_EVERY_S = 60.0
#: and at least this often, in flight or not
FORCED_EVERY_S = 600.0
#: collections of generation 1 before an automatic full one: never, in practice
_NEVER = 1 << 30
#: generation 0 threshold: fewer, cheaper young collections under load (measured in bench/); generation 1: CPython's
YOUNG_THRESHOLDS = (10_000, 50)


@dataclass(slots=True)
class FullCollections:
    """Decides when the next full collection runs (sans-IO: the caller brings the time and what is in flight)."""

    last_s: float
    idle_every_s: float = IDLE_EVERY_S
    forced_every_s: float = FORCED_EVERY_S

    def due(self, now_s: float, in_flight: int) -> bool:
        since = now_s - self.last_s
        return since >= self.forced_every_s or (in_flight == 0 and since >= self.idle_every_s)

    def ran(self, now_s: float) -> None:
        self.last_s = now_s


def take_over_full_collections() -> None:
    """Young collections stay automatic, full ones are left to `FullCollections`."""
    gc.set_threshold(*YOUNG_THRESHOLDS, _NEVER)


def collect_if_due(schedule: FullCollections, in_flight: int) -> None:
    """A full collection now, when `schedule` says one is due."""
    if schedule.due(time.monotonic(), in_flight):
        gc.collect()
        schedule.ran(time.monotonic())


async def collect_when_due(in_flight: Callable[[], int], every_s: float = 1.0,
                           schedule: FullCollections | None = None) -> None:
    """Runs for the process's life: a full collection whenever `schedule` says one is due."""
    schedule = schedule or FullCollections(time.monotonic())
    while True:
        await asyncio.sleep(every_s)
        collect_if_due(schedule, in_flight())
