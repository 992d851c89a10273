"""`llm-gateway mcp [--name NAME] -- COMMAND [ARGS...]`: runs a stdio MCP server as a child and sits on its pipes.

Bytes go from our stdin to the child's and from the child's stdout to ours as they arrive, unchanged; stderr is
the child's own (inherited, never touched). The observer gets a copy after each write, and finished calls are
reported in the background (`reporter.py`). The wrapper adds no failure of its own: whatever the server does
(crash, hang, garbage) the agent sees, and the wrapper exits with the server's code (128+N when a signal N
killed it). SIGTERM, SIGINT and SIGHUP are passed on to the child, which stays in the wrapper's process group
so that group-wide signals reach it as they would without the wrapper.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import selectors
import signal
import sys
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path

from llm_gateway.mcp.jsonrpc import Direction, StreamObserver
from llm_gateway.mcp.report import PIPE, CallReport
from llm_gateway.mcp.reporter import Reporter
from llm_gateway.telemetry.content import content_capture

_READ_SIZE = 64 * 1024
#: After the child exits, how long its stdout may stay open (held by a grandchild) before the wrapper leaves.
_STDOUT_AFTER_EXIT_SECONDS = 1.0
#: How long reports still queued at exit may take to reach the gateway or the exporter.
_REPORT_GRACE_SECONDS = 2.0
_FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)

log = logging.getLogger("llm_gateway.mcp")

Observe = Callable[[Direction, bytes], None]


def main(command: list[str], name: str | None = None, env: Mapping[str, str] | None = None) -> int:
    return asyncio.run(run(command, name, os.environ if env is None else env))


async def run(command: list[str], name: str | None, env: Mapping[str, str], stdin_fd: int = 0,
              stdout_fd: int = 1) -> int:
    loop = asyncio.get_running_loop()
    try:
        transport, child = await loop.subprocess_exec(
            lambda: _Child(loop), *command, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=None,  # inherited: the server's stderr is the agent's, untouched
        )
    except OSError as exc:  # as a shell reports it: 127 not found, 126 not runnable
        print(f"llm-gateway mcp: {command[0]}: {exc.strerror or exc}", file=sys.stderr, flush=True)
        return 127 if isinstance(exc, FileNotFoundError) else 126
    for sig in _FORWARDED:
        loop.add_signal_handler(sig, _forward, transport, sig)
    tap = _Tap(command, name, env)
    try:
        source, sink = await _open_source(stdin_fd), await _open_sink(stdout_fd)
        to_child = asyncio.create_task(_copy_in(source, child.stdin, tap.observe))
        from_child = asyncio.create_task(
            _copy_out(child.stdout, sink, tap.observe, lambda: transport.get_pipe_transport(1).close())
        )
        await child.exited.wait()
        await asyncio.wait({from_child}, timeout=_STDOUT_AFTER_EXIT_SECONDS)
        for task in (to_child, from_child):
            task.cancel()
        await asyncio.gather(to_child, from_child, return_exceptions=True)
        await tap.aclose()
    finally:
        for sig in _FORWARDED:
            loop.remove_signal_handler(sig)
        for fd in (stdin_fd, stdout_fd):  # the event loop made them non-blocking; they may be shared
            with contextlib.suppress(OSError):
                os.set_blocking(fd, True)
    return exit_code(transport.get_returncode())


class _Tap:
    """The observing side: gets a copy of what was relayed, reports finished calls. Never raises."""

    def __init__(self, command: list[str], name: str | None, env: Mapping[str, str]) -> None:
        self._name = name
        self._command_name = Path(command[0]).name
        self._observer = StreamObserver(capture=content_capture(env).on_spans)
        self._reporter = Reporter(env)
        self._session_id = uuid.uuid4().hex  # stdio has no session id of its own; this one groups the run's calls

    def observe(self, direction: Direction, data: bytes) -> None:
        try:
            self._report(self._observer.feed(direction, data, time.time_ns()))
        except Exception:  # an observer's bug must never stop the copy
            log.debug("observing %d bytes %s failed", len(data), direction.value, exc_info=True)

    async def aclose(self) -> None:
        """The server is gone: unanswered calls fail, and what is left to report gets a short grace."""
        try:
            self._report(self._observer.close("connection_closed", time.time_ns()))
            await self._reporter.aclose(_REPORT_GRACE_SECONDS)
        except Exception:
            log.debug("closing the MCP reports failed", exc_info=True)

    def _report(self, events: list) -> None:
        server = self._name or self._observer.tracker.server_name or self._command_name
        for event in events:
            self._reporter.send(CallReport(event, server, PIPE, self._session_id))


def exit_code(returncode: int | None) -> int:
    """The child's exit status as a shell gives it: 128+N for death by signal N."""
    if returncode is None:
        return 1
    return 128 - returncode if returncode < 0 else returncode


