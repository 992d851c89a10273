"""Instructions per relayed request: the relay's process run under valgrind's callgrind, a figure that does not move
with the machine's noise (on this VM kind the same code's requests/s move by 30-50% between runs; this moves by
under 0.5%). It counts user-space instructions only: system calls and what the kernel does for them are not in it,
nor the telemetry process (not run under valgrind). Use it to tell whether a change to the relay's code made it
cheaper, then measure the time with the full bench.

    python -m bench.instructions                       # gateway-off and gateway-on, 1,000 requests each
    python -m bench.instructions --paths gateway-on --requests 2000 --stream-chunks 20
    python -m bench.instructions --front aiohttp        # aiohttp's server reading every request

Needs valgrind (`apt install valgrind`). Each path: the fake upstream and the OTLP sink run natively; the gateway
starts under callgrind, takes 200 requests to warm up, has its counters zeroed, then serves the measured requests
(keep-alive, `--concurrency` connections); its counters are dumped and divided by the requests.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import wire
from bench.peers import REPO_ROOT
from bench.proc import LOOPBACK, Managed, free_port, http_ok, port_open, wait_until

WARMUP_REQUESTS = 200
PATHS = ("gateway-off", "gateway-on")


async def _client(port: int, request: bytes, count: int) -> None:
    reader, writer = await asyncio.open_connection(LOOPBACK, port)
    try:
        for _ in range(count):
            writer.write(request)
            head = (await reader.readuntil(b"\r\n\r\n")).lower()
            if b"\r\ncontent-length:" in head:
                await reader.readexactly(int(head.split(b"\r\ncontent-length:")[1].split(b"\r\n")[0]))
                continue
            while size := int((await reader.readuntil(b"\r\n")).strip(), 16):  # chunked
                await reader.readexactly(size + 2)
            await reader.readexactly(2)
    finally:
        writer.close()


def _load(port: int, request: bytes, requests: int, concurrency: int) -> None:
    async def run() -> None:
        share, rest = divmod(requests, concurrency)
        await asyncio.gather(*(_client(port, request, share + (i < rest)) for i in range(concurrency)))

    asyncio.run(run())


def under_callgrind(command: list[str], out: Path) -> list[str]:
    """`command` run under callgrind, its counts dumped to `out`.PID.N on request (`zero`, `dumped_instructions`)."""
    return ["valgrind", "--tool=callgrind", "--dump-instr=no", "--trace-children=no",
            f"--callgrind-out-file={out}.%p", *command]


def zero(pid: int) -> None:
    subprocess.run(["callgrind_control", "--zero", str(pid)], check=True, capture_output=True)


def dumped_instructions(pid: int, out: Path) -> int:
    """Has the process under callgrind dump its counts (its first dump on request) and reads their total."""
    subprocess.run(["callgrind_control", "--dump", str(pid)], check=True, capture_output=True)
    dumped = out.parent / f"{out.name}.{pid}.1"
    wait_until(dumped.exists, 30)
    time.sleep(0.5)  # written whole
    for line in dumped.read_text().splitlines():
        if line.startswith(("summary:", "totals:")):
            return int(line.split()[1])
    raise ValueError(f"no totals in {dumped}")


def have_valgrind() -> bool:
    return shutil.which("valgrind") is not None and shutil.which("callgrind_control") is not None


def measure(path: str, requests: int, concurrency: int, stream_chunks: int, workdir: Path,
            front: str = "own") -> float:
    """Instructions per request of the gateway's main process on `path`; `workdir` takes the logs and the dumps;
    `front`: LLM_GATEWAY_FRONT (`aiohttp` has aiohttp's server read every request)."""
    workdir.mkdir(parents=True, exist_ok=True)
    servers: list[Managed] = []
    try:
        up, sink, port = free_port(), free_port(), free_port()
        for name, module, server_port in (("upstream", "bench.upstream", up), ("sink", "bench.sink", sink)):
            servers.append(Managed.start(name, [sys.executable, "-m", module, "--port", str(server_port)], workdir,
                                         cwd=str(REPO_ROOT)))
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "LLM_GATEWAY_"))}
        env["LLM_GATEWAY_STATE_DIR"] = str(workdir / f"{path}-state")
        env["LLM_GATEWAY_FRONT"] = front
        if path == "gateway-on":
            env["OTEL_EXPORTER_OTLP_ENDPOINT"] = f"http://{LOOPBACK}:{sink}"
        out = workdir / f"{path}.callgrind"
        gateway = Managed.start(path, under_callgrind([sys.executable, "-m", "llm_gateway", "serve", "--host",
                                                       LOOPBACK, "--port", str(port), "--upstream",
                                                       f"anthropic=http://{LOOPBACK}:{up}"], out),
                                workdir, env=env, cwd=str(REPO_ROOT))
        servers.append(gateway)
        for check in (lambda: port_open(up), lambda: port_open(sink),
                      lambda: http_ok(f"http://{LOOPBACK}:{port}/_gateway/health", timeout=10.0)):
            if not wait_until(check, 300, gateway):
                raise RuntimeError(f"{path} did not start: {gateway.log_tail()}")
        body = wire.request_body(stream=stream_chunks > 0, chunks=stream_chunks)
        request = wire.http_request(LOOPBACK, port, wire.MESSAGES_PATH, body)
        _load(port, request, WARMUP_REQUESTS, concurrency)
        zero(gateway.pid)
        _load(port, request, requests, concurrency)
        return dumped_instructions(gateway.pid, out) / requests
    finally:
        for server in servers:
            server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.instructions", description=__doc__.split("\n\n")[0])
    parser.add_argument("--paths", default=",".join(PATHS), help=f"comma-separated subset of {','.join(PATHS)}")
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--stream-chunks", type=int, default=0, help="0: a ~1 KB JSON answer; N: an SSE stream of N "
                        "events sent at once")
    parser.add_argument("--front", default="own", choices=("own", "aiohttp"), help="the server that reads the "
                        "requests (LLM_GATEWAY_FRONT)")
    args = parser.parse_args()
    if not have_valgrind():
        sys.exit("python -m bench.instructions needs valgrind (apt install valgrind)")
    with tempfile.TemporaryDirectory(prefix="llm-gateway-instructions-") as tmp:
        for path in args.paths.split(","):
            per_request = measure(path, args.requests, args.concurrency, args.stream_chunks, Path(tmp), args.front)
            answer = f"a stream of {args.stream_chunks} events" if args.stream_chunks else "a JSON answer"
            print(f"{path:<12} {per_request:>10,.0f} instructions a request ({args.requests} requests, "
                  f"{args.concurrency} connections, {answer})", flush=True)


if __name__ == "__main__":
    main()
