"""A small HTTP/1.1 keep-alive client that timestamps what it receives: the first byte of a response, its end,
and each SSE event that carries an upstream send time.

It is an asyncio Protocol over a raw socket, not aiohttp's client: the timestamps are taken in
`data_received`, before any task wakes, so the client adds as little of its own delay as it can, and the same
few microseconds on every path. `ResponseParser` is sans-IO; `Connection` does the I/O.
"""

from __future__ import annotations

import asyncio
import enum
import functools
import ssl
import time
from dataclasses import dataclass, field

from bench import wire


class ProtocolError(Exception):
    """The server sent something this client cannot frame."""


@dataclass(slots=True)
class Exchange:
    """One request and its response as observed by the client. Times are `time.monotonic_ns()`."""

    sent_ns: int = 0
    first_byte_ns: int = 0
    end_ns: int = 0
    status: int = 0
    body_bytes: int = 0
    #: (arrival, upstream send time) for each SSE event that carries a mark
    events: list[tuple[int, int]] = field(default_factory=list)
    error: str | None = None
    timed_out: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None and 200 <= self.status < 300

    @property
    def latency_ns(self) -> int:
        return self.end_ns - self.sent_ns

    @property
    def ttfb_ns(self) -> int:
        return self.first_byte_ns - self.sent_ns


class _State(enum.Enum):
    #: waiting for the end of the status line and headers
    HEAD = 1
    #: Content-Length body
    LENGTH = 2
    #: waiting for a chunk-size line
    CHUNK_SIZE = 3
    #: inside a chunk's data
    CHUNK_DATA = 4
    #: the CRLF after a chunk's data
    CHUNK_END = 5
    #: trailer lines after the last chunk
    TRAILER = 6
    #: body delimited by the connection's close
    UNTIL_CLOSE = 7
    DONE = 8


class ResponseParser:
    """Frames one response (Content-Length, chunked, or until close) and feeds its body to an SSE scanner."""

    __slots__ = ("_buf", "_events", "_left", "_pending", "_state", "exchange", "keep_alive")

    _MAX_LINE = 64 * 1024  # a status line and headers, or a chunk-size line

    def __init__(self, exchange: Exchange, sse: bool) -> None:
        self.exchange = exchange
        self.keep_alive = True
        self._state = _State.HEAD
        self._buf = b""
        self._left = 0
        self._events = sse
        self._pending = bytearray()

    @property
    def done(self) -> bool:
        return self._state is _State.DONE

    def feed(self, data: bytes, now: int) -> None:
        if not self.exchange.first_byte_ns:
            self.exchange.first_byte_ns = now
        buf = self._buf + data if self._buf else data
        self._buf = b""
        while buf and self._state is not _State.DONE:
            rest = self._step(buf, now)
            if rest is None:  # an incomplete line: keep it for the next read
                if len(buf) > self._MAX_LINE:
                    raise ProtocolError(f"no line end in {len(buf)} bytes in state {self._state.name}")
                self._buf = buf
                return
            buf = rest

    def eof(self, now: int) -> None:
        if self._state is _State.UNTIL_CLOSE:
            self._finish(now)
        elif self._state is not _State.DONE:
            raise ProtocolError(f"connection closed in state {self._state.name}")

    def _step(self, buf: bytes, now: int) -> bytes | None:
        """Consume what the current state can from `buf` and return the rest, or None when it needs more."""
        state = self._state
        if state is _State.LENGTH or state is _State.CHUNK_DATA or state is _State.UNTIL_CLOSE:
            take = buf if state is _State.UNTIL_CLOSE else buf[: self._left]
            self._body(take, now)
            if state is not _State.UNTIL_CLOSE:
                self._left -= len(take)
            if self._left == 0 and state is not _State.UNTIL_CLOSE:
                if state is _State.LENGTH:
                    self._finish(now)
                else:
                    self._state = _State.CHUNK_END
            return buf[len(take):]
        if state is _State.CHUNK_END:
            if len(buf) < 2:
                return None
            self._state = _State.CHUNK_SIZE
            return buf[2:]
        end = buf.find(b"\r\n\r\n" if state is _State.HEAD else b"\r\n")
        if end < 0:
            return None
        if state is _State.HEAD:
            self._head(buf[:end], now)
            return buf[end + 4:]
        line, rest = buf[:end], buf[end + 2:]
        if state is _State.CHUNK_SIZE:
            self._left = int(line.split(b";", 1)[0], 16)
            self._state = _State.CHUNK_DATA if self._left else _State.TRAILER
        elif not line:  # the empty line that ends the trailer
            self._finish(now)
        return rest

    def _head(self, head: bytes, now: int) -> None:
        lines = head.split(b"\r\n")
        parts = lines[0].split(b" ", 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1."):
            raise ProtocolError(f"not an HTTP/1.x status line: {lines[0][:80]!r}")
        self.exchange.status = int(parts[1])
        length: int | None = None
        chunked = False
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            value = value.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding":
                chunked = value.endswith(b"chunked")
            elif name == b"connection" and value == b"close":
                self.keep_alive = False
        if chunked:
            self._state = _State.CHUNK_SIZE
        elif length is not None:
            self._left = length
            self._state = _State.LENGTH
            if length == 0:
                self._finish(now)
        elif self.exchange.status in (204, 304) or 100 <= self.exchange.status < 200:
            self._finish(now)
        else:
            self.keep_alive = False
            self._state = _State.UNTIL_CLOSE

    def _body(self, data: bytes, now: int) -> None:
        self.exchange.body_bytes += len(data)
        if not self._events:
            return
        pending = self._pending
        pending += data
        start = 0
        while (end := pending.find(b"\n\n", start)) >= 0:
            sent = wire.sent_ns_of(bytes(pending[start:end]))
            if sent is not None:
                self.exchange.events.append((now, sent))
            start = end + 2
        if start:
            del pending[:start]

    def _finish(self, now: int) -> None:
        self.exchange.end_ns = now
        self._state = _State.DONE


@dataclass(frozen=True, slots=True)
class Tls:
    """HTTPS to `server_name` (port 443), trusting `ca_file`. With `connect`, the address connected to is a forward
    proxy: an HTTP CONNECT tunnel is opened through it first, and TLS runs inside the tunnel."""

    server_name: str
    ca_file: str
    connect: bool = False


@functools.cache
def _client_context(ca_file: str) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=ca_file)
    context.set_alpn_protocols(["http/1.1"])
    return context


