"""A real agent CLI run prompt after prompt through a traced gateway in front of a scripted upstream, for the
end-to-end tests of tests/e2e: what the upstream answered for each prompt, and every span the gateway exported."""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

from llm_gateway.config import Settings
from llm_gateway.server import Gateway
from tests.support.otlp import OTLPReceiver, ReceivedSpan
from tests.support.servers import LOOPBACK, Handler, running_upstream

A = TypeVar("A")


@dataclass(frozen=True, slots=True)
class CliRun(Generic[A]):
    spans: list[ReceivedSpan]
    prompts: list[list[A]]  # the model calls each prompt made, as the upstream answered them

    def named(self, prefix: str) -> list[ReceivedSpan]:
        return sorted((s for s in self.spans if s.name.startswith(prefix)), key=lambda s: s.start_ns)


async def run_cli(argv: Sequence[str | Path], cwd: Path, env: dict[str, str], timeout: float = 180) -> str:
    """Run one command to its end (PATH comes from this process); its stdout, once it exited with 0."""
    process = await asyncio.create_subprocess_exec(*map(str, argv), cwd=cwd, env={"PATH": os.environ["PATH"], **env},
                                                   stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                                   stderr=subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), timeout)
    assert process.returncode == 0, err.decode()[-3000:]
    return out.decode()


async def traced_prompts(
    upstream: str,
    handler: Handler,
    answers: list[A],
    prompts: Sequence[Any],
    prompt: Callable[[Gateway, Any], Awaitable[None]],
) -> CliRun[A]:
    """Start the scripted upstream (`handler`, which appends each model call it answers to `answers`) as the
    gateway's `upstream` provider, send each of `prompts` with `prompt(gateway, it)`, stop the gateway (the session
    ends) and collect what was exported."""
    prompted: list[list[A]] = []
    receiver = await OTLPReceiver().start()
    try:
        async with running_upstream(handler) as url:
            env = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint, "OTEL_SERVICE_NAME": "llm-gateway-test",
                   "OTEL_BSP_SCHEDULE_DELAY": "100"}
            gateway = await Gateway.start(Settings(host=LOOPBACK, port=0, upstreams={upstream: url}), env)
            try:
                for each in prompts:
                    before = len(answers)
                    await prompt(gateway, each)
                    prompted.append(answers[before:])
            finally:
                await gateway.stop()
        await receiver.wait_for(lambda s: any(x.name.startswith("session ") for x in s))
        await asyncio.sleep(0.5)  # any span of a second session comes in the same flush
        return CliRun(list(receiver.spans), prompted)
    finally:
        await receiver.stop()
