"""The telemetry process seen from the relay's process: starting it (again, when it was lost), the writing end of
its pipe, which never blocks the event loop (see the package docstring for why it exists), and the count of the
flows that went untraced."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

from llm_gateway.offload.frames import ACK, TALLY, frame

log = logging.getLogger("llm_gateway.telemetry")

#: bytes waiting for the telemetry process beyond which new flows go untraced
MAX_BACKLOG_BYTES = 64 * 1024 * 1024
#: a backlog from which batches are sent compressed: about 100 ms of heavy traffic waiting, the child is behind
COMPRESS_ABOVE_BYTES = 1024 * 1024
#: why a telemetry process lost spans: the first counts of its acknowledgements' tally
SPAN_LOSS_CAUSES = ("queue_full", "export_failed", "spool_dropped")
#: after the telemetry process was lost, how long until a new one is started (a broken setup must not fork in a loop)
RESTART_AFTER_S = 5.0
#: how long messages gather before one pipe write: the child then wakes up a hundred times a second at most,
#: not once per relayed chunk (each wake-up is a context switch on a core the relay may share)
FLUSH_INTERVAL_S = 0.01
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])
# First thing in the child: ignore Ctrl-C and SIGTERM (the end of its stdin is its only stop signal, so it can
# flush what the gateway sends on shutdown), and take the lowest CPU priority before its imports, which are most
# of its start-up and must not compete with the relay for a shared core either. On Linux that is SCHED_IDLE: the
# child then runs only when no normal task wants the core (at nice 19 it still gets its CFS weight, 15 against the
# relay's 1024, in slices that showed in the relay's p99). Elsewhere nice 19 is the best there is.
_CHILD_MAIN = """\
import os, runpy, signal
signal.signal(signal.SIGINT, signal.SIG_IGN)
signal.signal(signal.SIGTERM, signal.SIG_IGN)
os.setpriority(os.PRIO_PROCESS, 0, 19)
try:
    os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
except (AttributeError, OSError):
    pass
runpy.run_module('llm_gateway.offload.worker', run_name='__main__')
"""


def child_command() -> list[str]:
    """The telemetry process's command line (its environment: `child_environment`)."""
    return [sys.executable, "-c", _CHILD_MAIN]


def child_environment(env: Mapping[str, str]) -> dict[str, str]:
    """The process environment with the gateway's OTEL_* settings over it (the SDK reads some of them, such as
    OTEL_EXPORTER_OTLP_HEADERS and OTEL_BSP_*, from the process environment)."""
    child = dict(os.environ)
    child.update({k: v for k, v in env.items() if k.startswith("OTEL_")})
    # Its objects straight from the C allocator, whose free pages `malloc_trim` hands back: Python's own keeps a
    # 1 MiB arena for as long as one object in it lives, and after 10,000 sessions had ended the child stayed at
    # 128 MiB, against 70 this way (bench.telemetry_load; it costs some 5% of its CPU). A PYTHONMALLOC given wins.
    child.setdefault("PYTHONMALLOC", "malloc")
    child["PYTHONPATH"] = os.pathsep.join(p for p in (_PACKAGE_ROOT, child.get("PYTHONPATH")) if p)
    return child


