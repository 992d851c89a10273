"""One kept-alive upstream connection (an asyncio Protocol) and the response being read on it.

The response's body is handed to the reader as the connection receives it: each `read()` returns every byte
that came since the last one, without a copy when one chunk came. Past 256 KiB unread, the connection stops
reading from the socket until the reader catches up (the client's own pace reaches the upstream as TCP flow
control). Every wait for the upstream is bounded by the read timeout, as aiohttp's `sock_read` bounded it.

`pipe(sink)` instead hands each chunk to a sink (the client's connection) from the connection's own callback, as it
arrives: no wake-up of the reader and no loop turn between the upstream's bytes and the client's. The socket is not
read while the sink cannot take more (however long the client takes). A silent upstream is then noticed within one
to two read timeouts.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Protocol, cast

import httptools
from multidict import CIMultiDictProxy

from llm_gateway.upstream.http1 import header_text, text_headers

#: unread body bytes past which the connection stops reading from its socket
READ_BUFFER_LIMIT = 256 * 1024


class UpstreamError(Exception):
    """The upstream could not be reached, or its answer could not be read to the end. Not an OSError: the relay
    tells a client that went away (ConnectionResetError from a write) from an upstream that did."""


class UpstreamUnreachable(UpstreamError):
    """No connection could be made."""


class UpstreamClosed(UpstreamError):
    """The connection ended, or sent what is not HTTP, before the response was whole."""

    def __init__(self, message: str, answered: bool) -> None:
        super().__init__(message)
        self.answered = answered  # any byte of a response had come


class Home(Protocol):
    """Where a connection goes between requests (the pool)."""

    def give_back(self, connection: Connection) -> None: ...

    def forget(self, connection: Connection) -> None: ...


class Sink(Protocol):
    """Where `UpstreamResponse.pipe` sends a body: the client's side of the exchange."""

    write_paused: bool  # it cannot take more now: `when_writable` calls back once it can

    def send(self, chunk: bytes) -> None:
        """Write now; raises ConnectionResetError when the client is gone."""

    def flush(self) -> None:
        """Write anything held back (an answer's head, waiting to go with its first chunk): nothing more came."""

    def when_writable(self, callback: Callable[[], None]) -> None: ...


class Connection(asyncio.Protocol):
    """A connection to one origin; it carries one response at a time."""

    def __init__(self, key: tuple[str, str, int], read_timeout: float, home: Home) -> None:
        self.key = key
        self.read_timeout = read_timeout
        self.transport: asyncio.Transport | None = None
        self.response: UpstreamResponse | None = None
        self.lost = False
        self.idle_since = 0.0
        self.home = home

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not asyncio.Transport subclasses

    def data_received(self, data: bytes) -> None:
        if self.response is None:  # nothing was asked: bytes on an idle connection leave it unusable
            self.close()
            return
        self.response.received(data)

    def eof_received(self) -> bool | None:
        return None  # close the transport: a half-closed upstream has nothing more to say

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if self.response is not None:
            self.response.connection_lost(exc)
        self.home.forget(self)

    def send(self, method: str, message: bytes | list[bytes]) -> UpstreamResponse:
        assert self.transport is not None and self.response is None
        response = self.response = UpstreamResponse(self, method)
        if self.lost or self.transport.is_closing():  # its close is on the way: fail now, not at the read timeout
            response.connection_lost(None)
        elif isinstance(message, bytes):
            self.transport.write(message)
        else:
            self.transport.writelines(message)
        return response

    def close(self) -> None:
        self.lost = True
        if self.transport is not None:
            self.transport.close()


