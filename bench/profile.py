"""Where the gateway's CPU goes: py-spy samples the running `llm-gateway serve` while load runs, and the
collapsed stacks are summed per function (self and inclusive) and per area of the code.

Sans-IO apart from `record()`: `summarize_stacks` takes py-spy's raw (collapsed) output and returns numbers.
"""

from __future__ import annotations

import re
import subprocess
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from bench.proc import pin

# Areas, first match wins, on the frame's file path.
AREAS: tuple[tuple[str, str], ...] = (
    ("llm_gateway/relay.py", "gateway relay"),
    ("llm_gateway/telemetry/", "gateway telemetry (spans, attributes, sessions)"),
    ("llm_gateway/protocols/", "gateway protocol parsing"),
    ("llm_gateway/", "gateway other"),
    ("opentelemetry/instrumentation/", "otel aiohttp-client instrumentation"),
    ("opentelemetry/exporter/", "otel OTLP export (thread)"),
    ("opentelemetry/sdk/", "otel sdk"),
    ("opentelemetry/", "otel api / context"),
    ("google/protobuf", "protobuf (export)"),
    ("aiohttp/web_", "aiohttp server"),
    ("aiohttp/client", "aiohttp client"),
    ("aiohttp/connector", "aiohttp client"),
    ("aiohttp/", "aiohttp shared (streams, writer, helpers)"),
    ("multidict/", "multidict / yarl"),
    ("yarl/", "multidict / yarl"),
    ("asyncio/", "event loop (uvloop: epoll, recv/send syscalls, callbacks)"),
    ("threading.py", "threads"),
)
# Who a sample's CPU is for: the first rule with a needle anywhere in the stack (or the thread's name) wins;
# the rest goes by the area of the leaf frame. This is the per-request / per-chunk cost breakdown.
OWNERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("telemetry process (parse, sessions, spans, metrics, OTLP export)", ("llm_gateway.offload.worker",)),
    ("FlowShipper (copy each flow into the telemetry process's pipe)", ("FlowShipper.", "TelemetryProcess.")),
    ("span export thread (encode + POST)", ("OtelBatchSpanRecordProcessor",)),
    ("metric export thread", ("OtelPeriodicExportingMetricReader",)),
    ("HTTP client span (aiohttp-client instrumentation hooks)",
     ("opentelemetry/instrumentation/aiohttp_client", "aiohttp/tracing.py", "aiosignal/")),
    ("ChatSpans.request (parse request, start span, session)", ("ChatSpans.request (",)),
    ("ChatSpans.response_headers", ("ChatSpans.response_headers (",)),
    ("ChatSpans done/error (parse response, end span, metrics)", ("ChatSpans._finish (",)),
    ("other addons", ("Relay._call (",)),
)

# Leaf frames of a thread that waits (py-spy's blocking mode does not always tell these threads apart as idle):
# their samples are counted as idle, not as CPU.
IDLE_LEAVES = ("Condition.wait (", "Event.wait (", "Thread.join (", "SocketIO.readinto (", "select (",
               "_read_payload (")
_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^():]+)(?::\d+)?\)$")


def area_of(file: str) -> str:
    for needle, area in AREAS:
        if needle in file:
            return area
    return "other"


def _frame(raw: str) -> tuple[str, str]:
    """(function label "name (file)" without the line number, file) of one collapsed frame."""
    match = _FRAME.match(raw.strip())
    if match is None:
        return raw.strip(), ""
    file = match.group("file")
    short = "/".join(file.split("/")[-2:])
    return f"{match.group('func')} ({short})", file


def _owner(thread: str, frames: list[str]) -> str:
    for label, needles in OWNERS:
        if any(needle in thread for needle in needles) or any(n in f for f in frames for n in needles):
            return label
    return area_of(_frame(frames[-1])[1])


def summarize_stacks(lines: Iterable[str], top: int = 25) -> dict:
    """Sum py-spy raw output (`frame;frame;... count`, root first) into self and inclusive sample counts."""
    self_counts: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    areas: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    owners: Counter[str] = Counter()
    total = idle = 0
    for line in lines:
        stack, _, count_text = line.rstrip().rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        thread = next((f for f in frames if f.startswith("thread ")), "thread (?)")
        process = next((f for f in frames if f.startswith("process ")), "")
        frames = [f for f in frames if not f.startswith(("thread ", "process "))]
        if not frames or frames[-1].startswith(IDLE_LEAVES):
            idle += count
            continue
        threads[thread.split(": ", 1)[-1]] += count
        owners[_owner(f"{process} {thread}", frames)] += count
        total += count
        labels = [_frame(f) for f in frames]
        leaf_label, leaf_file = labels[-1]
        self_counts[leaf_label] += count
        areas[area_of(leaf_file)] += count
        for label in {label for label, _ in labels}:
            inclusive[label] += count

    def share(counter: Counter[str], n: int | None = top) -> list[dict]:
        return [{"what": k, "samples": v, "share": round(v / total, 4)} for k, v in counter.most_common(n)]

    return {
        "samples": total,
        "idle_samples_left_out": idle,
        "threads": share(threads, None),
        "owners": share(owners, None),
        "areas_self": share(areas, None),
        "top_self": share(self_counts),
        "top_inclusive": share(inclusive),
    }


def compact(lines: Iterable[str]) -> list[str]:
    """The same stacks with frames as "function (dir/file.py)" (no line numbers, no install prefixes), identical
    stacks merged: about a tenth of the size, still readable by flamegraph.pl and speedscope."""
    merged: Counter[str] = Counter()
    for line in lines:
        stack, _, count_text = line.rstrip().rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        labels = [f.split(": ", 1)[-1] if f.startswith("thread ") else _frame(f)[0] for f in stack.split(";")]
        merged[";".join(labels)] += int(count_text)
    return [f"{stack} {count}" for stack, count in merged.most_common()]


def record(py_spy: str, pid: int, duration_s: float, output: Path, cpus: set[int] | None,
           rate: int = 250) -> subprocess.Popen:
    """Start py-spy on `pid` for `duration_s`. Blocking sampling (each sample pauses the gateway for a moment):
    non-blocking samples of a busy uvloop process came out with torn stacks."""
    argv = [py_spy, "record", "--pid", str(pid), "--duration", str(max(1, round(duration_s))), "--rate", str(rate),
            "--format", "raw", "--threads", "--subprocesses", "--full-filenames", "--output", str(output)]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, preexec_fn=pin(cpus),
                            start_new_session=True)
