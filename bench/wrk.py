"""Requests per second with wrk (C, one thread): the same non-streamed exchange as the latency tests, over
`concurrency` keep-alive connections for a fixed duration. The output is parsed into numbers."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from bench import wire
from bench.loadgen import Target
from bench.proc import pin

_UNITS_MS = {"us": 1e-3, "ms": 1.0, "s": 1000.0, "m": 60_000.0}
_DURATION = re.compile(r"([\d.]+)(us|ms|s|m)\b")


def script(body: bytes) -> str:
    """A wrk Lua script sending `body` as a POST with the SDK-like headers (Host comes from the URL)."""
    text = body.decode()
    if "]==]" in text:
        raise ValueError("the request body cannot sit in a Lua long string")
    headers = "\n".join(
        f'wrk.headers["{name}"] = "{value}"' for name, value in wire.request_headers("", 0) if name != "Host"
    )
    return f'wrk.method = "POST"\nwrk.body = [==[{text}]==]\n{headers}\n'


def _ms(text: str) -> float | None:
    match = _DURATION.fullmatch(text)
    return float(match.group(1)) * _UNITS_MS[match.group(2)] if match else None


def parse(output: str) -> dict:
    """The figures of one wrk run (`--latency` output)."""
    result: dict = {"generator": "wrk"}
    if match := re.search(r"Requests/sec:\s+([\d.]+)", output):
        result["rps"] = float(match.group(1))
    if match := re.search(r"(\d+) requests in ([\d.]+\w+)", output):
        result["requests"] = int(match.group(1))
        result["duration_s"] = (_ms(match.group(2)) or 0) / 1000
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    sockets = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    result["errors"] = (int(non_2xx.group(1)) if non_2xx else 0) + (
        sum(int(g) for g in sockets.groups()) if sockets else 0
    )
    latency = {f"p{q}": _ms(v) for q, v in re.findall(r"^\s+(50|75|90|99)%\s+(\S+)", output, re.MULTILINE)}
    if latency:
        result["latency_ms"] = latency
    return result


def run(executable: str, target: Target, concurrency: int, duration_s: float, script_path: Path,
        cpus: set[int] | None) -> dict:
    url = f"http://{target.host}:{target.port}{target.path}"
    argv = [executable, "-t1", f"-c{concurrency}", f"-d{max(1, round(duration_s))}s", "--latency",
            "-s", str(script_path), url]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=duration_s + 30, check=False,
                          preexec_fn=pin(cpus), start_new_session=True)
    result = parse(done.stdout)
    result["concurrency"] = concurrency
    if "rps" not in result:
        result["error"] = f"wrk exited {done.returncode}: {(done.stderr or done.stdout).strip()[-300:]}"
    return result
