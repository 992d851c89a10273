"""Steady model traffic through a gateway for the reliability tests: a few anthropic SDK clients, each asking one
streamed question after another, every call timed and its answer kept."""

from __future__ import annotations

import asyncio
import gc
import itertools
import time
from dataclasses import dataclass
from pathlib import Path

import anthropic


@dataclass(slots=True)
class Call:
    prompt: str
    started: float  # time.monotonic()
    seconds: float
    answer: str | None  # None when the call failed
    error: str | None = None

    @property
    def ended(self) -> float:
        return self.started + self.seconds


class SteadyTraffic:
    """`async with SteadyTraffic(url, clients=4) as traffic:` keeps `clients` calls in flight until the block ends;
    `traffic.calls` holds every call, in the order they ended."""

    def __init__(self, url: str, clients: int = 4, sessions: int = 4, pause_s: float = 0.0) -> None:
        self.url = url
        self.clients = clients
        self.sessions = sessions
        self.pause_s = pause_s
        self.calls: list[Call] = []
        self._numbers = itertools.count()
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task] = []

    async def __aenter__(self) -> SteadyTraffic:
        # The cyclic collector's full passes over this test process (pytest, the SDKs) take 100-150 ms, which every
        # call in flight would count as the gateway's; the calls' timings are about the gateway.
        gc.disable()
        self._tasks = [asyncio.create_task(self._client(i)) for i in range(self.clients)]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._stop.set()
        try:
            await asyncio.gather(*self._tasks)
        finally:
            gc.enable()

    async def _client(self, index: int) -> None:
        client = anthropic.AsyncAnthropic(base_url=self.url, api_key="sk-ant-test", max_retries=0,
                                          default_headers={"x-session-id": f"steady-{index % self.sessions}"})
        async with client:
            while not self._stop.is_set():
                prompt = f"question {next(self._numbers)}"
                started = time.monotonic()
                try:
                    async with client.messages.stream(model="claude-sonnet-4-5", max_tokens=1024, messages=[
                            {"role": "user", "content": prompt}]) as stream:
                        answer, error = await stream.get_final_text(), None
                except anthropic.APIError as exc:
                    answer, error = None, repr(exc)
                self.calls.append(Call(prompt, started, time.monotonic() - started, answer, error))
                if self.pause_s:
                    await asyncio.sleep(self.pause_s)

    def between(self, start: float, end: float) -> list[Call]:
        """The calls that were in flight at some moment between `start` and `end` (monotonic)."""
        return [c for c in self.calls if c.started < end and c.ended > start]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def children(pid: int) -> list[int]:
    """The processes `pid` started (Linux)."""
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return [int(p) for p in text.split()]
