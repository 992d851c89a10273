"""The front end's connections over real sockets: which requests it serves and which it leaves to aiohttp, in order
on one connection; keep-alive, pipelining, the idle limit and the shutdown grace."""

from __future__ import annotations

import asyncio
import socket
from contextlib import AsyncExitStack

import aiohttp
import pytest
from aiohttp import web

from llm_gateway.config import ConfigError, Settings
from llm_gateway.front import connection as front_connection
from llm_gateway.server import Gateway
from tests.support.servers import LOOPBACK, RecordingUpstream, held_stream, running_gateway, running_upstream

_WAIT = 5.0


def _connections(gateway: Gateway) -> set:
    front = gateway.runner.server.front  # type: ignore[union-attr]
    return front.connections if front is not None else set()


async def _gateway(servers: AsyncExitStack, upstream: RecordingUpstream | None = None,
                   env: dict[str, str] | None = None) -> tuple[Gateway, RecordingUpstream]:
    upstream = upstream or RecordingUpstream(headers=[("Content-Type", "application/json")])
    url = await servers.enter_async_context(running_upstream(upstream.handle))
    gateway = await servers.enter_async_context(running_gateway(Settings(catch_all=url, force_all=True), env))
    return gateway, upstream


async def _answers(reader: asyncio.StreamReader, count: int) -> list[tuple[bytes, bytes]]:
    """`count` answers with Content-Length bodies: (status line, body) each."""
    answers = []
    for _ in range(count):
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), _WAIT)
        length = int(head.lower().split(b"\r\ncontent-length:")[1].split(b"\r\n")[0])
        answers.append((head.split(b"\r\n")[0], await reader.readexactly(length)))
    return answers


async def test_sdk_requests_on_a_kept_alive_connection_are_served_by_the_front_end(servers) -> None:
    gateway, upstream = await _gateway(servers)
    async with aiohttp.ClientSession() as client:
        for n in range(3):
            async with client.post(f"{gateway.url}/v1/messages?n={n}", data=b'{"n":%d}' % n) as response:
                assert response.status == 200 and await response.read() == upstream.body
        assert len(_connections(gateway)) == 1  # one connection, never handed to aiohttp
    assert [a.raw_path for a in upstream.arrived] == [f"/v1/messages?n={n}" for n in range(3)]
    assert [a.body for a in upstream.arrived] == [b'{"n":%d}' % n for n in range(3)]


async def test_pipelined_requests_are_answered_in_order_and_one_not_served_hands_the_connection_over(
    servers,
) -> None:
    gateway, upstream = await _gateway(servers)
    reader, writer = await asyncio.open_connection(LOOPBACK, gateway.port)
    try:
        writer.write(b"POST /v1/one HTTP/1.1\r\nHost: g\r\nContent-Length: 3\r\n\r\none"
                     b"POST /v1/two HTTP/1.1\r\nHost: g\r\nContent-Length: 3\r\n\r\ntwo")
        assert [line for line, _ in await _answers(reader, 2)] == [b"HTTP/1.1 200 OK"] * 2
        assert len(_connections(gateway)) == 1
        # the gateway's own endpoint is aiohttp's to answer: the connection is aiohttp's from then on, and the
        # requests after it are relayed just the same
        writer.write(b"GET /_gateway/health HTTP/1.1\r\nHost: g\r\n\r\n"
                     b"POST /v1/three HTTP/1.1\r\nHost: g\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nthree\r\n0\r\n\r\n"
                     b"POST /v1/four HTTP/1.1\r\nHost: g\r\nContent-Length: 4\r\n\r\nfour")
        (health, status), *relayed = await _answers(reader, 3)
        assert health == b"HTTP/1.1 200 OK" and b'"status":"ok"' in status
        assert [line for line, _ in relayed] == [b"HTTP/1.1 200 OK"] * 2
        assert _connections(gateway) == set()
    finally:
        writer.close()
    assert [(a.raw_path, a.body) for a in upstream.arrived] == [
        ("/v1/one", b"one"), ("/v1/two", b"two"), ("/v1/three", b"three"), ("/v1/four", b"four")]


async def test_a_request_head_that_comes_a_byte_at_a_time_is_relayed(servers) -> None:
    gateway, upstream = await _gateway(servers)
    request = b"POST /v1/messages HTTP/1.1\r\nHost: g\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}"
    reader, writer = await asyncio.open_connection(LOOPBACK, gateway.port)
    try:
        for byte in request:
            writer.write(bytes([byte]))
            await writer.drain()
        answer = await asyncio.wait_for(reader.read(), _WAIT)
    finally:
        writer.close()
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n") and b"\r\nConnection: close\r\n" in answer
    assert [(a.raw_path, a.body) for a in upstream.arrived] == [("/v1/messages", b"{}")]


