"""Memory the telemetry process hands back to the system once traffic has paused.

Ended sessions free their objects, but the allocators keep freed memory for reuse, so a process that once held
10,000 sessions would stay that large. `MemoryReleaser` drops the caches it is given (an entry left per session
keeps the freed memory around it from going back), collects reference cycles and asks glibc to return its free pages
(`malloc_trim`; the telemetry process takes even its small objects from glibc's heap: `child_environment`), at given
moments after the last flow: a few seconds after it (the calls' parsers and buffers are gone), and again just after
the open sessions ended idle. An idle process does nothing more until the next flow. Elsewhere (macOS, musl) only
the cache drop and the collection run.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import time
from collections.abc import Callable, Sequence

#: no flow for this long: traffic has paused
QUIET_S = 5.0


def _malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):
        return None


class MemoryReleaser:
    """Called from the telemetry process's ticker, never from a thread that handles flows."""

    def __init__(self, after_s: Sequence[float], forget: Sequence[Callable[[], None]] = ()) -> None:
        """`forget`: caches to drop before each release (what they hold would pin freed pages)."""
        self._after_s = sorted(after_s)
        self._forget = tuple(forget)
        self._last_flow_at = 0.0
        self._done = 0  # how many of the moments after the last flow have had their release
        self._trim = _malloc_trim()

    def tick(self, last_flow_at: float) -> bool:
        """Releases when the next moment after the last flow has come; True when it did."""
        if last_flow_at != self._last_flow_at:  # traffic since: every moment is ahead again
            self._last_flow_at, self._done = last_flow_at, 0
        quiet_s = time.monotonic() - last_flow_at
        due = sum(1 for moment in self._after_s if quiet_s >= moment)
        if due <= self._done:
            return False
        self._done = due
        for forget in self._forget:
            forget()
        gc.collect()
        if self._trim is not None:
            self._trim(0)
        return True
