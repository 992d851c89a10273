"""Processes the harness starts: each in its own process group, pinned to chosen CPUs, logging to a file, and
stopped by its group id. Also what /proc says about a process tree (resident memory, CPU time)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

LOOPBACK = "127.0.0.1"
_CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    """A loopback port nothing listens on right now (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def cpu_plan() -> tuple[set[int] | None, set[int] | None, str]:
    """(CPUs for the server under test, CPUs for the harness: upstream, sink, load generator; a description).
    With fewer than two CPUs allowed, nothing is pinned."""
    allowed = sorted(os.sched_getaffinity(0))
    if len(allowed) < 2:
        return None, None, f"none (only CPU {allowed} allowed)"
    server, harness = {allowed[0]}, set(allowed[1:])
    return server, harness, (
        f"server under test (gateway, nginx, LiteLLM) on CPU {sorted(server)}; upstream, OTLP sink, load "
        f"generator and harness on CPU {sorted(harness)} (os.sched_setaffinity / taskset)"
    )


class Managed:
    """A started server: `Managed.start(...)`, later `stop()` (SIGTERM to its group, SIGKILL after a grace)."""

    def __init__(self, name: str, popen: subprocess.Popen, log_path: Path) -> None:
        self.name = name
        self.popen = popen
        self.log_path = log_path

    @classmethod
    def start(
        cls,
        name: str,
        argv: Sequence[str],
        log_dir: Path,
        *,
        env: Mapping[str, str] | None = None,
        cpus: set[int] | None = None,
        cwd: str | None = None,
    ) -> Managed:
        log_path = log_dir / f"{name}.log"
        with open(log_path, "wb") as log:
            popen = subprocess.Popen(
                list(argv), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                env=dict(env) if env is not None else None, cwd=cwd,
                start_new_session=True,  # its own process group: stop() ends it and every child it forked
                preexec_fn=pin(cpus),
            )
        return cls(name, popen, log_path)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def pause(self) -> None:
        """Freeze the process group and every descendant, also one in a group of its own (the gateway's telemetry
        process): none uses CPU until `resume()`."""
        _signal_tree(self.popen.pid, signal.SIGSTOP)

    def resume(self) -> None:
        _signal_tree(self.popen.pid, signal.SIGCONT)

    def stop(self, grace: float = 5.0) -> None:
        self.resume()  # a frozen process would not act on SIGTERM
        descendants = tree(self.popen.pid)[1:]  # before the leader goes and they are reparented
        if self.popen.poll() is None:
            _signal_group(self.popen.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(grace)
        # Children the leader left behind (a worker process) go too, whether or not the leader is gone.
        _signal_group(self.popen.pid, signal.SIGKILL)
        for pid in descendants:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(2.0)

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.strip().splitlines()[-lines:])


# Everything the harness starts runs at this nice value, the same for every path: the machine may be shared
# with other work (test suites), which then preempts the measured processes less often.
NICE = -10


def pin(cpus: set[int] | None) -> Callable[[], None]:
    """A `preexec_fn`: pin the child to `cpus` (if given) and raise its priority to NICE (if allowed)."""

    def prepare() -> None:
        if cpus:
            os.sched_setaffinity(0, cpus)
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, 0, NICE)

    return prepare


def raise_own_priority() -> bool:
    try:
        os.setpriority(os.PRIO_PROCESS, 0, NICE)
    except OSError:
        return False
    return True


def system_cpu_seconds() -> float:
    """CPU time spent by the whole machine so far (all CPUs; user, nice, system, irq, softirq, steal)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[:8])
    return (user + nice + system + irq + softirq + steal) / _CLK_TCK


def _signal_tree(pid: int, sig: signal.Signals) -> None:
    _signal_group(pid, sig)
    for member in tree(pid)[1:]:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(member, sig)


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def wait_until(check: Callable[[], bool], timeout: float, managed: Managed | None = None) -> bool:
    """Poll `check` until it holds, the timeout passes, or the process died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if managed is not None and not managed.alive():
            return False
        with contextlib.suppress(Exception):
            if check():
                return True
        time.sleep(0.1)
    return False


def http_ok(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return 200 <= response.status < 300
    except urllib.error.HTTPError:
        return False


def port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((LOOPBACK, port)) == 0


def tree(pid: int) -> list[int]:
    """`pid` and its descendants (children as /proc lists them)."""
    out, todo = [], [pid]
    while todo:
        current = todo.pop()
        out.append(current)
        for task in Path(f"/proc/{current}/task").glob("*/children"):
            with contextlib.suppress(OSError, ValueError):
                todo += [int(c) for c in task.read_text().split()]
    return out


def rss_kib(pid: int) -> int | None:
    """VmRSS of one process, KiB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def tree_rss_kib(pid: int) -> int:
    return sum(rss_kib(p) or 0 for p in tree(pid))


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU time of `pid` and its descendants so far."""
    return tree_cpu_seconds_of(tree(pid))


def children_cpu_seconds(pid: int) -> float:
    """User + system CPU time of the descendants of `pid` (the gateway's telemetry process) so far."""
    return tree_cpu_seconds(pid) - tree_cpu_seconds_of([pid])


def tree_cpu_seconds_of(pids: list[int]) -> float:
    """User + system CPU time of exactly these processes so far."""
    total = 0
    for p in pids:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return total / _CLK_TCK


def settle(pid: int, at_least_s: float, limit_s: float = 20.0) -> None:
    """Wait `at_least_s`, then until the process tree used under 1% of a CPU for half a second."""
    started = time.monotonic()
    while time.monotonic() - started < limit_s:
        before = tree_cpu_seconds(pid)
        time.sleep(0.5)
        if time.monotonic() - started >= at_least_s and tree_cpu_seconds(pid) - before < 0.005:
            return
