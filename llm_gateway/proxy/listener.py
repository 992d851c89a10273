"""The gateway's port as an HTTP forward proxy too: `ProxyServer` is aiohttp's low-level server that looks at the
first bytes of each connection.

A connection that does not start with `CONNECT ` is handed at once to the front end (`front/`, which hands what it
does not serve to aiohttp) and never seen here again (the direct path pays one prefix check per connection, nothing
per request). A CONNECT is answered here:

- to a host on the intercept list: `200`, then TLS is terminated with a leaf for that host signed by the
  gateway's CA, and the decrypted connection is served as direct ones are (a front end of its own, handing over to
  an aiohttp server of its own), told which host it is (`via`), so requests inside are relayed, traced and
  recorded the same way;
- to any other host: `200` once the host is reached, then a byte-for-byte tunnel (`tunnel.py`);
- malformed: `400`; from a non-loopback client while the gateway listens on loopback: `403`; an unreachable host:
  `502` / `504`. Each with a JSON body like the relay's errors.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import ssl
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from llm_gateway.config import DEFAULT_MAX_BODY
from llm_gateway.front.connection import Front, Serve
from llm_gateway.proxy.ca_files import CAError
from llm_gateway.proxy.connect import BadConnect, Target, read_connect, starts_connect
from llm_gateway.proxy.forward import ForwardProxy
from llm_gateway.proxy.intercept import ProxiedHost
from llm_gateway.proxy.tunnel import TunnelSide, join

log = logging.getLogger("llm_gateway.proxy")

#: the request handler: `via` is the intercepted host for requests inside a CONNECT, None for direct requests
ViaHandler = Callable[..., Awaitable[web.StreamResponse]]

ESTABLISHED = b"HTTP/1.1 200 Connection Established\r\n\r\n"
HANDSHAKE_TIMEOUT_S = 10.0
# aiohttp's own limit for a connection that sends no request (RequestHandler's keepalive_timeout default)
_FIRST_BYTES_TIMEOUT_S = 3630.0


class ProxyServer(web.Server):
    """`web.Server(handler, ...)` plus the forward proxy. `handler(request, via=None)`; `serve`: the front end's
    (`front/`) for the plain requests of a connection that is not a CONNECT, None to leave all to aiohttp."""

    def __init__(self, handler: ViaHandler, *, proxy: ForwardProxy, serve: Serve | None = None,
                 max_body_bytes: int = DEFAULT_MAX_BODY, **kwargs: Any) -> None:
        kwargs.setdefault("logger", RefusedRequests(logging.getLogger("aiohttp.server")))
        super().__init__(handler, **kwargs)
        self.proxy = proxy
        self.front = Front(serve, max_body_bytes, self._aiohttp_protocol) if serve is not None else None
        self._origins: dict[tuple[str, int], web.Server] = {}  # one aiohttp server per intercepted host
        self._origin_fronts: dict[tuple[str, int], Front] = {}  # and its front end (`front/`)
        self._pending: set[asyncio.Task] = set()  # CONNECTs being answered (upstream connect, TLS handshake)
        self._tunnels: set[TunnelSide] = set()

    def __call__(self) -> asyncio.Protocol:  # the protocol factory the listening socket uses
        return _FirstBytes(self)

    def _aiohttp_protocol(self) -> asyncio.Protocol:
        return super().__call__()

    def _http_protocol(self) -> asyncio.Protocol:
        """For a connection that is not a CONNECT."""
        return self.front() if self.front is not None else self._aiohttp_protocol()

    def pre_shutdown(self) -> None:
        super().pre_shutdown()
        for front in self.fronts():
            front.pre_shutdown()
        for server in self._origins.values():
            server.pre_shutdown()

    def fronts(self) -> list[Front]:
        """The front ends: the direct one, and one per intercepted host."""
        return [*(() if self.front is None else (self.front,)), *self._origin_fronts.values()]

    async def shutdown(self, timeout: float | None = None) -> None:
        """In-flight requests inside intercepted connections get the same grace as direct ones; tunnels and
        CONNECTs still being answered are cut."""
        for task in self._pending:
            task.cancel()
        for side in list(self._tunnels):
            side.close()
        await asyncio.gather(super().shutdown(timeout), *(front.shutdown(timeout) for front in self.fronts()),
                             *(server.shutdown(timeout) for server in self._origins.values()))

    # ------------------------------------------------------------------------------------------ CONNECT

    def connect(self, transport: asyncio.Transport, target: Target, early: bytes) -> asyncio.Task | None:
        """Answer a CONNECT whose head has been read; `early`: bytes the client sent after the head."""
        if not self.proxy.admits(transport.get_extra_info("peername")):
            _answer(transport, 403, "Forbidden", "proxy_forbidden",
                    "llm-gateway takes proxy clients from this machine only; start it with --host to serve others")
            return None
        host = self.proxy.host(target)
        coro = self._tunnel(transport, target, early) if host.upstream is None else self._intercept(
            transport, host, early)
        task = asyncio.get_running_loop().create_task(coro)
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)
        return task

    async def _tunnel(self, transport: asyncio.Transport, target: Target, early: bytes) -> None:
        loop = asyncio.get_running_loop()
        client, upstream = TunnelSide(self._tunnels.discard), TunnelSide(self._tunnels.discard)
        try:
            await asyncio.wait_for(
                loop.create_connection(lambda: upstream, target.host, target.port), self.proxy.connect_timeout
            )
        except TimeoutError:
            _answer(transport, 504, "Gateway Timeout", "upstream_timeout",
                    f"llm-gateway: {target.authority}:{target.port} did not accept a connection in time",
                    upstream=f"{target.authority}:{target.port}")
            return
        except OSError as exc:
            _answer(transport, 502, "Bad Gateway", "upstream_unreachable",
                    f"llm-gateway: {target.authority}:{target.port} could not be reached ({_detail(exc)})",
                    upstream=f"{target.authority}:{target.port}", cause=_detail(exc))
            return
        if transport.is_closing():  # the client left while the host was being reached
            if upstream.transport is not None:
                upstream.transport.close()
            return
        transport.set_protocol(client)
        client.connection_made(transport)
        transport.write(ESTABLISHED)
        join(client, upstream)  # passes on what the host sent already (a host that speaks first)
        if upstream.transport is None:  # and has hung up already
            transport.close()
            return
        self._tunnels.update((client, upstream))
        if early:
            upstream.transport.write(early)
        transport.resume_reading()

    async def _intercept(self, transport: asyncio.Transport, host: ProxiedHost, early: bytes) -> None:
        if early:
            # The TLS layer can only start on a clean connection: a client has to wait for the 200 anyway to
            # know the tunnel is there.
            _answer(transport, 400, "Bad Request", "bad_connect",
                    "llm-gateway: send the TLS handshake after the 200 answer to CONNECT, not with it")
            return
        try:
            context = self.proxy.ca().context_for(host.host)
        except (CAError, ValueError) as exc:
            log.error("llm-gateway: cannot intercept %s: %s", host.host, exc)
            _answer(transport, 500, "Internal Server Error", "proxy_ca_unavailable", f"llm-gateway: {exc}")
            return
        transport.write(ESTABLISHED)
        protocol = self._origin_protocol(host)
        try:
            tls = await asyncio.get_running_loop().start_tls(
                transport, protocol, context, server_side=True, ssl_handshake_timeout=HANDSHAKE_TIMEOUT_S
            )
        except (ssl.SSLError, OSError, TimeoutError) as exc:
            self.proxy.handshake_failed(host.host, exc)
            transport.abort()
            return
        if tls is None:  # the connection was lost during the handshake
            return
        protocol.connection_made(tls)

    def _origin_protocol(self, host: ProxiedHost) -> asyncio.Protocol:
        """The protocol for a decrypted connection to `host`: the front end's, handing over to that host's aiohttp
        server, as for direct connections."""
        if self.front is None:
            return self._origin(host)()
        key = (host.host, host.port)
        front = self._origin_fronts.get(key)
        if front is None:
            front = self._origin_fronts[key] = Front(functools.partial(self.front.serve, via=host),
                                                     self.front.max_body_bytes, self._origin(host))
        return front()

    def _origin(self, host: ProxiedHost) -> web.Server:
        """The aiohttp server for one intercepted host: the same handler, told the host."""
        key = (host.host, host.port)
        server = self._origins.get(key)
        if server is None:
            handler = functools.partial(self.request_handler, via=host)
            server = self._origins[key] = web.Server(
                handler, handler_cancellation=self.handler_cancellation, loop=self._loop, **self._kwargs
            )
        return server


class RefusedRequests(logging.LoggerAdapter):
    """aiohttp's server logger, except for a request its parser refused (answered 400): that is a client's bytes,
    not the gateway's fault, and aiohttp would log it as an error with a traceback and the offending bytes, where a
    credential may be. It becomes one debug line without them: a broken or hostile client can neither flood the log
    nor have its secrets written there."""

    def exception(self, msg: object, *args: object, exc_info: Any = True, **kwargs: Any) -> None:
        if isinstance(exc_info, HttpProcessingError):
            self.logger.debug("llm-gateway: answered %s to a request that is not valid HTTP/1.1 (%s)", exc_info.code,
                              type(exc_info).__name__)
            return
        super().exception(msg, *args, exc_info=exc_info, **kwargs)


class _FirstBytes(asyncio.Protocol):
    """Reads the first bytes of a connection: aiohttp's unless they start a CONNECT."""

    __slots__ = ("_buffer", "_server", "_task", "_timer", "_transport")

    def __init__(self, server: ProxyServer) -> None:
        self._server = server
        self._buffer = b""
        self._transport: asyncio.Transport | None = None
        self._task: asyncio.Task | None = None
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        self._timer = asyncio.get_running_loop().call_later(_FIRST_BYTES_TIMEOUT_S, transport.close)

    def data_received(self, data: bytes) -> None:
        transport = self._transport
        if transport is None or self._task is not None:
            return
        buffer = self._buffer + data if self._buffer else data
        connect = starts_connect(buffer)
        if connect is None:
            self._buffer = buffer
            return
        if not connect:
            self._hand_over(transport, buffer)
            return
        try:
            head = read_connect(buffer)
        except BadConnect as exc:
            self._stop_timer()
            self._transport = None
            _answer(transport, 400, "Bad Request", "bad_connect", f"llm-gateway: {exc}")
            return
        if head is None:
            self._buffer = buffer
            return
        self._stop_timer()
        self._buffer = b""
        self._transport = None  # the proxy's from here on
        transport.pause_reading()  # the rest is the tunnel's, read once it is set up
        target, end = head
        self._task = self._server.connect(transport, target, buffer[end:])

    def _hand_over(self, transport: asyncio.Transport, buffer: bytes) -> None:
        self._stop_timer()
        self._transport = None
        protocol = self._server._http_protocol()
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        protocol.data_received(buffer)

    def eof_received(self) -> bool:
        if self._task is None and self._buffer and self._transport is not None:
            self._hand_over(self._transport, self._buffer)  # let aiohttp answer what it has (a 400)
        return False

    def connection_lost(self, exc: BaseException | None) -> None:
        self._stop_timer()
        self._transport = None
        if self._task is not None:
            self._task.cancel()  # the client left while its CONNECT was being answered

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


def _answer(transport: asyncio.Transport, status: int, reason: str, error_type: str, message: str,
            **extra: str) -> None:
    """A complete error response on a connection the proxy holds, then close it."""
    body = orjson.dumps({"type": "error", "error": {"type": error_type, "message": message, **extra}})
    head = (f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            f"x-llm-gateway-error: {error_type}\r\nConnection: close\r\n\r\n")
    with contextlib.suppress(RuntimeError):  # already closing
        transport.write(head.encode("ascii") + body)
    transport.close()


def _detail(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc.strerror or exc}" if isinstance(exc, OSError) else repr(exc)
