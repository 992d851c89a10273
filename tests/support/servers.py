"""Real servers on 127.0.0.1 port 0 for tests: the gateway in-process, and small purpose-built upstreams.

Each helper is an async context manager that stops what it started, so a test (or a fixture in
`tests/conftest.py`) can hold several at once in an `AsyncExitStack`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from llm_gateway.config import Settings
from llm_gateway.recordings import Fixture, load
from llm_gateway.recordings.replay import ReplayUpstream
from llm_gateway.server import Gateway
from llm_gateway.telemetry.spool import ENV_STATE_DIR

Handler = Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]

LOOPBACK = "127.0.0.1"
# A test upstream's handler may be parked on an event the test never sets; do not wait long for it at stop.
_UPSTREAM_SHUTDOWN_SECONDS = 0.5


@asynccontextmanager
async def running_gateway(
    settings: Settings | None = None, env: Mapping[str, str] | None = None
) -> AsyncIterator[Gateway]:
    """The gateway on 127.0.0.1 and a free port. `env` defaults to {}: no OTEL_* variable, tracing off."""
    settings = dataclasses.replace(settings or Settings(), host=LOOPBACK, port=0)
    # state (the span spool) in the test session's directory (tests/conftest.py), unless the test names one
    env = {ENV_STATE_DIR: os.environ[ENV_STATE_DIR], **(env or {})}
    gateway = await Gateway.start(settings, env=env)
    try:
        yield gateway
    finally:
        await gateway.stop()


@asynccontextmanager
async def running_upstream(handler: Handler) -> AsyncIterator[str]:
    """A low-level aiohttp server calling `handler` for every request; yields its base URL.

    Handler cancellation is on, so a handler sees CancelledError as soon as its client goes away."""
    runner = web.ServerRunner(
        web.Server(handler, handler_cancellation=True),
        handle_signals=False,
        shutdown_timeout=_UPSTREAM_SHUTDOWN_SECONDS,
    )
    await runner.setup()
    site = web.TCPSite(runner, LOOPBACK, 0)
    await site.start()
    try:
        yield f"http://{LOOPBACK}:{site._server.sockets[0].getsockname()[1]}"
    finally:
        await runner.cleanup()


@asynccontextmanager
async def running_replay(fixtures: Sequence[Fixture | str | Path]) -> AsyncIterator[ReplayUpstream]:
    """A ReplayUpstream serving the given fixtures (objects or file paths), without delays."""
    loaded = [f if isinstance(f, Fixture) else load(f) for f in fixtures]
    async with ReplayUpstream(loaded) as replay:
        yield replay


@asynccontextmanager
async def silent_upstream() -> AsyncIterator[str]:
    """A TCP server that accepts connections and reads, but never answers; yields its base URL."""
    connections: list[asyncio.StreamWriter] = []

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(writer)
        while await reader.read(65536):
            pass

    server = await asyncio.start_server(hold, LOOPBACK, 0)
    try:
        yield f"http://{LOOPBACK}:{server.sockets[0].getsockname()[1]}"
    finally:
        server.close()
        for writer in connections:
            writer.close()
        await server.wait_closed()


def closed_port_url() -> str:
    """The URL of a loopback port nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port = sock.getsockname()[1]
    return f"http://{LOOPBACK}:{port}"


@dataclass(frozen=True, slots=True)
class Arrived:
    """A request as an upstream received it: header names as sent, in order, repeats kept (UTF-8 text)."""

    method: str
    raw_path: str
    headers: tuple[tuple[str, str], ...]
    body: bytes

    def header_names(self) -> set[str]:
        return {name.lower() for name, _ in self.headers}

    def values(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name.lower()]


class RecordingUpstream:
    """Answers every request with one fixed response and keeps what arrived, for `running_upstream`."""

    def __init__(
        self, status: int = 200, headers: Sequence[tuple[str, str]] = (), body: bytes = b"{}"
    ) -> None:
        self.status = status
        self.headers = tuple(headers)
        self.body = body
        self.arrived: list[Arrived] = []

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        body = await request.content.read()  # not request.read(): that stops at client_max_size (1 MiB)
        headers = tuple((_text(k), _text(v)) for k, v in request.raw_headers)
        self.arrived.append(Arrived(request.method, request.raw_path, headers, body))
        response = web.Response(status=self.status, body=self.body)
        for name, value in self.headers:
            response.headers.add(name, value)
        return response


def held_stream(release: asyncio.Event) -> Handler:
    """An upstream handler that streams `data: first`, waits for `release`, then sends `data: last` and ends."""

    async def handle(request: web.BaseRequest) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(b"data: first\n\n")
        await release.wait()
        await response.write(b"data: last\n\n")
        return response

    return handle


def _text(raw: bytes) -> str:
    """Header bytes as text; any byte that is not UTF-8 stays visible as a lone surrogate."""
    return raw.decode("utf-8", "surrogateescape")


async def raw_http(port: int, request: bytes, timeout: float = 5.0) -> bytes:
    """Send `request` verbatim over a fresh TCP connection and read until the server closes it."""
    reader, writer = await asyncio.open_connection(LOOPBACK, port)
    try:
        writer.write(request)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), timeout)
    finally:
        writer.close()