async def test_an_idle_kept_alive_connection_is_closed(servers, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(front_connection, "KEEP_ALIVE_S", 0.1)
    gateway, _ = await _gateway(servers)
    reader, writer = await asyncio.open_connection(LOOPBACK, gateway.port)
    try:
        writer.write(b"GET /v1/models HTTP/1.1\r\nHost: g\r\n\r\n")
        assert [line for line, _ in await _answers(reader, 1)] == [b"HTTP/1.1 200 OK"]
        assert await asyncio.wait_for(reader.read(), 1.0) == b""  # closed by the gateway within two periods
    finally:
        writer.close()


async def test_a_stream_in_flight_at_shutdown_ends_whole_and_idle_connections_close_at_once(servers) -> None:
    release = asyncio.Event()
    stream = held_stream(release)

    async def models_or_stream(request: web.BaseRequest) -> web.StreamResponse:
        return web.json_response({"data": []}) if request.path == "/v1/models" else await stream(request)

    url = await servers.enter_async_context(running_upstream(models_or_stream))
    gateway = await Gateway.start(Settings(host=LOOPBACK, port=0, catch_all=url, force_all=True), env={})
    idle_reader, idle_writer = await asyncio.open_connection(LOOPBACK, gateway.port)
    idle_writer.write(b"GET /v1/models HTTP/1.1\r\nHost: g\r\n\r\n")
    assert [line for line, _ in await _answers(idle_reader, 1)] == [b"HTTP/1.1 200 OK"]
    async with aiohttp.ClientSession() as client:
        response = await client.post(gateway.url + "/v1/messages", data=b"{}")
        assert await asyncio.wait_for(response.content.readany(), _WAIT) == b"data: first\n\n"
        stopping = asyncio.create_task(gateway.stop(telemetry_wait_s=0))
        assert await asyncio.wait_for(idle_reader.read(), 1.0) == b""  # closed at once
        assert not stopping.done()  # waiting for the stream in flight
        release.set()
        assert await asyncio.wait_for(response.content.read(), _WAIT) == b"data: last\n\n"
        assert response.headers.get("Connection") is None  # its head was out before the shutdown began
        await asyncio.wait_for(stopping, _WAIT)
    idle_writer.close()


async def test_the_aiohttp_front_serves_every_request_when_asked_to(servers) -> None:
    gateway, upstream = await _gateway(servers, env={"LLM_GATEWAY_FRONT": "aiohttp"})
    async with aiohttp.ClientSession() as client, client.post(gateway.url + "/v1/messages", data=b"{}") as response:
        assert response.status == 200 and await response.read() == upstream.body
        assert gateway.runner.server.front is None  # type: ignore[union-attr]
    with pytest.raises(ConfigError, match="LLM_GATEWAY_FRONT"):
        await Gateway.start(Settings(host=LOOPBACK, port=0), env={"LLM_GATEWAY_FRONT": "fast"})


async def test_a_client_that_reads_slowly_gets_a_large_stream_whole(servers) -> None:
    events = [b"data: %06d %s\n\n" % (n, b"x" * 1000) for n in range(4000)]  # about 4 MiB

    async def large_stream(request: web.BaseRequest) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for event in events:
            await response.write(event)
        return response

    url = await servers.enter_async_context(running_upstream(large_stream))
    gateway = await servers.enter_async_context(running_gateway(Settings(catch_all=url, force_all=True)))
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connecting: a small window
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, (LOOPBACK, gateway.port))
    reader, writer = await asyncio.open_connection(sock=sock, limit=2**24)
    try:
        writer.write(b"POST /v1/messages HTTP/1.1\r\nHost: g\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}")
        await asyncio.sleep(0.3)  # not reading: the gateway's buffer to this client fills, the upstream is held
        answer = await asyncio.wait_for(reader.read(), _WAIT)
    finally:
        writer.close()
    head, _, chunked = answer.partition(b"\r\n\r\n")
    assert b"Transfer-Encoding: chunked" in head
    body, rest = bytearray(), chunked
    while (size := int(rest[: rest.index(b"\r\n")], 16)) > 0:
        start = rest.index(b"\r\n") + 2
        body += rest[start : start + size]
        rest = rest[start + size + 2 :]
    assert bytes(body) == b"".join(events)


async def test_a_streamed_answers_head_is_not_held_for_its_first_chunk(servers) -> None:
    head_seen = asyncio.Event()

    async def head_first(request: web.BaseRequest) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await head_seen.wait()  # the client has the head before any body byte was sent
        await response.write(b"data: first\n\n")
        return response

    url = await servers.enter_async_context(running_upstream(head_first))
    gateway = await servers.enter_async_context(running_gateway(Settings(catch_all=url, force_all=True)))
    async with aiohttp.ClientSession() as client:
        response = await asyncio.wait_for(client.post(gateway.url + "/v1/messages", data=b"{}"), _WAIT)
        assert response.status == 200 and response.headers["Content-Type"] == "text/event-stream"
        head_seen.set()
        assert await asyncio.wait_for(response.content.read(), _WAIT) == b"data: first\n\n"
