"""The telemetry process hands freed memory back once traffic paused (`offload/memory.py`)."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from llm_gateway.offload.memory import MemoryReleaser, _malloc_trim


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
