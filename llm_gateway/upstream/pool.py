"""Kept-alive upstream connections by origin, and the one call the relay makes: `request()`."""

from __future__ import annotations

import asyncio
import ssl
import time

from llm_gateway.upstream.connection import Connection, UpstreamClosed, UpstreamResponse, UpstreamUnreachable
from llm_gateway.upstream.http1 import IDEMPOTENT_METHODS, Fields, Target, request_head, target_of

#: how long an unused connection is kept (aiohttp's client kept them 15 s too); many servers close theirs sooner,
#: which the pool notices when the close arrives
KEEPALIVE_S = 15.0
#: bodies up to this size go in one write with the head (a copy); larger ones as a second buffer
_JOIN_BELOW = 64 * 1024


class UpstreamPool:
    """HTTP/1.1 connections to the upstreams, reused one request at a time, LIFO (the warmest first)."""

    #: header fields go out as the bytes they came in, whatever their encoding
    writes_header_text = False

    def __init__(self, connect_timeout: float, read_timeout: float, keepalive_s: float = KEEPALIVE_S) -> None:
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._keepalive_s = keepalive_s
        self._idle: dict[tuple[str, str, int], list[Connection]] = {}
        self._tls: ssl.SSLContext | None = None

    async def request(self, method: str, url: str, fields: Fields, body: bytes | None) -> UpstreamResponse:
        """Send the request with the header `fields` (end-to-end, as received) and wait for the response's head.
        Raises UpstreamError (502) or TimeoutError (504); the caller reads the body and then calls `release()` on
        the response."""
        target = _TARGETS.get(url) or _target(url)
        head = request_head(method, target, fields, body)
        message: bytes | list[bytes] = head if not body else head + body if len(body) < _JOIN_BELOW else [head, body]
        connection = self._idle_connection(target)
        reused = connection is not None
        if connection is None:
            connection = await self._connect(target)
        response = connection.send(method, message)
        try:
            await response.head()
        except UpstreamClosed as exc:
            response.release()
            # A kept-alive connection the upstream closed while it was idle: RFC 9112 section 9.3.1 lets a client
            # send again a request whose method is idempotent; a POST (a model call) is not sent twice.
            if not (reused and not exc.answered and method in IDEMPOTENT_METHODS):
                raise
            connection = await self._connect(target)
            response = connection.send(method, message)
            await _head_or_release(response)
        except BaseException:
            response.release()
            raise
        return response

    def _idle_connection(self, target: Target) -> Connection | None:
        """The most recently used idle connection to the target's origin that is still open, if any."""
        idle = self._idle.get((target.scheme, target.host, target.port))
        now = time.monotonic()
        while idle:
            connection = idle.pop()
            if not connection.lost and now - connection.idle_since < self._keepalive_s:
                return connection
            connection.close()
        return None

    async def _connect(self, target: Target) -> Connection:
        loop = asyncio.get_running_loop()
        key = (target.scheme, target.host, target.port)
        tls = self._tls_context() if target.scheme == "https" else None
        try:
            async with asyncio.timeout(self._connect_timeout):
                _, connection = await loop.create_connection(
                    lambda: Connection(key, self._read_timeout, self),
                    target.host, target.port, ssl=tls, server_hostname=target.host if tls else None)
        except TimeoutError:
            raise TimeoutError(f"no connection to {target.host}:{target.port} within "
                               f"{self._connect_timeout:g} s") from None
        except (OSError, ssl.SSLError) as exc:
            raise UpstreamUnreachable(f"cannot connect to {target.host}:{target.port}: {exc}") from exc
        return connection

    def give_back(self, connection: Connection) -> None:
        """A connection whose response was read whole, for the next request to its origin."""
        connection.idle_since = time.monotonic()
        self._idle.setdefault(connection.key, []).append(connection)

    def forget(self, connection: Connection) -> None:
        """A connection that closed: never handed out again."""
        idle = self._idle.get(connection.key)
        if idle and connection in idle:
            idle.remove(connection)

    def _tls_context(self) -> ssl.SSLContext:
        if self._tls is None:  # the system's trust store (and SSL_CERT_FILE / SSL_CERT_DIR), as aiohttp's client
            self._tls = ssl.create_default_context()
        return self._tls

    def close(self) -> None:
        for idle in self._idle.values():
            for connection in idle:
                connection.close()
        self._idle.clear()


# Targets by URL: an agent calls the same few endpoints over and over.
_TARGETS: dict[str, Target] = {}
_TARGETS_KEPT = 256


def _target(url: str) -> Target:
    try:
        target = target_of(url)
    except ValueError as exc:
        raise UpstreamUnreachable(str(exc)) from None
    if len(_TARGETS) >= _TARGETS_KEPT:
        _TARGETS.clear()
    _TARGETS[url] = target
    return target


async def _head_or_release(response: UpstreamResponse) -> None:
    try:
        await response.head()
    except BaseException:
        response.release()
        raise
