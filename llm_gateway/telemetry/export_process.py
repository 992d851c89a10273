"""A SpanExporter that hands each batch to a child process, which encodes it and posts it as OTLP/HTTP.

Why a process: OTLP encoding is pure Python (about 100 us per request in bench/), and on the SDK's export thread
it held the GIL while the event loop waited to relay the next chunk. Here the export thread only flattens spans
into tuples (`span_wire.py`), pickles them and blocks on a pipe with the GIL released; the child
(`export_worker.py`) does the rest. The SDK's BatchSpanProcessor still batches, bounds the queue and drops when a
dead backend makes the child lag, so traffic is never slowed.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from llm_gateway.telemetry.span_wire import frame, span_record

log = logging.getLogger("llm_gateway.telemetry")

#: spans flattened between two GIL hand-backs to the event loop thread
_YIELD_EVERY = 64
#: after the child died, wait this long before starting another (a broken setup must not fork in a loop)
_RESTART_AFTER_S = 5.0
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])
# The child takes the lowest CPU priority first thing: its imports are most of its start-up, and they must not
# compete with the relay for a shared core either.
_CHILD_MAIN = (
    "import os, runpy; os.setpriority(os.PRIO_PROCESS, 0, 19); "
    "runpy.run_module('llm_gateway.telemetry.export_worker', run_name='__main__')"
)


def child_environment(env: Mapping[str, str]) -> dict[str, str]:
    """The process environment with the gateway's OTEL_* settings over it: the child's OTLP exporter reads its
    headers, timeout, compression and certificates from there."""
    child = dict(os.environ)
    child.update({k: v for k, v in env.items() if k.startswith("OTEL_")})
    child["PYTHONPATH"] = os.pathsep.join(p for p in (_PACKAGE_ROOT, child.get("PYTHONPATH")) if p)
    return child


class ExportProcess(SpanExporter):
    """See the module docstring. The child starts with the first batch, not with the gateway."""

    def __init__(self, endpoint: str, resource: Resource, env: Mapping[str, str], timeout_s: float = 10.0) -> None:
        self._config = {"endpoint": endpoint, "resource": dict(resource.attributes), "schema_url": resource.schema_url}
        self._env = child_environment(env)
        self._timeout_s = timeout_s
        self._child: subprocess.Popen | None = None
        self._failed_at = 0.0
        self._lock = threading.Lock()  # the worker thread and force_flush may both export

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        records = []
        for i, span in enumerate(spans, 1):
            records.append(span_record(span))
            if i % _YIELD_EVERY == 0:
                time.sleep(0)  # give the GIL back to the relay between slices
        message = frame(records)
        with self._lock:
            child = self._running_child()
            if child is None:
                return SpanExportResult.FAILURE
            try:
                assert child.stdin is not None
                child.stdin.write(message)
                child.stdin.flush()
                answer = _await_answer(child)
            except (OSError, ValueError) as exc:
                answer = b""
                log.warning("llm-gateway: the span exporter process failed (%s); %d spans lost", exc, len(spans))
            if not answer:
                self._lost_child()
                return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS if answer == b"1" else SpanExportResult.FAILURE

    def _running_child(self) -> subprocess.Popen | None:
        if self._child is not None and self._child.poll() is None:
            return self._child
        if self._child is not None:
            self._lost_child()
        if time.monotonic() - self._failed_at < _RESTART_AFTER_S:
            return None
        try:
            child = subprocess.Popen(
                [sys.executable, "-c", _CHILD_MAIN],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=self._env, close_fds=True,
            )
            assert child.stdin is not None
            child.stdin.write(frame(self._config))
        except OSError as exc:
            log.warning("llm-gateway: could not start the span exporter process (%s)", exc)
            self._failed_at = time.monotonic()
            return None
        self._child = child
        return child

    def _lost_child(self) -> None:
        child, self._child = self._child, None
        self._failed_at = time.monotonic()
        if child is not None:
            log.warning("llm-gateway: the span exporter process ended (exit code %s)", child.poll())
            _end(child, timeout_s=0)

    def shutdown(self) -> None:
        with self._lock:
            child, self._child = self._child, None
        if child is not None:
            _end(child, self._timeout_s)

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True  # every export waits for the child's answer: nothing is held here


def _await_answer(child: subprocess.Popen) -> bytes:
    """Block (GIL released) until the child answers for the batch: b"1" sent, b"0" failed, b"" gone."""
    assert child.stdout is not None
    return child.stdout.read(1)


def _end(child: subprocess.Popen, timeout_s: float) -> None:
    """Close the child's stdin (its signal to finish), give it `timeout_s` to do so, then kill it."""
    try:
        if child.stdin is not None:
            child.stdin.close()
    except OSError:
        pass
    try:
        child.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()
    if child.stdout is not None:
        child.stdout.close()
