"""The stdio wrapper's way out for what it saw: call reports POSTed to the running gateway in the background, in
order, in small batches, with a short timeout. Reports the gateway does not take (unreachable, or tracing off
there) become spans exported from this process with the same `OTEL_*` environment, as root spans; with no
exporter configured here either, they are dropped. Nothing in here can hold back the relayed bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Mapping

import aiohttp

from llm_gateway.mcp.report import CALLS_PATH, CallReport, to_json

log = logging.getLogger("llm_gateway.mcp")

ENV_GATEWAY_URL = "LLM_GATEWAY_URL"
DEFAULT_GATEWAY_URL = "http://127.0.0.1:8787"
POST_TIMEOUT_SECONDS = 2.0
_MAX_QUEUE = 1000  # reports waiting to be sent; past that they go straight to the local export
_MAX_BATCH = 100


def gateway_url(env: Mapping[str, str]) -> str:
    return (env.get(ENV_GATEWAY_URL) or DEFAULT_GATEWAY_URL).rstrip("/")


class Reporter:
    """`send(report)` never waits; `await aclose(grace)` at the end sends what is left, within `grace` seconds."""

    def __init__(self, env: Mapping[str, str], timeout: float = POST_TIMEOUT_SECONDS) -> None:
        self._env = env
        self._url = gateway_url(env) + CALLS_PATH
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._queue: asyncio.Queue[CallReport | None] = asyncio.Queue(_MAX_QUEUE)
        self._worker: asyncio.Task | None = None
        self._session: aiohttp.ClientSession | None = None
        self._local = None  # McpSpans of this process's own telemetry, built at the first report not taken
        self._telemetry = None
        self._local_tried = False

    def __repr__(self) -> str:
        return f"Reporter({self._url!r}, queued={self._queue.qsize()})"

    def send(self, report: CallReport) -> None:
        if self._worker is None:
            self._worker = asyncio.create_task(self._run())
        try:
            self._queue.put_nowait(report)
        except asyncio.QueueFull:
            self._export([report])

    async def aclose(self, grace: float) -> None:
        if self._worker is not None:
            await self._queue.put(None)
            done, _ = await asyncio.wait({self._worker}, timeout=grace)
            if not done:
                log.debug("MCP reports still pending after %ss: exported here", grace)
                self._worker.cancel()
                self._export([r for r in _take(self._queue, _MAX_QUEUE + 1) if r is not None])
        if self._session is not None:
            await self._session.close()
        if self._telemetry is not None:
            _shutdown_within(self._telemetry, grace)

    async def _run(self) -> None:
        while True:
            batch = [await self._queue.get(), *_take(self._queue, _MAX_BATCH - 1)]
            reports = [r for r in batch if r is not None]
            try:
                if reports and not await self._post(reports):
                    self._export(reports)
            except Exception:  # reporting is best effort; the next batch gets its own chance
                log.debug("MCP reports lost", exc_info=True)
            if None in batch:
                return

    async def _post(self, reports: list[CallReport]) -> bool:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        try:
            async with self._session.post(self._url, data=to_json(reports),
                                          headers={"Content-Type": "application/json"}) as response:
                return response.status == 202
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            log.debug("gateway at %s did not take MCP reports: %r", self._url, exc)
            return False

    def _export(self, reports: list[CallReport]) -> None:
        if not self._local_tried:
            self._local_tried = True
            self._local = self._local_spans()
        for report in reports if self._local is not None else ():
            self._local.record(report)

    def _local_spans(self):
        try:
            from llm_gateway.telemetry import configure
            from llm_gateway.telemetry.mcp_spans import McpSpans

            self._telemetry = configure(self._env)
        except Exception:
            log.warning("llm-gateway mcp: cannot export spans with this OTEL_* environment", exc_info=True)
            return None
        return McpSpans(self._telemetry.spans, self._env) if self._telemetry is not None else None


def _take(queue: asyncio.Queue, limit: int) -> list:
    items = []
    while not queue.empty() and len(items) < limit:
        items.append(queue.get_nowait())
    return items


def _shutdown_within(telemetry, seconds: float) -> None:
    """Flush the spans exported here, but never hold the wrapper's exit longer than `seconds` for a slow
    backend: the export thread is a daemon."""
    thread = threading.Thread(target=telemetry.shutdown, name="llm-gateway-mcp-flush", daemon=True)
    thread.start()
    with contextlib.suppress(RuntimeError):
        thread.join(seconds)
