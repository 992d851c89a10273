"""Servers for the proxy tests: the gateway's listener with any handler, a TLS origin with a CA of its own, a raw
CONNECT client."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from aiohttp import web

from llm_gateway.proxy.ca import CertificateAuthority
from llm_gateway.proxy.forward import ForwardProxy
from llm_gateway.proxy.listener import ProxyServer, ViaHandler
from llm_gateway.recordings.replay import listen
from tests.support.servers import LOOPBACK


@asynccontextmanager
async def running_listener(handler: ViaHandler, proxy: ForwardProxy) -> AsyncIterator[str]:
    """A ProxyServer on loopback; yields its URL."""
    server = ProxyServer(handler, proxy=proxy, handler_cancellation=True, access_log=None)
    runner = web.ServerRunner(server, handle_signals=False, shutdown_timeout=1.0)
    try:
        yield f"http://{LOOPBACK}:{await listen(runner, LOOPBACK, 0)}"
    finally:
        await runner.cleanup()


class TlsOrigin:
    """An HTTPS server on loopback with a certificate from a CA of its own (`ca`): answers every request with
    `answer`, keeps each request's raw body."""

    def __init__(self, ca_dir: Path, answer: bytes = b"origin answer", host: str = LOOPBACK) -> None:
        self.ca = CertificateAuthority.load_or_create(ca_dir)
        self.answer = answer
        self.host = host
        self.bodies: list[bytes] = []
        self.port = 0

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca.files.cert))

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        self.bodies.append(await request.content.read())
        return web.Response(body=self.answer, content_type="application/octet-stream")

    @asynccontextmanager
    async def running(self) -> AsyncIterator[TlsOrigin]:
        runner = web.ServerRunner(web.Server(self._handle), handle_signals=False, shutdown_timeout=0.5)
        await runner.setup()
        site = web.TCPSite(runner, LOOPBACK, 0, ssl_context=self.ca.context_for(self.host))
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]
        try:
            yield self
        finally:
            await runner.cleanup()


async def open_tunnel(proxy_url: str, authority: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, bytes]:
    """A connection to the proxy with a CONNECT sent; the proxy's answer head is read. (reader, writer, head)"""
    port = int(proxy_url.rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection(LOOPBACK, port)
    writer.write(f"CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n".encode())
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    return reader, writer, head