class UpstreamResponse:
    """The answer to one request: the head once `head()` returned, then the body by `read()`. Also the parser's
    callback object (the `on_*` methods)."""

    __slots__ = (
        "_answered",
        "_buffered",
        "_chunks",
        "_complete",
        "_connection",
        "_error",
        "_framed",
        "_head_done",
        "_interim",
        "_keep_alive",
        "_loop",
        "_method",
        "_parser",
        "_paused",
        "_received",
        "_record",
        "_sink",
        "_waiter",
        "raw_headers",
        "reason",
        "status",
    )

    def __init__(self, connection: Connection, method: str) -> None:
        self.status = 0
        self.reason = ""
        self.raw_headers: list[tuple[bytes, bytes]] = []
        self._connection = connection
        self._loop = asyncio.get_running_loop()
        self._parser: httptools.HttpResponseParser | None = httptools.HttpResponseParser(self)
        self._method = method
        self._chunks: list[bytes] = []
        self._buffered = 0
        self._paused = False
        self._head_done = False
        self._complete = False
        self._keep_alive = False
        self._framed = False  # Content-Length or chunked: else the body ends when the connection does
        self._interim = False  # reading a 1xx answer, which another answer follows
        self._error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._answered = False
        self._sink: Sink | None = None  # piping the body (`pipe`)
        self._record: Callable[[bytes], None] | None = None
        self._received = 0  # body chunks piped

    # --- the reader's side ---

    async def head(self) -> None:
        """Returns once the status and headers came; raises UpstreamError or TimeoutError."""
        while not self._head_done:
            if self._error is not None:
                raise self._error
            await self._wait()

    async def read(self) -> bytes:
        """The body bytes that came since the last call, waiting for some; b"" once the body is whole."""
        while True:
            if self._chunks:
                return self._take()
            if self._complete:
                return b""
            if self._error is not None:
                raise self._error
            await self._wait()

    async def pipe(self, sink: Sink, record: Callable[[bytes], None] | None) -> None:
        """Send each body chunk to `sink` as it arrives, then hand it to `record`; returns once the body is whole.
        Raises UpstreamError, TimeoutError, or the sink's ConnectionResetError."""
        if self._chunks:
            data = self._take()
            sink.send(data)
            if record is not None:
                record(data)
        sink.flush()
        self._sink, self._record = sink, record
        try:
            while not self._complete:
                if self._error is not None:
                    raise self._error
                received = self._received
                try:
                    await self._wait()  # woken at the end, an error, or the read timeout
                except TimeoutError:
                    # silence counts against the upstream, not a wait for the client to take what came
                    if self._received == received and not self._paused:
                        raise
        finally:
            self._sink = self._record = None
        if self._error is not None:
            raise self._error

    @property
    def headers(self) -> CIMultiDictProxy[str]:
        """The header fields as text (read on each call: the relay itself needs only `raw_headers`)."""
        return text_headers(self.raw_headers)

    def whole_body(self) -> bytes | None:
        """The whole body when all of it came with the head (a short answer mostly does), else None and nothing is
        taken: the body is then read with `read()`."""
        if not self._complete or self._error is not None:
            return None
        return self._take()

    def _take(self) -> bytes:
        """Every body byte received and not read yet; reading from the socket goes on if it was paused."""
        chunks = self._chunks
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        chunks.clear()
        self._buffered = 0
        self._resume_reading()
        return data

    def at_eof(self) -> bool:
        return self._complete and not self._chunks

    def release(self) -> None:
        """Done with the response: a whole one leaves its connection for the next request, anything else closes
        it (the upstream sees at once that nobody reads)."""
        connection = self._connection
        if connection.response is not self:
            return  # released already
        connection.response = None
        self._parser = None  # it holds this response (its callbacks): no cycle left for the collector
        if self.at_eof() and self._keep_alive and not connection.lost:
            connection.home.give_back(connection)
        else:
            connection.close()

    async def _wait(self) -> None:
        waiter = self._waiter = self._loop.create_future()
        timer = self._loop.call_later(self._connection.read_timeout, _time_out, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            self._waiter = None

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # --- the connection's side ---

    def received(self, data: bytes) -> None:
        self._answered = True
        parser = self._parser
        if parser is None:
            return
        try:
            parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(UpstreamClosed(f"the upstream's answer is not HTTP/1.1 ({exc})", True))
            self._connection.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._complete:
            return
        if self._head_done and not self._framed and not self._interim:
            self._complete = True  # a body without framing ends with its connection (RFC 9112 section 6.3)
            self._wake()
            return
        what = "answering" if not self._head_done else "the body was whole"
        detail = f": {exc}" if exc else ""
        self._fail(UpstreamClosed(f"the upstream closed the connection before {what}{detail}", self._answered))

    def _fail(self, error: BaseException) -> None:
        if self._error is None and not self._complete:
            self._error = error
            self._wake()

    # --- the parser's callbacks (httptools) ---

    def on_message_begin(self) -> None:
        if self._complete:  # bytes after the whole answer: the connection cannot carry another one
            raise httptools.HttpParserError("bytes after the end of the response")

    def on_status(self, reason: bytes) -> None:
        self.reason += header_text(reason)

    def on_header(self, name: bytes, value: bytes) -> None:
        self.raw_headers.append((name, value))
        if len(name) in _FRAMING_LENGTHS and name.lower() in _FRAMING:
            self._framed = True

    def on_headers_complete(self) -> None:
        assert self._parser is not None  # called back by it
        status = self._parser.get_status_code()
        if 100 <= status < 200:  # an interim answer (103 Early Hints): the real one follows
            self._interim = True
            self.reason, self.raw_headers, self._framed = "", [], False
            return
        self.status = status
        self._head_done = True
        if self._method == "HEAD":  # no body follows, whatever the fields say; the parser would wait for one
            self._complete = True
        self._wake()

    def on_body(self, body: bytes) -> None:
        sink = self._sink
        if sink is not None:
            self._piped(sink, body)
            return
        self._chunks.append(body)
        self._buffered += len(body)
        if self._buffered > READ_BUFFER_LIMIT:
            self._pause_reading()
        self._wake()

    def _piped(self, sink: Sink, body: bytes) -> None:
        self._received += 1
        try:
            sink.send(body)
        except ConnectionResetError as exc:  # the client is gone: the reader raises it
            self._sink = None
            self._error = exc
            self._wake()
            return
        if self._record is not None:
            self._record(body)
        if sink.write_paused and self._pause_reading():
            sink.when_writable(self._resume_reading)

    def _pause_reading(self) -> bool:
        """Stops reading from the socket; True when this paused it (it was reading)."""
        if self._paused:
            return False
        transport = self._connection.transport
        if transport is None or transport.is_closing():
            return False
        transport.pause_reading()
        self._paused = True
        return True

    def _resume_reading(self) -> None:
        if self._paused:
            self._paused = False
            transport = self._connection.transport
            if transport is not None and not transport.is_closing():
                transport.resume_reading()

    def on_message_complete(self) -> None:
        if self._interim:
            self._interim = False
            return
        self._framed = True
        self._complete = True
        assert self._parser is not None
        self._keep_alive = self._method != "HEAD" and self._parser.should_keep_alive()
        self._wake()


async def copy_body(read: Callable[[], Awaitable[bytes]], write: Callable[[bytes], Awaitable[None]],
                    record: Callable[[bytes], None] | None) -> None:
    """A body read chunk by chunk and written on, each chunk handed to `record` after its write (for a reader or a
    writer that cannot be piped)."""
    if record is None:
        while chunk := await read():
            await write(chunk)
    else:
        while chunk := await read():
            await write(chunk)
            record(chunk)


def _time_out(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError("the upstream sent nothing within the read timeout"))


_FRAMING = frozenset({b"content-length", b"transfer-encoding"})
_FRAMING_LENGTHS = frozenset(len(name) for name in _FRAMING)
