"""`python -m llm_gateway serve` as a real process: startup line, one relayed request, clean SIGTERM exit."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from contextlib import AsyncExitStack

import aiohttp

from llm_gateway.recordings import load
from tests.support import FIXTURES
from tests.support.servers import running_replay

_STARTUP_SECONDS = 15.0  # interpreter start and imports on a loaded machine
_EXIT_SECONDS = 5.0


def _clean_env() -> dict[str, str]:
    """This process's environment without any gateway or OpenTelemetry setting."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "LLM_GATEWAY_"))}


async def _startup_lines(stream: asyncio.StreamReader) -> list[str]:
    """The startup description, up to and including its `traces` line."""
    lines: list[str] = []
    while not (lines and lines[-1].lstrip().startswith("traces")):
        line = await stream.readline()
        if not line:
            raise AssertionError(f"the gateway exited during startup; stderr so far: {lines}")
        lines.append(line.decode().rstrip("\n"))
    return lines


async def test_serve_on_port_0_announces_relays_and_exits_0_on_sigterm(servers: AsyncExitStack) -> None:
    fixture = load(FIXTURES / "anthropic" / "tools-streaming.json")
    exchange = fixture.exchanges[0]
    replay = await servers.enter_async_context(running_replay([fixture]))
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "llm_gateway", "serve", "--port", "0", "--upstream", f"anthropic={replay.url}",
        env=_clean_env(), stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stderr is not None
        lines = await asyncio.wait_for(_startup_lines(process.stderr), _STARTUP_SECONDS)
        listening = re.fullmatch(r"llm-gateway listening on (http://127\.0\.0\.1:(\d+))", lines[0])
        assert listening is not None, lines
        assert int(listening.group(2)) != 0
        assert any(re.fullmatch(rf"\s*anthropic\s+-> {re.escape(replay.url)}", line) for line in lines), lines
        assert "nowhere" in lines[-1]

        async with aiohttp.ClientSession() as client, client.post(
            listening.group(1) + exchange.request.path, data=exchange.request.body,
            headers={"Content-Type": "application/json"},
        ) as response:
            body = await response.read()
        assert (response.status, body) == (exchange.response.status, exchange.response.body)

        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), _EXIT_SECONDS) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_serve_with_a_dead_trace_backend_still_exits_promptly(servers: AsyncExitStack, tmp_path) -> None:
    """Ctrl-C / SIGTERM must not wait out the exporter's retries: the telemetry process finishes alone. (stderr goes
    to a file: that process keeps it open after the gateway exited, so a pipe would not end with the gateway.)"""
    from llm_gateway.server import SHUTDOWN_TELEMETRY_WAIT_S
    from tests.support.servers import closed_port_url

    fixture = load(FIXTURES / "anthropic" / "tools-streaming.json")
    exchange = fixture.exchanges[0]
    replay = await servers.enter_async_context(running_replay([fixture]))
    env = {**_clean_env(), "OTEL_EXPORTER_OTLP_ENDPOINT": closed_port_url()}
    log = tmp_path / "stderr.log"
    with log.open("wb") as stderr:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "llm_gateway", "serve", "--port", "0", "--upstream", f"anthropic={replay.url}",
            env=env, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL, stderr=stderr,
        )
    left_behind: int | None = None
    try:
        found = await _appears(log, r"llm-gateway listening on (\S+)", _STARTUP_SECONDS)
        async with aiohttp.ClientSession() as client, client.post(
            found.group(1) + exchange.request.path, data=exchange.request.body,
            headers={"Content-Type": "application/json"},
        ) as response:
            assert (response.status, await response.read()) == (exchange.response.status, exchange.response.body)

        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), _EXIT_SECONDS + SHUTDOWN_TELEMETRY_WAIT_S) == 0
        found = await _appears(log, r"telemetry process \(pid (\d+)\) is still sending spans", 1.0)
        left_behind = int(found.group(1))
        os.kill(left_behind, 0)  # alive: still retrying the dead backend, on its own
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        if left_behind is not None:
            os.kill(left_behind, signal.SIGKILL)


async def _appears(path, pattern: str, within_s: float) -> re.Match[str]:
    deadline = asyncio.get_running_loop().time() + within_s
    while (found := re.search(pattern, path.read_text(errors="replace"))) is None:
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{pattern!r} not in: {path.read_text(errors='replace')}")
        await asyncio.sleep(0.05)
    return found
