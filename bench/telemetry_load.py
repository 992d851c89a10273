"""The telemetry process alone, fed as fast as it reads: tracing CPU per call and memory per session.

`python -m bench.telemetry_load --sessions 100,1000,10000 --calls-per-session 3`

For each level it starts the gateway's real telemetry process (the same command and environment the gateway
uses, exporting over OTLP/HTTP to `bench.sink`), writes into its pipe the messages the relay's shipper would
write for `sessions` x `calls_per_session` Anthropic Messages calls (the bench's request, with a tool offered as
an agent's has, and its answer; each session its own first user message, each later call the conversation so far
plus a new prompt), and measures, from /proc: the child's CPU time from the first message until every span
reached the sink (per call), and its RSS when idle before, while every session is open (per session), and after
the sessions expired (idle again).

The child runs on the server CPU, everything else on the harness CPUs, as in the main bench.

`--callgrind` runs the child under valgrind's callgrind and reports its instructions per call (both its threads:
the replay and the span export), counted from after the warm-up call until every span reached the sink: a figure
that does not move with the machine's noise, to tell whether a change made tracing cheaper (`bench.instructions`
does the same for the relay). Its times and memory are then valgrind's.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import orjson

from bench import wire
from bench.instructions import dumped_instructions, have_valgrind, under_callgrind, zero
from bench.proc import LOOPBACK, Managed, cpu_plan, free_port, pin, port_open, wait_until
from llm_gateway.config import Settings
from llm_gateway.flow import Flow
from llm_gateway.offload import flow_wire
from llm_gateway.offload.frames import frame
from llm_gateway.offload.process import child_command, child_environment
from llm_gateway.routing import Router

REPO_ROOT = Path(__file__).resolve().parent.parent
_CLK_TCK = os.sysconf("SC_CLK_TCK")
UPSTREAM = "http://127.0.0.1:9"  # never called: only its name goes on the spans
#: messages per pipe write: about what the relay's shipper gathers in its 10 ms window at c=32
BATCH = 64


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


def _thread_cpu_s(pid: int) -> dict[str, float]:
    """CPU seconds of the main thread (the replay) and of the others together (span export, metrics, ticks):
    Python does not name its threads for /proc."""
    split = {"main": 0.0, "other threads": 0.0}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # the thread ended
        split["main" if task.name == str(pid) else "other threads"] += (int(fields[11]) + int(fields[12])) / _CLK_TCK
    return split


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _idle(pid: int, at_least_s: float = 0.5, limit_s: float = 60.0) -> None:
    """Until the process used under 1% of a CPU for half a second (at least `at_least_s`)."""
    started = time.monotonic()
    while time.monotonic() - started < limit_s:
        before = _cpu_s(pid)
        time.sleep(0.5)
        if time.monotonic() - started >= at_least_s and _cpu_s(pid) - before < 0.005:
            return


def _sink_spans(url: str) -> int:
    with urllib.request.urlopen(f"{url}/stats", timeout=30) as response:
        return orjson.loads(response.read())["spans"]


def _stable(sink_url: str, quiet_s: float = 1.0, limit_s: float = 120.0) -> None:
    """Until the sink's span count stayed the same for `quiet_s`."""
    deadline = time.monotonic() + limit_s
    last = -1
    while time.monotonic() < deadline:
        now = _sink_spans(sink_url)
        if now == last:
            return
        last = now
        time.sleep(quiet_s)


def _fields(headers: dict[str, str]) -> list[tuple[bytes, bytes]]:
    return [(name.encode(), value.encode()) for name, value in headers.items()]