class _ConnectReply(asyncio.Protocol):
    """The connection before TLS: collects the proxy's answer to CONNECT (a head with no body)."""

    def __init__(self) -> None:
        self.head: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._buf = b""

    def data_received(self, data: bytes) -> None:
        self._buf += data
        if b"\r\n\r\n" in self._buf and not self.head.done():
            self.head.set_result(self._buf)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.head.done():
            self.head.set_exception(ConnectionError(f"the proxy closed the connection during CONNECT ({exc!r})"))


class Connection(asyncio.Protocol):
    """One keep-alive connection; `exchange()` sends a request and waits for its whole response."""

    def __init__(self) -> None:
        self._transport: asyncio.Transport | None = None
        self._parser: ResponseParser | None = None
        self._done: asyncio.Future[Exchange] | None = None
        self.closed = True

    @classmethod
    async def open(cls, host: str, port: int, tls: Tls | None = None) -> Connection:
        loop = asyncio.get_running_loop()
        if tls is None:
            _, protocol = await loop.create_connection(cls, host, port)
            return protocol
        raw, reply = await loop.create_connection(_ConnectReply, host, port)
        protocol = cls()
        try:
            if tls.connect:
                raw.write(wire.connect_request(tls.server_name, wire.HTTPS_PORT))
                head = await asyncio.wait_for(reply.head, 10)
                if head.split(b" ", 2)[1:2] != [b"200"] or not head.endswith(b"\r\n\r\n"):
                    raise ConnectionError(f"CONNECT refused: {head[:200]!r}")
            secured = await loop.start_tls(raw, protocol, _client_context(tls.ca_file),
                                           server_hostname=tls.server_name)
        except BaseException:
            raw.close()
            raise
        assert secured is not None
        protocol.connection_made(secured)
        return protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]  # uvloop's are no asyncio.Transport subclass
        self.closed = False

    def data_received(self, data: bytes) -> None:
        now = time.monotonic_ns()
        parser = self._parser
        if parser is None:
            return  # bytes nobody asked for: ignored
        try:
            parser.feed(data, now)
        except (ProtocolError, ValueError) as exc:
            self._settle(f"{type(exc).__name__}: {exc}")
            self.close()
            return
        if parser.done:
            if not parser.keep_alive:
                self.close()
            self._settle(None)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        parser = self._parser
        if parser is None:
            return
        try:
            parser.eof(time.monotonic_ns())
        except ProtocolError as error:
            self._settle(f"{error} ({exc!r})" if exc else str(error))
            return
        self._settle(None)

    def _settle(self, error: str | None) -> None:
        parser, done = self._parser, self._done
        self._parser = None
        self._done = None
        if parser is None or done is None or done.done():
            return
        parser.exchange.error = error
        done.set_result(parser.exchange)

    async def exchange(self, request: bytes, *, sse: bool = False, timeout: float | None = 30.0) -> Exchange:
        """Send `request` and wait for its response. Never raises for the server's failures: they end up in
        `Exchange.error`."""
        exchange = Exchange()
        if self.closed or self._transport is None:
            exchange.error = "connection closed before the request"
            return exchange
        self._parser = ResponseParser(exchange, sse)
        self._done = asyncio.get_running_loop().create_future()
        done = self._done
        exchange.sent_ns = time.monotonic_ns()
        self._transport.write(request)
        try:
            return await asyncio.wait_for(done, timeout)
        except TimeoutError:
            self._parser = None
            self._done = None
            self.close()
            exchange.error = f"no complete response in {timeout} s"
            exchange.timed_out = True
            return exchange

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
        self.closed = True


@dataclass(slots=True)
class Client:
    """Requests to one path over one keep-alive connection, reopened when the server closed it."""

    host: str
    port: int
    path: str
    tls: Tls | None = None
    _conn: Connection | None = None

    async def send(self, body: bytes, *, sse: bool = False, timeout: float | None = 30.0) -> Exchange:
        authority = (self.tls.server_name, wire.HTTPS_PORT) if self.tls else (self.host, self.port)
        request = wire.http_request(*authority, self.path, body)
        reused = self._conn is not None and not self._conn.closed
        if not reused:
            try:
                self._conn = await Connection.open(self.host, self.port, self.tls)
            except OSError as exc:
                return Exchange(error=f"connect failed: {exc}")
        assert self._conn is not None
        exchange = await self._conn.exchange(request, sse=sse, timeout=timeout)
        idle_closed = exchange.error is not None and not exchange.first_byte_ns and not exchange.timed_out
        if reused and idle_closed:
            # The server closed the idle connection just as the request left: once more on a new one.
            self._conn = None
            return await self.send(body, sse=sse, timeout=timeout)
        return exchange

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
