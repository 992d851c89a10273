"""Spans kept on disk while the trace backend cannot be reached, and sent once it is back.

`SpoolingSpanExporter` wraps the OTLP span exporter. It encodes each batch once (an OTLP ExportTraceServiceRequest,
protobuf: `otlp_encoding.py`) and, while the backend answers, sends it with the exporter's HTTP client. When the
backend cannot take it, the batch is written to the spool directory as encoded, and so is every batch after it, in
order, until a thread of the spool's own has sent what the directory holds, oldest first, with the same client (so
every OTEL_EXPORTER_OTLP_* setting applies: endpoint, headers, compression, certificates, timeout). The spool holds
at most LLM_GATEWAY_SPOOL_BYTES; past that the oldest batches are dropped and counted. The directory outlives the
process: what a gateway stopped during an outage had spooled is sent at its next start.

This runs in the exporter's thread and a thread of its own (in the telemetry process), never on the relay's path.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import itertools
import logging
import os
import re
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from llm_gateway.telemetry.otlp_export import Encoder, EncodingSpanExporter, Sender, Sent, otlp_encoder, otlp_sender

log = logging.getLogger("llm_gateway.telemetry")

ENV_STATE_DIR = "LLM_GATEWAY_STATE_DIR"
ENV_SPOOL_BYTES = "LLM_GATEWAY_SPOOL_BYTES"
DEFAULT_STATE_DIR = "~/.llm-gateway/state"
DEFAULT_SPOOL_BYTES = 64 * 1024 * 1024
#: after a failed attempt, how long until the spool is sent again (each attempt also retries within the exporter's
#: own timeout, OTEL_EXPORTER_OTLP_TIMEOUT)
RETRY_S = 5.0
#: at shutdown, how long the spool's thread may go on sending before the exporter is shut under it
SHUTDOWN_WAIT_S = 2.0
#: a temporary file this old was left by a process killed while writing it
_STALE_TEMPORARY_S = 60.0
_SUFFIX = ".otlp"
# The loggers of the exporter and its HTTP client: they log every failed attempt; the spool says it once instead.
_EXPORTER_LOGGERS = ("opentelemetry.exporter.otlp.proto.http.trace_exporter", "opentelemetry.exporter.otlp.common.http")


def spool_bytes(env: Mapping[str, str]) -> int:
    """LLM_GATEWAY_SPOOL_BYTES (0 turns spooling off); raises ValueError naming the variable."""
    raw = env.get(ENV_SPOOL_BYTES, "").strip()
    if not raw:
        return DEFAULT_SPOOL_BYTES
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if value < 0:
        raise ValueError(f"{ENV_SPOOL_BYTES}={raw!r} is not a number of bytes (0 turns spooling off)")
    return value


def spool_directory(env: Mapping[str, str], endpoint: str) -> Path:
    """One directory per traces endpoint under LLM_GATEWAY_STATE_DIR: spans spooled for one backend are never
    sent to another the gateway was pointed at later."""
    readable = re.sub(r"[^A-Za-z0-9.-]+", "_", endpoint).strip("_")[:80]
    digest = hashlib.sha256(endpoint.encode()).hexdigest()[:8]
    return Path(env.get(ENV_STATE_DIR) or DEFAULT_STATE_DIR).expanduser() / "spool" / f"{readable}-{digest}"


@dataclass(frozen=True, slots=True, order=True)
class Batch:
    """One spooled export: its file name (which sorts by the time it was written), size and span count."""

    name: str
    size: int
    spans: int


@dataclass(frozen=True, slots=True)
class SpoolState:
    """For `/_gateway/health`: spans and bytes waiting in the spool, spooled spans delivered and dropped."""

    spans: int = 0
    bytes: int = 0
    delivered: int = 0
    dropped: int = 0


class SpanSpool:
    """Encoded batches as files in one directory, at most `limit` bytes. Any process may add batches; one at a time
    sends them (`claim`)."""

    def __init__(self, directory: Path, limit: int) -> None:
        self.directory = directory
        self.limit = limit
        self.dropped = 0  # spans dropped by this process: the spool was full, or the backend refused them
        self.delivered = 0  # spooled spans this process sent to the backend
        self._numbers = itertools.count()
        self._lock_fd = -1

    def __repr__(self) -> str:
        return f"SpanSpool({str(self.directory)!r}, limit={self.limit})"

    def put(self, data: bytes, spans: int) -> int:
        """Adds one batch; returns how many spans were dropped to stay within the limit (the oldest batches, or
        this one when it alone is larger). Raises OSError when the directory cannot be written."""
        if len(data) > self.limit:
            self.dropped += spans
            return spans
        self.directory.mkdir(parents=True, exist_ok=True)
        dropped = self._make_room(len(data))
        name = f"{time.time_ns():020d}-{os.getpid()}-{next(self._numbers)}-{spans}{_SUFFIX}"
        temporary = self.directory / f".{name}.tmp"
        try:
            temporary.write_bytes(data)
            os.replace(temporary, self.directory / name)  # a batch is whole or absent, whenever the process dies
        except OSError:
            temporary.unlink(missing_ok=True)
            raise
        return dropped

    def batches(self) -> list[Batch]:
        """What the spool holds, oldest first."""
        try:
            entries = list(os.scandir(self.directory))
        except OSError:  # not made yet (or unreadable: then nothing can be sent from it either)
            return []
        found = []
        for entry in entries:
            if entry.name.startswith(".") or not entry.name.endswith(_SUFFIX):
                continue
            with contextlib.suppress(FileNotFoundError):  # sent or dropped meanwhile
                found.append(Batch(entry.name, entry.stat().st_size, _span_count(entry.name)))
        return sorted(found)

    def read(self, batch: Batch) -> bytes | None:
        try:
            return (self.directory / batch.name).read_bytes()
        except FileNotFoundError:
            return None

    def remove(self, batch: Batch) -> None:
        (self.directory / batch.name).unlink(missing_ok=True)

    def deliver(self, batch: Batch) -> None:
        """`batch` reached the backend."""
        self.remove(batch)
        self.delivered += batch.spans

    def state(self) -> SpoolState:
        """What the spool holds now, and what this process delivered from it and dropped."""
        held = self.batches()
        return SpoolState(sum(b.spans for b in held), sum(b.size for b in held), self.delivered, self.dropped)

    def drop(self, batch: Batch) -> None:
        self.remove(batch)
        self.dropped += batch.spans

    def _make_room(self, size: int) -> int:
        """Drops the oldest batches until `size` more bytes fit; returns the spans dropped."""
        batches = self.batches()
        total = sum(b.size for b in batches) + size
        dropped = 0
        for batch in batches:
            if total <= self.limit:
                break
            self.remove(batch)
            total -= batch.size
            dropped += batch.spans
        self.dropped += dropped
        return dropped

    def claim(self) -> bool:
        """Takes the directory for sending, for as long as this process lives (another process that has it sends
        this one's batches too); True when this process has it."""
        if self._lock_fd >= 0:
            return True
        self.directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.directory / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        self._lock_fd = fd
        for entry in os.scandir(self.directory):
            with contextlib.suppress(FileNotFoundError):
                if entry.name.endswith(".tmp") and time.time() - entry.stat().st_mtime > _STALE_TEMPORARY_S:
                    os.unlink(entry.path)
        return True

    def release(self) -> None:
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1


def _span_count(name: str) -> int:
    try:
        return int(name.removesuffix(_SUFFIX).rsplit("-", 1)[1])
    except (IndexError, ValueError):
        return 0


class SpoolingSpanExporter(SpanExporter):
    """`send` (the exporter's HTTP client) while the backend answers; the spool, in order, while it does not and
    until what was spooled has been sent (see the module docstring). `inner`, the exporter, is kept for its
    shutdown."""

    def __init__(self, inner: SpanExporter, spool: SpanSpool, send: Sender, destination: str,
                 encode: Encoder | None = None) -> None:
        self._inner = inner
        self._spool = spool
        self._send = send
        self._encode = encode or otlp_encoder()
        self._destination = destination
        self._waiting = bool(spool.batches())  # batches wait in the spool: new ones go behind them
        self._down = False  # the last attempt to reach the backend failed
        self._retry_at = 0.0
        self._sent = 0  # spooled spans sent since the spool was last empty
        self._dropped_before = 0  # spans the spool had dropped before the outage
        self._warned_at: dict[str, float] = {}  # what was said when: each trouble is said once a minute at most
        self._exporting = threading.Lock()
        self._wake = threading.Event()
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._send_forever, name="llm-gateway-spool", daemon=True)
        self._quiet = _QuietInThread(self._thread)
        for name in _EXPORTER_LOGGERS:
            logging.getLogger(name).addFilter(self._quiet)
        self._thread.start()
        if self._waiting:
            self._wake.set()

    def __repr__(self) -> str:
        return f"SpoolingSpanExporter({self._inner!r}, {self._spool!r})"

    @property
    def spool(self) -> SpanSpool:
        return self._spool

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        # One batch at a time (the SDK exports from its own thread and from whoever flushes): a batch that waits
        # here while the one before it fails is spooled after it, not sent or spooled out of order.
        with self._exporting:
            return self._export(spans)

    def _export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        data = self._encode(spans)  # once: what the backend cannot take now is spooled as it would have been sent
        if not self._waiting:
            sent = self._send(data)
            if sent is Sent.OK:
                return SpanExportResult.SUCCESS
            if sent is Sent.REFUSED:  # sending it later would not help either; the exporter's client said why
                return SpanExportResult.FAILURE
            self._went_down()
        try:
            dropped = self._spool.put(data, len(spans))
        except OSError as exc:
            if self._now_and_then("unwritable"):
                log.error("llm-gateway: cannot spool spans to %s (%s); they are dropped. Set %s to a writable "
                          "directory", self._spool.directory, exc.strerror or exc, ENV_STATE_DIR)
            return SpanExportResult.FAILURE
        if dropped and self._now_and_then("full"):
            log.warning("llm-gateway: the trace spool %s is full (%d bytes, %s): dropped the oldest %d spans, %d so "
                        "far", self._spool.directory, self._spool.limit, ENV_SPOOL_BYTES, dropped, self._spool.dropped)
        self._waiting = True
        self._wake.set()
        return SpanExportResult.SUCCESS

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._inner.force_flush(timeout_millis)

    def shutdown(self) -> None:
        """Stops sending (a last pass runs when the backend is up) and leaves what is still spooled for the next
        start."""
        self._closing.set()
        self._wake.set()
        self._thread.join(SHUTDOWN_WAIT_S)
        self._inner.shutdown()  # ends an attempt still in progress (the exporter's retries)
        self._thread.join(SHUTDOWN_WAIT_S)
        for name in _EXPORTER_LOGGERS:
            logging.getLogger(name).removeFilter(self._quiet)
        left = sum(b.spans for b in self._spool.batches())
        if left:
            log.warning("llm-gateway: %d spans wait in %s for the trace backend; they are sent at the next start",
                        left, self._spool.directory)
        self._spool.release()

    def _went_down(self) -> None:
        self._retry_at = time.monotonic() + RETRY_S
        if not self._down:
            self._down = True
            self._dropped_before = self._spool.dropped
            log.warning("llm-gateway: the trace backend (%s) cannot take spans; they are spooled to %s (up to %d "
                        "bytes, %s) and sent when it is back", self._destination, self._spool.directory,
                        self._spool.limit, ENV_SPOOL_BYTES)

    def _now_and_then(self, trouble: str) -> bool:
        now = time.monotonic()
        if now - self._warned_at.get(trouble, -60.0) < 60:
            return False
        self._warned_at[trouble] = now
        return True

    def _send_forever(self) -> None:
        while not self._closing.is_set():
            self._wake.wait(max(0.0, self._retry_at - time.monotonic()) if self._waiting else None)
            self._wake.clear()
            if self._closing.is_set() or not self._waiting or time.monotonic() < self._retry_at:
                continue
            try:
                if not self._spool.claim():  # another gateway's process sends from this directory
                    self._retry_at = time.monotonic() + RETRY_S
                elif self._send_spooled():
                    self._emptied()
                else:
                    self._went_down()
            except OSError as exc:
                self._retry_at = time.monotonic() + RETRY_S
                if self._now_and_then("unreadable"):
                    log.error("llm-gateway: cannot send spooled spans from %s (%s)", self._spool.directory,
                              exc.strerror or exc)
        with contextlib.suppress(OSError):
            if self._waiting and not self._down and self._spool.claim():
                self._send_spooled()

    def _send_spooled(self) -> bool:
        """Sends the spooled batches, oldest first; True when the spool is empty, False when the backend failed."""
        while True:
            batches = self._spool.batches()
            if not batches:
                self._waiting = False  # new batches go to the backend again
                if not self._spool.batches():  # unless one was added in the meantime
                    return True
                self._waiting = True
                continue
            for batch in batches:
                data = self._spool.read(batch)
                if data is None:
                    continue
                sent = self._send(data)
                if sent is Sent.RETRY:
                    return False
                if sent is Sent.OK:
                    self._spool.deliver(batch)
                    self._sent += batch.spans
                else:
                    self._spool.drop(batch)
                    log.error("llm-gateway: the trace backend refused %d spooled spans for good; they were dropped",
                              batch.spans)

    def _emptied(self) -> None:
        dropped = self._spool.dropped - self._dropped_before if self._down else 0
        if self._sent or dropped:
            log.warning("llm-gateway: the trace backend (%s) took the %d spans spooled %s%s", self._destination,
                        self._sent, "while it was down" if self._down else "by an earlier run",
                        f"; {dropped} older ones were dropped (the spool was full)" if dropped else "")
        self._down = False
        self._sent = 0


class _QuietInThread(logging.Filter):
    """Drops the records logged in one thread: the spool's own attempts, which the exporter would log each time."""

    def __init__(self, thread: threading.Thread) -> None:
        super().__init__()
        self._thread = thread

    def filter(self, record: logging.LogRecord) -> bool:
        return record.thread != self._thread.ident


def spooled(exporter: SpanExporter, env: Mapping[str, str], endpoint: str) -> SpanExporter:
    """`exporter`'s HTTP client fed by the gateway's encoder (`otlp_export.py`), with a spool in front of it unless
    LLM_GATEWAY_SPOOL_BYTES=0."""
    limit = spool_bytes(env)
    send = otlp_sender(exporter)
    if send is None:
        log.warning("llm-gateway: this OTLP exporter version has no HTTP client to send encoded spans with; it "
                    "encodes them itself, and spans are not spooled")
        return exporter
    if not limit:
        return EncodingSpanExporter(exporter, send)
    return SpoolingSpanExporter(exporter, SpanSpool(spool_directory(env, endpoint), limit), send, endpoint)