class TelemetryProcess:
    """The relay side of the pipe: gathers messages for up to FLUSH_INTERVAL_S, then writes them without blocking
    (what the pipe does not take waits for the loop to say it is writable)."""

    def __init__(self, env: Mapping[str, str], destination: str) -> None:
        """Starts the telemetry process (call it from the event loop)."""
        self.destination = destination
        self._env = dict(env)
        self._loop = asyncio.get_running_loop()
        self._batch: list[tuple] = []  # messages, as `flow_wire` builds them
        self._out = bytearray()
        self._writing = False  # a writer callback is registered
        self._gone = False
        self._lost_at = 0.0
        #: flows relayed untraced: shed while the process was behind or not running, or lost with a process
        self.untraced = 0
        self._untraced_while_down = 0
        self._warned_at = 0.0
        # Flows of the running process: a flow belongs to the process it was opened on (`generation`); those
        # it had not finished (ended and acknowledged) when it was lost went untraced with it.
        self.generation = 0
        self._open = self._ended = self._acked = 0
        self._acks = bytearray()
        #: spans the telemetry processes lost (cause -> count): those of the running one, and of those before it
        self._spans_lost = self._spans_lost_before = dict.fromkeys(SPAN_LOSS_CAUSES, 0)
        self._lost_warned_at = 0.0
        #: the running process's trace spool: spans and bytes waiting for the backend, spans delivered from it
        self.spool = {"spans_waiting": 0, "bytes_waiting": 0, "spans_delivered": 0}
        self._child, self._acks_fd = self._spawn()
        self._fd = self._pipe(self._child)

    def _spawn(self) -> tuple[subprocess.Popen, int]:
        """The child and the reading end of its acknowledgements pipe (whose end of file also says it is gone)."""
        acks, child_acks = os.pipe()
        # Its own process group, so a Ctrl-C in the terminal reaches only the gateway (which then closes the pipe);
        # not its own session: where the kernel shares CPU between sessions (autogroups), a session of its own
        # would give it an equal share with the relay whatever its priority.
        try:
            child = subprocess.Popen(child_command(), stdin=subprocess.PIPE, env=child_environment(self._env),
                                     close_fds=True, pass_fds=(child_acks,), process_group=0)
        except BaseException:
            os.close(acks)
            raise
        finally:
            os.close(child_acks)
        assert child.stdin is not None
        child.stdin.write(frame({"env": self._env, "acks": child_acks}))
        child.stdin.flush()
        os.set_blocking(acks, False)
        self._loop.add_reader(acks, self._read_acks)
        return child, acks

    @staticmethod
    def _pipe(child: subprocess.Popen) -> int:
        assert child.stdin is not None
        fd = child.stdin.fileno()
        os.set_blocking(fd, False)
        return fd

    def open_flow(self) -> int | None:
        """A new flow is to be sent: the generation to give `end_flow` with its end; None when it goes untraced
        (counted) because the process is behind, or not running (it is started again RESTART_AFTER_S after it
        was lost)."""
        if self._gone and time.monotonic() - self._lost_at >= RESTART_AFTER_S:
            self._restart()
        if self._gone or len(self._out) > MAX_BACKLOG_BYTES:
            self._shed()
            return None
        self._open += 1
        return self.generation

    def end_flow(self, generation: int) -> bool:
        """A flow of `generation` ended: True when its end is to be sent; False when the process it went to was
        lost (it was counted as untraced then)."""
        if generation != self.generation:
            return False
        self._open -= 1
        self._ended += 1
        return True

    def _shed(self) -> None:
        self.untraced += 1
        if self._gone:
            self._untraced_while_down += 1
            return
        now = time.monotonic()
        if now - self._warned_at >= 60:
            self._warned_at = now
            log.warning("llm-gateway: the telemetry process is behind; %d requests relayed untraced so far",
                        self.untraced)

    def _restart(self) -> None:
        try:
            self._child, self._acks_fd = self._spawn()
        except OSError as exc:
            self._lost_at = time.monotonic()
            log.error("llm-gateway: could not start the telemetry process again (%s)", exc)
            return
        self._fd, self._gone = self._pipe(self._child), False
        log.warning("llm-gateway: the telemetry process was started again; %d requests went untraced while none "
                    "ran; sessions begin anew", self._untraced_while_down)
        self._untraced_while_down = 0

    def _read_acks(self) -> None:
        try:
            data = os.read(self._acks_fd, 4096)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:  # the child is gone: killed, or ended with an error
            self._lost(EOFError("its pipe closed"))
            return
        self._acks += data
        whole = len(self._acks) - len(self._acks) % ACK.size
        if whole:
            self._acked, *counts = ACK.unpack_from(self._acks, whole - ACK.size)
            told = dict(zip(TALLY, counts, strict=True))
            self._note_span_losses(*(told[cause] for cause in SPAN_LOSS_CAUSES))
            self.spool = {"spans_waiting": told["spooled_spans"], "bytes_waiting": told["spooled_bytes"],
                          "spans_delivered": told["spool_delivered"]}
            del self._acks[:whole]

    def _note_span_losses(self, *counts: int) -> None:
        """The running process's spans lost so far, by cause (SPAN_LOSS_CAUSES), from its acknowledgement."""
        before = sum(self.spans_lost.values())
        self._spans_lost = dict(zip(SPAN_LOSS_CAUSES, counts, strict=True))
        now = time.monotonic()
        lost = self.spans_lost
        if sum(lost.values()) > before and now - self._lost_warned_at >= 60:
            self._lost_warned_at = now
            log.warning("llm-gateway: %d spans lost so far (%d with the telemetry process's batch queue full, %d in "
                        "exports that failed, %d dropped from a full spool)", sum(lost.values()), lost["queue_full"],
                        lost["export_failed"], lost["spool_dropped"])

    @property
    def spans_lost(self) -> dict[str, int]:
        """Spans lost by every telemetry process so far, by cause."""
        return {cause: self._spans_lost_before[cause] + self._spans_lost[cause] for cause in SPAN_LOSS_CAUSES}

    @property
    def unacknowledged_flows(self) -> int:
        """Flows that ended and went to the running process, whose spans it has not yet said are out: how far
        tracing trails the traffic, and at most how many would be counted untraced, though traced, if it died now."""
        return self._ended - self._acked

    @property
    def backlog_bytes(self) -> int:
        return len(self._out)

    @property
    def running(self) -> bool:
        return not self._gone and self._child.poll() is None

    def send(self, message: tuple) -> None:
        if not self._batch:
            self._loop.call_later(FLUSH_INTERVAL_S, self._flush)
        self._batch.append(message)

    def _flush(self) -> None:
        batch, self._batch = self._batch, []
        if self._gone or not batch:
            return
        # Behind: what waits is kept compressed, several times as many flows within the bound
        self._out += frame(batch, compress=len(self._out) >= COMPRESS_ABOVE_BYTES)
        if not self._writing:
            self._write()

    def _write(self) -> None:
        try:
            written = os.write(self._fd, self._out)
        except BlockingIOError:
            written = 0
        except OSError as exc:  # the telemetry process is gone
            self._lost(exc)
            return
        del self._out[:written]
        if self._out and not self._writing:
            self._loop.add_writer(self._fd, self._write)
            self._writing = True
        elif not self._out and self._writing:
            self._loop.remove_writer(self._fd)
            self._writing = False

    def _lost(self, exc: BaseException) -> None:
        if self._gone:
            return
        self._gone, self._lost_at = True, time.monotonic()
        lost = self._open + self._ended - self._acked
        self.untraced += lost
        self._spans_lost_before, self._spans_lost = self.spans_lost, dict.fromkeys(SPAN_LOSS_CAUSES, 0)
        self.generation += 1
        self._open = self._ended = self._acked = 0
        self._out.clear()
        self._stop_reading_acks()
        with contextlib.suppress(OSError):
            assert self._child.stdin is not None
            self._child.stdin.close()
        if self._writing:
            self._loop.remove_writer(self._fd)
            self._writing = False
        code = self._child.poll()
        log.error("llm-gateway: the telemetry process ended (%s); %d requests went untraced with it, and new ones go "
                  "untraced until it is started again in %.0f s", f"exit code {code}" if code is not None else exc,
                  lost, RESTART_AFTER_S)

    def _stop_reading_acks(self) -> None:
        if self._acks_fd >= 0:
            self._loop.remove_reader(self._acks_fd)
            os.close(self._acks_fd)
            self._acks_fd = -1
        self._acks.clear()

    async def close(self, timeout_s: float = 30.0) -> None:
        """Send what is left, close the pipe (the child's signal to end its sessions and flush its spans), and
        wait up to `timeout_s` for it to finish. If it is still sending to a slow or dead backend then, it is left
        to finish on its own, bounded by its exporter's own timeouts, so nothing is lost and nobody waits."""
        self._flush()
        self._stop_reading_acks()
        if self._writing:
            self._loop.remove_writer(self._fd)
            self._writing = False
        await asyncio.to_thread(self._finish, bytes(self._out), timeout_s)
        self._out.clear()

    def discard(self) -> None:
        """Ends the process at once, with nothing to flush: the gateway it was started for failed to start."""
        self._stop_reading_acks()
        self._child.kill()
        with contextlib.suppress(OSError):
            assert self._child.stdin is not None
            self._child.stdin.close()
        self._child.wait()

    def _finish(self, rest: bytes, timeout_s: float) -> None:
        child = self._child
        try:
            if rest and not self._gone:
                os.set_blocking(self._fd, True)
                _write_all(self._fd, rest)
            assert child.stdin is not None
            child.stdin.close()
        except OSError:
            pass
        try:
            child.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            log.warning("llm-gateway: the telemetry process (pid %d) is still sending spans; it finishes in the "
                        "background", child.pid)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
