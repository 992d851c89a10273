"""The telemetry process's memory: freed as each call ends, handed back once traffic paused (`offload/memory.py`)."""

from __future__ import annotations

import gc
import subprocess
import sys
import time

import pytest

from bench.telemetry_load import Calls
from llm_gateway.addons import default_addons
from llm_gateway.gc_schedule import FullCollections
from llm_gateway.offload.memory import MemoryReleaser, _malloc_trim
from llm_gateway.offload.process import child_environment
from llm_gateway.offload.worker import Replayer, collect_garbage
from llm_gateway.telemetry.setup import configure


def test_it_releases_at_each_moment_after_the_last_flow_and_then_rests():
    releaser = MemoryReleaser(after_s=(5.0, 300.0))
    now = time.monotonic()
    assert not releaser.tick(last_flow_at=now - 1.0)  # flows still come
    paused = now - 6.0
    assert releaser.tick(last_flow_at=paused)  # traffic paused
    assert not releaser.tick(last_flow_at=paused)  # done for this moment, the next is far
    long_ago = now - 301.0
    assert releaser.tick(last_flow_at=long_ago)  # the sessions have ended idle ...
    assert not releaser.tick(last_flow_at=long_ago)  # ... and nothing more until the next flow


# What the telemetry process does with its sessions, in small: many objects, all freed but one in fifty, which
# pins the memory around it. Of a few hundred bytes to some KiB: dicts, lists, request bodies. Of under 512 bytes:
# most of its objects (strings, small dicts, tuples), which Python's own allocator would keep in 1 MiB arenas for
# as long as one object in them lives; the telemetry process's environment has them from glibc's heap instead.
_HOLD_AND_FREE = """
import sys
from llm_gateway.offload.memory import MemoryReleaser

def rss_kib():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])

smallest, spread, count = map(int, sys.argv[1:])
held = [("x" * (smallest + i % spread)).encode() for i in range(count)]
kept = held[::50]
del held
before = rss_kib()
releaser = MemoryReleaser(after_s=(0.0,))
assert releaser.tick(last_flow_at=0.0)
print(before, rss_kib(), len(kept))
"""


@pytest.mark.skipif(_malloc_trim() is None or not sys.platform.startswith("linux"), reason="glibc's malloc_trim")
@pytest.mark.parametrize(("smallest", "spread", "count"), [(600, 3000, 150_000), (40, 400, 600_000)],
                         ids=["some KiB", "under 512 bytes"])
def test_freed_memory_goes_back_to_the_system(smallest: int, spread: int, count: int):
    out = subprocess.run([sys.executable, "-c", _HOLD_AND_FREE, str(smallest), str(spread), str(count)],
                         env=child_environment({}), capture_output=True, text=True, check=True).stdout
    before_kib, after_kib, _ = map(int, out.split())
    print(f"RSS with the freed objects' memory {before_kib / 1024:.0f} MiB, released {after_kib / 1024:.0f} MiB")
    freed_kib = count * (smallest + spread / 2 + 33) * 49 / 50 / 1024  # bytes objects: 33 bytes of header
    assert before_kib - after_kib > freed_kib / 2


def test_caches_are_dropped_before_each_release():
    dropped: list[float] = []
    releaser = MemoryReleaser(after_s=(5.0,), forget=(lambda: dropped.append(time.monotonic()),))
    now = time.monotonic()
    assert not releaser.tick(last_flow_at=now)
    assert dropped == []
    assert releaser.tick(last_flow_at=now - 6.0)
    assert len(dropped) == 1


def test_a_traced_call_leaves_nothing_for_the_cyclic_collector():
    """Each call's objects (flow, span, parser, record) are freed when it ends, not at the collector's next pass:
    those passes go over every open session, so per-call garbage made tracing slower the more sessions were open."""
    telemetry = configure({}, local=True)
    assert telemetry is not None
    replayer = Replayer(default_addons({}, tracing=telemetry, relaying=False))
    calls = Calls(stream_chunks=5)
    for session in range(3):  # what the first calls load and keep (adapters, caches) is not garbage
        replayer.apply(calls.messages(session, 0))
    gc.collect()
    gc.disable()
    try:
        for call in range(1, 4):
            for session in range(10):
                replayer.apply(calls.messages(session, call))
        left_in_cycles = gc.collect()
    finally:
        gc.enable()
        telemetry.shutdown()
    assert left_in_cycles < 30  # there were some forty objects per call, 1,200 for these 30 calls


def test_the_telemetry_process_collects_in_full_once_traffic_paused_or_when_the_schedule_forces_it():
    full: list[int] = []

    def count(phase: str, info: dict) -> None:
        if phase == "stop" and info["generation"] == 2:
            full.append(1)

    gc.callbacks.append(count)
    gc.disable()  # only the collections asked for
    try:
        now = time.monotonic()
        releaser = MemoryReleaser(after_s=(5.0,))
        schedule = FullCollections(last_s=now, idle_every_s=60.0, forced_every_s=600.0)
        collect_garbage(releaser, schedule, last_flow_at=now, in_flight=3)
        assert full == []  # flows are coming
        collect_garbage(releaser, schedule, last_flow_at=now - 6.0, in_flight=0)
        assert len(full) == 1  # traffic paused: the releaser's collection, which the schedule counts ...
        collect_garbage(releaser, schedule, last_flow_at=now - 6.0, in_flight=0)
        assert len(full) == 1  # ... so none again a second later
        schedule.last_s = now - 601.0
        collect_garbage(releaser, schedule, last_flow_at=time.monotonic(), in_flight=3)
        assert len(full) == 2  # traffic that never pauses: the forced one
    finally:
        gc.enable()
        gc.callbacks.remove(count)
