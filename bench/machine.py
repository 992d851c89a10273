"""What the machine is (CPU, OS, versions) and how busy other work keeps it while the harness measures."""

from __future__ import annotations

import contextlib
import os
import platform
import subprocess
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

from bench.proc import Managed, system_cpu_seconds, tree_cpu_seconds


def describe() -> dict:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "cpu": model,
        "cpus": os.cpu_count(),
        "cpus_allowed": sorted(os.sched_getaffinity(0)),
        "kernel": platform.release(),
        "os": _os_name(),
        "python": platform.python_version(),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
    }


def _os_name() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip('"')
    return platform.system()


def versions(repo_root: Path) -> dict:
    out = {}
    for dist in ("aiohttp", "uvloop", "orjson", "opentelemetry-sdk", "opentelemetry-exporter-otlp-proto-http",
                 "opentelemetry-instrumentation-aiohttp-client"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[dist] = metadata.version(dist)
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              cwd=repo_root, timeout=10, check=False).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                               text=True, cwd=repo_root, timeout=10, check=False).stdout.strip()
        out["llm-gateway commit"] = head + (" (with uncommitted changes)" if dirty else "")
    return out


class Noise:
    """CPU used by processes the harness did not start (the machine may be shared), per phase."""

    def __init__(self, processes: list[Managed]) -> None:
        self._processes = processes
        self._start = (0.0, 0.0, 0.0)

    def _ours(self) -> float:
        own = os.times()  # this process, plus the load generators and wrk runs it has waited for
        servers = sum(tree_cpu_seconds(m.pid) for m in self._processes if m.alive())
        return own.user + own.system + own.children_user + own.children_system + servers

    def start(self) -> None:
        self._start = (time.monotonic(), system_cpu_seconds(), self._ours())

    def stop(self) -> dict:
        wall = time.monotonic() - self._start[0]
        foreign = (system_cpu_seconds() - self._start[1]) - (self._ours() - self._start[2])
        cpus = os.cpu_count() or 1
        return {"wall_s": round(wall, 1), "foreign_cpu_s": round(max(foreign, 0.0), 2),
                "foreign_share": round(max(foreign, 0.0) / (wall * cpus), 3) if wall else None}

    def wait_for_quiet(self, max_wait: float, share: float, log: Callable[[str], None]) -> dict:
        """Sample 2 s windows until other work uses less than `share` of the machine, or `max_wait` passed."""
        began = time.monotonic()
        while True:
            self.start()
            time.sleep(2.0)
            sample = self.stop()
            waited = time.monotonic() - began
            if sample["foreign_share"] is None or sample["foreign_share"] < share or waited >= max_wait:
                return {"waited_s": round(waited, 1), "last_foreign_share": sample["foreign_share"],
                        "quiet": sample["foreign_share"] is not None and sample["foreign_share"] < share}
            log(f"other processes use {sample['foreign_share']:.0%} of the CPUs; waiting for a quieter moment")