class _Child(asyncio.subprocess.SubprocessStreamProtocol):
    """The usual stream protocol, plus an event when the process exits (`Process.wait()` also waits for every
    pipe to close, which a grandchild holding stdout can put off forever)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(limit=_READ_SIZE, loop=loop)
        self.exited = asyncio.Event()

    def process_exited(self) -> None:
        super().process_exited()
        self.exited.set()


def _forward(transport: asyncio.SubprocessTransport, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        transport.send_signal(sig)


async def _copy_in(source: asyncio.StreamReader | _FileSource, stdin: asyncio.StreamWriter,
                   observe: Observe) -> None:
    try:
        while data := await source.read(_READ_SIZE):
            stdin.write(data)
            await stdin.drain()
            observe(Direction.CLIENT_TO_SERVER, data)
        stdin.close()  # EOF: the server's cue to exit (MCP stdio shutdown)
    except OSError:
        pass  # the server closed its stdin: what the agent writes now goes nowhere, as it would unwrapped


async def _copy_out(stdout: asyncio.StreamReader, sink: _PipeSink | _FileSink, observe: Observe,
                    stop_reading: Callable[[], None]) -> None:
    while data := await stdout.read(_READ_SIZE):
        try:
            await sink.send(data)
        except OSError:
            stop_reading()  # the agent stopped reading: the server's next write fails, as it would unwrapped
            return
        observe(Direction.SERVER_TO_CLIENT, data)


# Our own stdin/stdout: pipes, sockets and terminals go through the event loop; regular files and /dev/null
# cannot be polled, but never block either, so they are read and written directly.


class _FileSource:
    def __init__(self, fd: int) -> None:
        self._fd = fd

    async def read(self, size: int) -> bytes:
        return await asyncio.to_thread(os.read, self._fd, size)


class _PipeSink:
    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self._writer = writer
        writer.transport.set_write_buffer_limits(high=0)  # drain() returns once every byte is out

    async def send(self, data: bytes) -> None:
        self._writer.write(data)
        await self._writer.drain()


class _FileSink:
    def __init__(self, fd: int) -> None:
        self._fd = fd

    async def send(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view) :]


def _pollable(fd: int, events: int) -> bool:
    """Whether the event loop can wait on `fd` (epoll refuses regular files and /dev/null)."""
    with selectors.DefaultSelector() as selector:
        try:
            selector.register(fd, events)
        except (ValueError, OSError):
            return False
    return True


async def _open_source(fd: int) -> asyncio.StreamReader | _FileSource:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=_READ_SIZE, loop=loop)
    try:
        if not _pollable(fd, selectors.EVENT_READ):
            return _FileSource(fd)
        pipe = os.fdopen(fd, "rb", buffering=0, closefd=False)
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader, loop=loop), pipe)
    except (ValueError, OSError):
        return _FileSource(fd)
    return reader


async def _open_sink(fd: int) -> _PipeSink | _FileSink:
    loop = asyncio.get_running_loop()
    try:
        if not _pollable(fd, selectors.EVENT_WRITE):
            return _FileSink(fd)
        pipe = os.fdopen(fd, "wb", buffering=0, closefd=False)
        transport, protocol = await loop.connect_write_pipe(asyncio.streams.FlowControlMixin, pipe)
    except (ValueError, OSError):
        return _FileSink(fd)
    return _PipeSink(asyncio.StreamWriter(transport, protocol, None, loop))