class Calls:
    """The flow messages of the bench's exchange, one session after another, as the shipper builds them."""

    def __init__(self, stream_chunks: int, tool_turns: int = 0) -> None:
        self._tool_turns = tool_turns
        self._router = Router(Settings(upstreams={"anthropic": UPSTREAM}), {})
        self._headers = {k: v for k, v in wire.request_headers("127.0.0.1", 8787)}
        self._chunks = stream_chunks
        self._ids = 0

    def messages(self, session: int, call: int) -> list[tuple]:
        body = _conversation(session, call, stream=self._chunks > 0, tool_turns=self._tool_turns)
        from multidict import CIMultiDict, CIMultiDictProxy

        fields = {**self._headers, "Content-Length": str(len(body))}
        headers = CIMultiDictProxy(CIMultiDict(fields))
        route = self._router.resolve("POST", wire.MESSAGES_PATH, headers)
        assert route is not None
        now = time.time_ns()
        flow = Flow("POST", wire.MESSAGES_PATH, _fields(fields), body, route, route.upstream_url(wire.MESSAGES_PATH),
                    now)
        self._ids += 1
        flow_id = self._ids
        flow.upstream_started_ns, flow.status = now + 20_000, 200
        flow.response_started_ns = now + 200_000
        answer = {"Content-Type": "text/event-stream" if self._chunks else "application/json"}
        flow.response_headers, flow.response_fields = CIMultiDictProxy(CIMultiDict(answer)), _fields(answer)
        if not self._chunks:  # the answer came whole: the flow goes in one message
            flow.ended_ns = now + 250_000
            return [flow_wire.exchanged(flow_id, flow, (flow.ended_ns, wire.ANSWER_BODY))]
        out = [flow_wire.opened(flow_id, flow), flow_wire.answered(flow_id, flow)]
        out += [flow_wire.chunk(flow_id, now + 200_000 + i * 2_000_000, wire.stream_chunk(i, self._chunks, 0))
                for i in range(self._chunks)]
        flow.ended_ns = now + 200_000 + self._chunks * 2_000_000
        out.append(flow_wire.ended(flow_id, flow))
        return out


#: what one tool call's result carries in `--tool-turns` (a file read, a command's output): about 2 KB
TOOL_OUTPUT = "x = compute(y)  # a line of a file the agent read\n" * 40
#: the tool every request offers, as an agent's requests do: a call without tools is a side call (a title, a
#: summary), whose turn ends on a 2 s timer, so the spans per call would depend on how far apart a session's calls
#: are, which grows with the sessions of a level
TOOLS = [{"name": "read_file", "description": "Read a file of the workspace.",
          "input_schema": {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]}}]


def _conversation(session: int, call: int, *, stream: bool, tool_turns: int = 0) -> bytes:
    """Call `call` of session `session`: the session's first prompt, `tool_turns` tool calls with their results
    (an agent's history, each turn about 2 KB), then for each earlier call its answer and a next prompt (a
    conversation that grows, as an agent's does)."""
    messages: list[dict] = [{"role": "user", "content": f"session {session}: " + wire.USER_PROMPT}]
    for n in range(tool_turns):
        call_id = f"toolu_{session:06d}_{n:04d}"
        messages += [{"role": "assistant", "content": [
                         {"type": "text", "text": "Reading the next file."},
                         {"type": "tool_use", "id": call_id, "name": "read_file", "input": {"path": f"src/m{n}.py"}}]},
                     {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call_id,
                                                   "content": TOOL_OUTPUT}]}]
    for n in range(call):
        messages += [{"role": "assistant", "content": wire.ANSWER_TEXT},
                     {"role": "user", "content": f"next step {n + 1}"}]
    body = {"model": wire.MODEL, "max_tokens": 1024, "system": wire.SYSTEM_PROMPT, "tools": TOOLS,
            "messages": messages, "stream": stream}
    return orjson.dumps(body)


