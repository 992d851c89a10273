"""A client connection the front end serves (`FrontConnection`), and the set of them (`Front`).

Requests are answered one at a time, in order: bytes of the next request that come while one is answered
(pipelining) wait, and past PIPELINED_LIMIT the socket is not read until the answer has ended. The first request the
front end does not serve (`NotServed`) hands the connection to aiohttp's server with every byte from that request's
first; from then on the connection is aiohttp's.

A connection closes after an answer that says so (HTTP/1.0 without keep-alive, `Connection: close`, a body that
ends with the connection), when the client goes away (the request being relayed is cancelled, as aiohttp's
`handler_cancellation` does), and when no byte came in one to two KEEP_ALIVE_S periods with no request in flight.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import cast

from aiohttp import web

from llm_gateway.errors import error_response
from llm_gateway.front.request_head import HeadReader, NotServed, RequestHead
from llm_gateway.front.response_head import ResponseHead, response_head
from llm_gateway.upstream.connection import UpstreamResponse, copy_body
from llm_gateway.upstream.http1 import Fields
from llm_gateway.upstream.via_aiohttp import AiohttpResponse

log = logging.getLogger("llm_gateway.front")

#: aiohttp's keepalive_timeout default
KEEP_ALIVE_S = 75.0
#: bytes of pipelined requests held while an answer is written, past which the socket is not read
PIPELINED_LIMIT = 64 * 1024

#: relays a request (`Relay.serve`): returns the error to answer with, or None when it answered
Serve = Callable[[RequestHead, bytes, "FrontConnection"], Awaitable[web.Response | None]]


class Front:
    """The connections the front end serves, the relay they serve requests with, and aiohttp's server they hand
    over to. Called, it is the protocol factory for a connection."""

    def __init__(self, serve: Serve, max_body_bytes: int, fallback: Callable[[], asyncio.Protocol]) -> None:
        self.serve = serve
        self.max_body_bytes = max_body_bytes  # a longer body is aiohttp's to refuse (413)
        self.fallback = fallback
        self.connections: set[FrontConnection] = set()
        self.closing = False

    def __call__(self) -> FrontConnection:
        return FrontConnection(self)

    def pre_shutdown(self) -> None:
        """Idle connections close now, the others after the answer being written (which says so)."""
        self.closing = True
        for connection in list(self.connections):
            if connection.task is None:
                connection.close()

    async def shutdown(self, timeout: float | None) -> None:
        """Answers being written get up to `timeout` seconds to end; then they are cut."""
        tasks = {connection.task for connection in self.connections if connection.task is not None}
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=timeout)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        for connection in list(self.connections):
            connection.close()


class FrontConnection(asyncio.Protocol):
    """One client connection. It is also the client's side of the exchange being relayed (`relay.ClientSide`)."""

    __slots__ = (
        "_buffer",
        "_chunked",
        "_drained",
        "_empty",
        "_front",
        "_head",
        "_http11",
        "_keep_alive",
        "_loop",
        "_method",
        "_pending",
        "_reader",
        "_reading",
        "_received",
        "_seen",
        "_started",
        "_timer",
        "_transport",
        "_writable",
        "task",
        "write_paused",
    )

    def __init__(self, front: Front) -> None:
        self._front = front
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._buffer: bytes | bytearray = b""  # from the first byte of the next request on
        self._reader = HeadReader()
        self._head: RequestHead | None = None  # a head read whose body has not come whole yet
        self.task: asyncio.Task[None] | None = None  # the request being answered
        self._reading = True
        self.write_paused = False  # the transport's buffer is over its high-water mark
        self._writable: Callable[[], None] | None = None  # called once it is not (`when_writable`)
        self._drained: asyncio.Future[None] | None = None
        self._received = 0  # bytes read, and as many at the idle timer's last look
        self._seen = 0
        self._timer: asyncio.TimerHandle | None = None
        # the request being answered, and how its answer's body goes
        self._method = ""
        self._http11 = True
        self._keep_alive = True
        self._started = False
        self._chunked = False
        self._empty = False
        self._pending = b""  # a streamed answer's head, written with its first chunk (`flush` writes it alone)

    # --- the transport's side ---

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's are not asyncio.Transport subclasses
        self._front.connections.add(self)
        self._timer = self._loop.call_later(KEEP_ALIVE_S, self._look_for_idle)
        if self._buffer:  # bytes that came first: over TLS, start_tls hands the transport over after them
            self._next()

    def data_received(self, data: bytes) -> None:
        self._received += len(data)
        buffer = self._buffer
        if not buffer:
            self._buffer = data
        elif isinstance(buffer, bytearray):
            buffer += data
        else:
            self._buffer = bytearray(buffer) + data
        if self.task is None:
            if self._transport is not None:
                self._next()
        elif self._reading and len(self._buffer) > PIPELINED_LIMIT:
            self._reading = False
            self._transport.pause_reading()  # type: ignore[union-attr]  # set: bytes came

    def eof_received(self) -> None:
        return None  # the transport closes; a request in flight is cancelled, as aiohttp's server does

    def connection_lost(self, exc: Exception | None) -> None:
        self._front.connections.discard(self)
        self._stop_timer()
        if self.task is not None:
            self.task.cancel()  # the relay ends the flow as `client_gone`

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        writable, self._writable = self._writable, None
        if writable is not None:
            writable()
        waiter = self._drained
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    # --- requests ---

    def _next(self) -> None:
        """Start answering the next request once it is whole in the buffer; hand over one not served."""
        buffer = self._buffer
        head = self._head
        if head is None:
            try:
                head = self._reader.read(buffer)
            except NotServed:
                self._hand_over()
                return
            if head is None:
                return
            if head.length > self._front.max_body_bytes:
                self._hand_over()
                return
            self._head = head
        end = head.size + head.length
        if len(buffer) < end:
            return
        body = bytes(buffer[head.size : end]) if head.length else b""
        self._buffer = buffer[end:]
        self._head = None
        if self._front.closing:  # shutting down: answered no more
            self.close()
            return
        self._method, self._http11, self._keep_alive, self._started = head.method, head.http11, head.keep_alive, False
        self.task = self._loop.create_task(self._answer(head, body))

    async def _answer(self, head: RequestHead, body: bytes) -> None:
        try:
            failed = await self._front.serve(head, body, self)
            if failed is not None:
                self._send_own(failed)
        except ConnectionResetError:
            pass  # the client went away while its answer was written: connection_lost follows
        except Exception:
            log.exception("llm-gateway: failed answering a %s request", head.method)
            self._failed()
        self.task = None
        self._answered()

    def _failed(self) -> None:
        """A 500 when nothing was answered yet, else a cut connection: the client sees the body end early."""
        self._keep_alive = False
        if self._started or self._transport is None or self._transport.is_closing():
            self.abort()
            return
        self._send_own(error_response(500, "gateway_error", "llm-gateway failed answering this request; its log "
                                      "says why"))

    def _send_own(self, response: web.Response) -> None:
        """One of the gateway's own answers (an error), whole."""
        body = cast(bytes, response.body)
        fields = [(name.encode(), value.encode()) for name, value in response.headers.items()]
        fields.append((b"Content-Length", b"%d" % len(body)))
        self._send_whole(response.status, response.reason, fields, body)

    def _answered(self) -> None:
        transport = self._transport
        assert transport is not None
        if transport.is_closing():
            return
        if not self._keep_alive or self._front.closing:
            transport.close()
            return
        if not self._reading:
            self._reading = True
            transport.resume_reading()
        if self._buffer:
            self._next()

    def _hand_over(self) -> None:
        """The connection is aiohttp's from the request in the buffer on."""
        transport = self._transport
        assert transport is not None
        self._front.connections.discard(self)
        self._stop_timer()
        protocol = self._front.fallback()
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        buffer, self._buffer, self._head = self._buffer, b"", None
        protocol.data_received(bytes(buffer))

    def _look_for_idle(self) -> None:
        if self.task is None and self._received == self._seen:
            self._timer = None
            self.close()
            return
        self._seen = self._received
        self._timer = self._loop.call_later(KEEP_ALIVE_S, self._look_for_idle)

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    # --- the client's side of the exchange (`relay.ClientSide`) ---

    async def start(self, status: int, reason: str, fields: Fields, whole: bytes | None) -> None:
        if whole is None:
            head = self._head_for(status, reason, fields)
            self._chunked, self._empty, self._pending = head.chunked, head.empty, head.block
        else:
            self._send_whole(status, reason, fields, whole)
        if self.write_paused:
            await self._drain()

    def _send_whole(self, status: int, reason: str, fields: Fields, body: bytes) -> None:
        head = self._head_for(status, reason, fields)
        transport = self._transport
        assert transport is not None
        if head.empty:
            transport.write(head.block)
        elif head.chunked:
            transport.write(head.block + (b"%x\r\n%b\r\n0\r\n\r\n" % (len(body), body) if body else b"0\r\n\r\n"))
        else:
            transport.writelines((head.block, body))

    def _head_for(self, status: int, reason: str, fields: Fields) -> ResponseHead:
        """The answer's head to the request being answered; raises ConnectionResetError when the client is gone."""
        transport = self._transport
        assert transport is not None
        if transport.is_closing():
            raise ConnectionResetError("the client closed the connection")
        head = response_head(status, reason, fields, method=self._method, http11=self._http11,
                             keep_alive=self._keep_alive and not self._front.closing)
        self._keep_alive, self._started = head.keep_alive, True
        return head

    async def relay_body(self, upstream: UpstreamResponse | AiohttpResponse,
                         record: Callable[[bytes], None] | None) -> None:
        if isinstance(upstream, UpstreamResponse):
            await upstream.pipe(self, record)
        else:  # aiohttp's client (LLM_GATEWAY_HTTP_SPANS=aiohttp)
            self.flush()
            await copy_body(upstream.read, self._write, record)

    def send(self, chunk: bytes) -> None:
        """A body chunk, written now (`upstream.connection.Sink`)."""
        transport = self._transport
        assert transport is not None
        if transport.is_closing():
            raise ConnectionResetError("the client closed the connection")
        if not chunk or self._empty:  # an empty chunk would end a chunked body
            return
        data = b"%x\r\n%b\r\n" % (len(chunk), chunk) if self._chunked else chunk
        if self._pending:  # the head goes with the first chunk, in one write
            data, self._pending = self._pending + data, b""
        transport.write(data)

    def flush(self) -> None:
        """The head, if no chunk took it along: the relay waits for the upstream next."""
        if self._pending and self._transport is not None and not self._transport.is_closing():
            self._transport.write(self._pending)
        self._pending = b""

    def when_writable(self, callback: Callable[[], None]) -> None:
        self._writable = callback

    async def _write(self, chunk: bytes) -> None:
        self.send(chunk)
        if self.write_paused:
            await self._drain()

    async def end(self) -> None:
        transport = self._transport
        assert transport is not None
        data, self._pending = self._pending + (b"0\r\n\r\n" if self._chunked else b""), b""
        if data and not transport.is_closing():
            transport.write(data)

    def abort(self) -> None:
        self._keep_alive, self._pending = False, b""
        if self._transport is not None:
            self._transport.abort()

    async def _drain(self) -> None:
        waiter = self._drained = self._loop.create_future()
        try:
            await waiter
        finally:
            self._drained = None
