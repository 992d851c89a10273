"""`python -m llm_gateway serve` as a real process: startup line, one relayed request, clean SIGTERM exit."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from contextlib import AsyncExitStack

import aiohttp

from llm_gateway.fixtures import load
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
