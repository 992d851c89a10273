"""The telemetry process's memory: freed as each call ends, handed back once traffic paused (`offload/memory.py`)."""

from __future__ import annotations

import gc
import subprocess
import sys
import time

import pytest

from bench.telemetry_load import Calls
from llm_gateway.addons import default_addons
from llm_gateway.offload import flow_wire
from llm_gateway.offload.memory import MemoryReleaser, _malloc_trim
from llm_gateway.offload.worker import Replayer
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


# What the telemetry process does with its sessions, in small: many objects of a few hundred bytes to some KiB
# (dicts, strings, lists: glibc's heap, not Python's arenas), all freed but one in fifty, which pins the pages.
_HOLD_AND_FREE = """
import sys
from llm_gateway.offload.memory import MemoryReleaser

def rss_kib():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])

held = [("x" * (600 + i % 3000)).encode() for i in range(150_000)]
kept = held[::50]
del held
before = rss_kib()
releaser = MemoryReleaser(after_s=(0.0,))
assert releaser.tick(last_flow_at=0.0)
print(before, rss_kib(), len(kept))
"""


@pytest.mark.skipif(_malloc_trim() is None or not sys.platform.startswith("linux"), reason="glibc's malloc_trim")
def test_freed_heap_pages_go_back_to_the_system():
    out = subprocess.run([sys.executable, "-c", _HOLD_AND_FREE], capture_output=True, text=True, check=True).stdout
    before_kib, after_kib, _ = map(int, out.split())
    print(f"RSS with the freed objects' pages {before_kib / 1024:.0f} MiB, released {after_kib / 1024:.0f} MiB")
    assert before_kib - after_kib > 100 * 1024  # most of the ~270 MiB freed


def test_a_traced_call_leaves_nothing_for_the_cyclic_collector():
    """Each call's objects (flow, span, parser, record) are freed when it ends, not at the collector's next pass:
    those passes go over every open session, so per-call garbage made tracing slower the more sessions were open."""
    telemetry = configure({}, local=True)
    assert telemetry is not None
    replayer = Replayer(default_addons({}, tracing=telemetry, relaying=False))
    calls = Calls(stream_chunks=5)
    for session in range(3):  # what the first calls load and keep (adapters, caches) is not garbage
        replayer.apply(flow_wire.encode(calls.messages(session, 0)))
    gc.collect()
    gc.disable()
    try:
        for call in range(1, 4):
            for session in range(10):
                replayer.apply(flow_wire.encode(calls.messages(session, call)))
        left_in_cycles = gc.collect()
    finally:
        gc.enable()
        telemetry.shutdown()
    assert left_in_cycles < 30  # there were some forty objects per call, 1,200 for these 30 calls
