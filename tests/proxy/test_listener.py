"""The gateway's port as a forward proxy, with a stand-in request handler: direct requests untouched, tunnels byte
for byte to hosts it does not read, TLS terminated for hosts it reads, and the CONNECT errors."""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from pathlib import Path

import httpx2
import orjson
import pytest
from aiohttp import web

from llm_gateway.proxy.forward import ForwardProxy
from llm_gateway.proxy.intercept import InterceptList, ProxiedHost
from tests.proxy.helpers import TlsOrigin, open_tunnel, running_listener
from tests.support.servers import LOOPBACK, closed_port_url, raw_http

ALL_BYTES = bytes(range(256)) * 64
TcpHandler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def describe_request(request: web.BaseRequest, via: ProxiedHost | None = None) -> web.StreamResponse:
    """The stand-in for the relay: says what it was given."""
    ssl_object = request.transport.get_extra_info("ssl_object") if request.transport else None
    return web.json_response({
        "method": request.method, "raw_path": request.raw_path, "body": (await request.read()).decode(),
        "via": None if via is None else [via.host, via.port, via.upstream, via.origin],
        "alpn": ssl_object.selected_alpn_protocol() if ssl_object else None,
    })


def forward_proxy(tmp_path: Path, *hosts: str) -> ForwardProxy:
    return ForwardProxy(InterceptList((h, "default") for h in hosts), tmp_path / "gateway-ca", connect_timeout=2)


@pytest.fixture
async def stack() -> AsyncIterator[AsyncExitStack]:
    async with AsyncExitStack() as stack:
        yield stack


async def test_direct_requests_reach_the_handler_untouched_even_split_in_tiny_packets(
        tmp_path: Path, stack: AsyncExitStack) -> None:
    url = await stack.enter_async_context(running_listener(describe_request, forward_proxy(tmp_path)))
    port = int(url.rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection(LOOPBACK, port)
    request = b"POST /v1/messages?x=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi"
    for i in range(len(request)):  # "C" and "CO" could start a CONNECT: the listener waits for more
        writer.write(request[i:i + 1])
        await writer.drain()
        await asyncio.sleep(0)
    head = await reader.readuntil(b"\r\n\r\n")
    body = await reader.readexactly(int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0]))
    writer.close()
    assert orjson.loads(body) == {"method": "POST", "raw_path": "/v1/messages?x=1", "body": "hi", "via": None,
                                  "alpn": None}
    assert not (tmp_path / "gateway-ca").exists()  # the CA is made on first need only


async def test_tunnel_to_unlisted_host_shows_its_own_certificate_and_bytes_arrive_unchanged(
        tmp_path: Path, stack: AsyncExitStack) -> None:
    origin = await stack.enter_async_context(TlsOrigin(tmp_path / "origin-ca", ALL_BYTES[::-1]).running())
    url = await stack.enter_async_context(running_listener(describe_request, forward_proxy(tmp_path, "localhost")))
    # The client trusts the origin's CA only: the handshake succeeds only with the origin's own certificate.
    async with httpx2.AsyncClient(proxy=url, verify=origin.client_context(), trust_env=False) as client:
        response = await client.post(f"https://{LOOPBACK}:{origin.port}/anything", content=ALL_BYTES)
        again = await client.post(f"https://{LOOPBACK}:{origin.port}/again", content=b"x")  # same tunnel
    assert response.status_code == 200 and response.content == ALL_BYTES[::-1]
    assert again.status_code == 200
    assert origin.bodies == [ALL_BYTES, b"x"]
    assert not (tmp_path / "gateway-ca").exists()


async def tunnel_to_tcp_server(stack: AsyncExitStack, tmp_path: Path, serve: TcpHandler,
                               ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, bytes]:
    """A plain TCP server running `serve`, and a tunnel to it through a listener: (reader, writer, answer head)."""
    server = await asyncio.start_server(serve, LOOPBACK, 0)
    stack.push_async_callback(server.wait_closed)
    stack.callback(server.close)
    url = await stack.enter_async_context(running_listener(describe_request, forward_proxy(tmp_path)))
    return await open_tunnel(url, f"{LOOPBACK}:{server.sockets[0].getsockname()[1]}")


async def test_tunnel_carries_any_bytes_both_ways_with_half_close(stack: AsyncExitStack, tmp_path: Path) -> None:
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        data = await reader.read()  # until the client's EOF
        writer.write(data[::-1])
        await writer.drain()
        writer.close()

    reader, writer, head = await tunnel_to_tcp_server(stack, tmp_path, echo)
    assert head == b"HTTP/1.1 200 Connection Established\r\n\r\n"
    payload = ALL_BYTES * 64  # 1 MiB: more than any socket buffer, so back-pressure is exercised
    writer.write(payload)
    writer.write_eof()
    assert await asyncio.wait_for(reader.read(), 10) == payload[::-1]
    writer.close()