def run_level(sessions: int, calls_per_session: int, stream_chunks: int, sink_url: str, cpus: set[int] | None,
              idle_s: float, profile: Path | None = None, tool_turns: int = 0, cprofile: Path | None = None,
              callgrind: Path | None = None) -> dict:
    """One level: a fresh telemetry process, `sessions` x `calls_per_session` calls, then the sessions expire.
    With `cprofile`, the child runs under cProfile, which writes its main thread's profile there when it exits;
    with `callgrind`, under valgrind's callgrind (its dumps go there), which counts its instructions per call."""
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": sink_url, "LLM_GATEWAY_SESSION_IDLE_SECONDS": str(idle_s),
           "OTEL_BSP_SCHEDULE_DELAY": "200",
           "LLM_GATEWAY_MAX_SESSIONS": str(max(1000, sessions * 2))}
    command = child_command() if cprofile is None else [
        sys.executable, "-m", "cProfile", "-o", str(cprofile), "-m", "llm_gateway.offload.worker"]
    if callgrind is not None:
        command = under_callgrind(command, callgrind)
    child = subprocess.Popen(command, stdin=subprocess.PIPE, env=child_environment(env),
                             preexec_fn=pin(cpus), cwd=str(REPO_ROOT))
    assert child.stdin is not None
    spans_before = _sink_spans(sink_url)
    try:
        child.stdin.write(frame({"env": env}))
        child.stdin.flush()
        calls = Calls(stream_chunks, tool_turns)
        # One call first: what the child loads on its first call (adapters, the price table) is start-up, not load.
        child.stdin.write(frame(calls.messages(-1, 0)))
        child.stdin.flush()
        wait_until(lambda: _sink_spans(sink_url) >= spans_before + 2, 60 if callgrind is None else 600)
        _idle(child.pid, at_least_s=1.0)
        _stable(sink_url)
        spans_before = _sink_spans(sink_url)
        rss_idle = _rss_kib(child.pid)
        spy = None
        if profile is not None:
            spy = subprocess.Popen([str(Path(sys.executable).parent / "py-spy"), "record", "--pid", str(child.pid),
                                    "--rate", "250", "--format", "raw", "--threads", "--full-filenames",
                                    "--nonblocking", "--output", str(profile)],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
            time.sleep(1.0)
        if callgrind is not None:
            zero(child.pid)
        cpu_before, threads_before = _cpu_s(child.pid), _thread_cpu_s(child.pid)
        started = time.monotonic()
        batch: list[tuple] = []
        # Calls interleave across sessions (session 0 call 0, session 1 call 0, ...), so all are open at once.
        for call in range(calls_per_session):
            for session in range(sessions):
                batch += calls.messages(session, call)
                if len(batch) >= BATCH:
                    child.stdin.write(frame(batch))
                    batch = []
        if batch:
            child.stdin.write(frame(batch))
        child.stdin.flush()
        total_calls = sessions * calls_per_session
        # At least every chat span and its upstream HTTP span, then until no more come.
        expected = spans_before + 2 * total_calls
        wait_until(lambda: _sink_spans(sink_url) >= expected, 600)
        _idle(child.pid)
        _stable(sink_url)
        wall_s = time.monotonic() - started
        cpu_s = _cpu_s(child.pid) - cpu_before
        threads = {name: used - threads_before.get(name, 0.0) for name, used in _thread_cpu_s(child.pid).items()}
        rss_open = _rss_kib(child.pid)
        received = _sink_spans(sink_url) - spans_before
        expired_already = wall_s > idle_s
        instructions = dumped_instructions(child.pid, callgrind) if callgrind is not None else None
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            spy.wait(30)
        # The sessions end after `idle_s` of no activity (the child's ticker), their spans go out.
        time.sleep(idle_s + 2)
        _idle(child.pid)
        _stable(sink_url)
        rss_after = _rss_kib(child.pid)
        return {
            "sessions": sessions, "calls": total_calls, "stream_chunks": stream_chunks, "tool_turns": tool_turns,
            "request_kib_last": round(len(_conversation(0, calls_per_session - 1, stream=stream_chunks > 0,
                                                        tool_turns=tool_turns)) / 1024, 1),
            "cpu_us_per_call": round(cpu_s * 1e6 / total_calls, 1),
            "cpu_us_per_call_by_thread": {name: round(used * 1e6 / total_calls, 1)
                                          for name, used in sorted(threads.items()) if used > 0},
            "wall_s": round(wall_s, 2),
            "calls_per_s": round(total_calls / wall_s), "spans_at_least": expected - spans_before,
            "spans_received_after_calls": received, "spans_received_after_expiry": _sink_spans(sink_url) - spans_before,
            "sessions_expired_during_calls": expired_already,
            "rss_idle_kib": rss_idle, "rss_sessions_open_kib": rss_open, "rss_after_expiry_kib": rss_after,
            "rss_per_session_kib": round((rss_open - rss_idle) / sessions, 2),
            **({"instructions_per_call": round(instructions / total_calls)} if instructions is not None else {}),
        }
    finally:
        child.stdin.close()
        child.wait(60)


def markdown(results: list[dict], profile: dict | None = None) -> str:
    """The levels as a table (and the profile's top functions, when one was taken)."""
    lines = ["| sessions | calls | CPU per call us | calls/s | spans received | RSS idle MiB | RSS open MiB | "
             "per session KiB | RSS after expiry MiB |", "|" + "---|" * 9]
    for r in results:
        lines.append(f"| {r['sessions']} | {r['calls']} | {r['cpu_us_per_call']} | {r['calls_per_s']} | "
                     f"{r['spans_received_after_expiry']} | {r['rss_idle_kib'] / 1024:.1f} | "
                     f"{r['rss_sessions_open_kib'] / 1024:.1f} | {r['rss_per_session_kib']} | "
                     f"{r['rss_after_expiry_kib'] / 1024:.1f} |")
    if profile:
        lines += ["", f"py-spy of the last level ({profile['samples']} samples), inclusive and self shares:", "",
                  "| function | inclusive | self |", "|---|---|---|"]
        self_share = {row["what"]: row["share"] for row in profile["top_self"]}
        for row in profile["top_inclusive"]:
            lines.append(f"| `{row['what']}` | {row['share'] * 100:.1f}% | "
                         f"{self_share.get(row['what'], 0) * 100:.1f}% |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.telemetry_load", description=__doc__.split("\n")[0])
    parser.add_argument("--sessions", default="100,1000,10000", help="comma-separated levels")
    parser.add_argument("--calls-per-session", type=int, default=3)
    parser.add_argument("--stream-chunks", type=int, default=0, help="0: non-streamed answers")
    parser.add_argument("--tool-turns", type=int, default=0,
                        help="tool calls with their results (about 2 KB each) in every request's history, as an "
                             "agent's requests carry them")
    parser.add_argument("--idle-s", type=float, default=120.0,
                        help="LLM_GATEWAY_SESSION_IDLE_SECONDS of the child: longer than a level's calls take, so that "
                             "every session is open when the memory is read")
    parser.add_argument("--profile", type=Path, help="py-spy raw stacks of the child to this file (last level)")
    parser.add_argument("--cprofile", type=Path,
                        help="the child's main thread under cProfile, to this file (last level; read it with pstats): "
                             "py-spy also counts the time the child waits for the pipe")
    parser.add_argument("--callgrind", action="store_true",
                        help="the child under valgrind's callgrind: instructions per call (all its threads), a figure "
                             "that does not move with the machine; its times are then valgrind's, not the child's")
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    args = parser.parse_args(argv)
    if args.callgrind and not have_valgrind():
        raise SystemExit("--callgrind needs valgrind (apt install valgrind)")
    server, harness, _ = cpu_plan()
    if harness:
        os.sched_setaffinity(0, harness)
    with __import__("tempfile").TemporaryDirectory() as tmp:
        port = free_port()
        sink = Managed.start("sink", [sys.executable, "-m", "bench.sink", "--port", str(port)], Path(tmp),
                             cpus=harness, cwd=str(REPO_ROOT))
        try:
            if not wait_until(lambda: port_open(port), 20, sink):
                raise SystemExit(f"bench.sink did not start: {sink.log_tail()}")
            levels = [int(n) for n in args.sessions.split(",") if n.strip()]
            results = []
            for index, sessions in enumerate(levels):
                last = index == len(levels) - 1
                result = run_level(sessions, args.calls_per_session, args.stream_chunks, f"http://{LOOPBACK}:{port}",
                                   server, args.idle_s, args.profile if last else None, args.tool_turns,
                                   args.cprofile if last else None,
                                   Path(tmp) / f"child-{sessions}.callgrind" if args.callgrind else None)
                print(orjson.dumps(result).decode(), flush=True)
                results.append(result)
        finally:
            sink.stop()
    summary = None
    if args.profile is not None and args.profile.exists():
        from bench.profile import summarize_stacks

        summary = summarize_stacks(args.profile.read_text().splitlines(), top=30)
    if args.out:
        args.out.write_bytes(orjson.dumps({"levels": results, "profile": summary}, option=orjson.OPT_INDENT_2))
        args.out.with_suffix(".md").write_text(markdown(results, summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