async def test_listed_host_is_read_with_a_gateway_certificate_and_served_by_the_handler_told_the_host(
        tmp_path: Path, stack: AsyncExitStack) -> None:
    proxy = forward_proxy(tmp_path, "localhost")
    url = await stack.enter_async_context(running_listener(describe_request, proxy))
    async with httpx2.AsyncClient(proxy=url, trust_env=False, http2=False,
                                  verify=_trusting(proxy)) as client:
        first = await client.post("https://localhost:8443/v1/messages?beta=true", content=b"inside")
        second = await client.get("https://localhost:8443/_gateway/health")
    assert first.json() == {"method": "POST", "raw_path": "/v1/messages?beta=true", "body": "inside",
                            "via": ["localhost", 8443, "default", "https://localhost:8443"], "alpn": "http/1.1"}
    assert second.json()["raw_path"] == "/_gateway/health"  # every path of the host is the host's
    assert second.json()["via"][0] == "localhost"


def _trusting(proxy: ForwardProxy) -> ssl.SSLContext:
    proxy.ca()  # `llm-gateway ca` makes it before a client is configured
    return ssl.create_default_context(cafile=str(proxy.ca_dir / "ca.pem"))


async def test_client_that_does_not_trust_the_ca_fails_and_one_line_says_how_to_trust_it(
        tmp_path: Path, stack: AsyncExitStack, caplog: pytest.LogCaptureFixture) -> None:
    url = await stack.enter_async_context(running_listener(describe_request, forward_proxy(tmp_path, "localhost")))
    caplog.set_level(logging.WARNING, "llm_gateway.proxy")
    async with httpx2.AsyncClient(proxy=url, trust_env=False) as client:
        for _ in range(2):
            with pytest.raises(httpx2.ConnectError):
                await client.get("https://localhost:8443/v1/models")
    await asyncio.sleep(0.1)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1  # not one per retry
    assert "localhost" in lines[0] and str(tmp_path / "gateway-ca" / "ca.pem") in lines[0]
    assert "NODE_EXTRA_CA_CERTS" in lines[0] and "llm-gateway ca" in lines[0]


async def error_of(url: str, head: bytes) -> tuple[int, dict]:
    answer = await raw_http(int(url.rsplit(":", 1)[1]), head)
    status = int(answer.split(b" ", 2)[1])
    return status, orjson.loads(answer.partition(b"\r\n\r\n")[2])["error"]


@pytest.mark.parametrize("head", [
    b"CONNECT api.anthropic.com HTTP/1.1\r\nHost: api.anthropic.com\r\n\r\n",
    b"CONNECT :443 HTTP/1.1\r\n\r\n",
    b"CONNECT api.anthropic.com:443 HTTP/1.1\r\nbroken header\r\n\r\n",
    b"CONNECT api.anthropic.com:443 HTTP/1.1\r\nX: " + b"y" * 20_000,
])
async def test_malformed_connect_gets_400(tmp_path: Path, stack: AsyncExitStack, head: bytes) -> None:
    url = await stack.enter_async_context(running_listener(describe_request, forward_proxy(tmp_path)))
    status, error = await error_of(url, head)
    assert (status, error["type"]) == (400, "bad_connect")


async def test_unreachable_host_gets_502_naming_it(tmp_path: Path, stack: AsyncExitStack) -> None:
    url = await stack.enter_async_context(running_listener(describe_request, forward_proxy(tmp_path)))
    authority = closed_port_url().removeprefix("http://")
    status, error = await error_of(url, f"CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n".encode())
    assert (status, error["type"], error["upstream"]) == (502, "upstream_unreachable", authority)
    assert authority in error["message"]


class _ElsewhereOnly(ForwardProxy):
    def admits(self, peername: object) -> bool:  # as if the client were on another machine
        return False


async def test_connect_from_another_machine_is_refused_unless_host_was_set(
        tmp_path: Path, stack: AsyncExitStack) -> None:
    proxy = _ElsewhereOnly(InterceptList(()), tmp_path)
    url = await stack.enter_async_context(running_listener(describe_request, proxy))
    status, error = await error_of(url, b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n")
    assert (status, error["type"]) == (403, "proxy_forbidden")
    assert not ForwardProxy(InterceptList(()), tmp_path).admits(("192.0.2.7", 5000))
    assert ForwardProxy(InterceptList(()), tmp_path).admits(("::ffff:127.0.0.1", 5000, 0, 0))
    assert ForwardProxy(InterceptList(()), tmp_path, allow_remote=True).admits(("192.0.2.7", 5000))


async def test_stop_ends_open_tunnels(tmp_path: Path) -> None:
    server = await asyncio.start_server(lambda r, w: None, LOOPBACK, 0)
    async with running_listener(describe_request, forward_proxy(tmp_path)) as url:
        reader, writer, head = await open_tunnel(url, f"{LOOPBACK}:{server.sockets[0].getsockname()[1]}")
        assert head.startswith(b"HTTP/1.1 200")
    assert await asyncio.wait_for(reader.read(), 5) == b""  # cut at stop, not left open
    writer.close()
    server.close()


async def test_tunnel_to_a_host_that_speaks_first_loses_nothing(tmp_path: Path, stack: AsyncExitStack) -> None:
    async def greet(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 hello first\r\n")  # before the client sends anything, like SMTP or SSH
        await writer.drain()
        writer.write((await reader.readline()).upper())
        await writer.drain()
        writer.close()

    reader, writer, head = await tunnel_to_tcp_server(stack, tmp_path, greet)
    assert head.startswith(b"HTTP/1.1 200")
    assert await asyncio.wait_for(reader.readline(), 5) == b"220 hello first\r\n"
    writer.write(b"ehlo\n")
    assert await asyncio.wait_for(reader.read(), 5) == b"EHLO\n"
    writer.close()
