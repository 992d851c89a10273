"""Requests the relay refuses rather than pass on altered, and what it logs about a request that is not HTTP: the
cases the hostile-HTTP fuzz test (reliability/test_hostile_http.py) found, one by one."""

from __future__ import annotations

import asyncio
import logging

import orjson
import pytest

from llm_gateway.config import Settings
from tests.support.raw_upstream import raw_upstream, read_request
from tests.support.servers import RecordingUpstream, raw_http, running_gateway, running_upstream


async def _send(servers, request: bytes) -> tuple[bytes, RecordingUpstream]:
    upstream = RecordingUpstream()
    url = await servers.enter_async_context(running_upstream(upstream.handle))
    gateway = await servers.enter_async_context(running_gateway(Settings(catch_all=url, force_all=True)))
    return await raw_http(gateway.port, request), upstream


def _error_type(response: bytes) -> str:
    return orjson.loads(response.split(b"\r\n\r\n", 1)[1])["error"]["type"]


async def test_a_header_value_that_is_not_utf8_is_relayed_as_its_bytes(servers):
    # The relay's own client writes the fields as the bytes they came in: the Latin-1 byte \xe9 is not read as text
    # and written back as UTF-8 (\xc3\xa9), which is what aiohttp's client did (see test_upstream_spans.py).
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader, upstream)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nx-seen: d\xe9j\xe0\r\n\r\n{}")

    upstream = await servers.enter_async_context(raw_upstream(answer))
    gateway = await servers.enter_async_context(running_gateway(Settings(catch_all=upstream.url, force_all=True)))
    response = await raw_http(gateway.port, b"POST /v1/messages HTTP/1.1\r\nHost: g\r\nx-title: caf\xe9\r\n"
                                            b"Content-Length: 2\r\nConnection: close\r\n\r\n{}")
    assert response.startswith(b"HTTP/1.1 200 ")
    assert b"\r\nx-title: caf\xe9\r\n" in upstream.requests[0]
    assert b"\r\nx-seen: d\xe9j\xe0\r\n" in response  # and back to the client the same


async def test_a_utf8_header_value_is_relayed_byte_for_byte(servers):
    response, upstream = await _send(servers, b"POST /v1/messages HTTP/1.1\r\nHost: g\r\nx-title: caf\xc3\xa9\r\n"
                                               b"Content-Length: 2\r\nConnection: close\r\n\r\n{}")
    assert response.startswith(b"HTTP/1.1 200 ")
    assert upstream.arrived[0].values("x-title") == ["café"]


@pytest.mark.parametrize("coding", [b"gzip, chunked", b"deflate,chunked"])
async def test_a_transfer_coding_besides_chunked_is_not_implemented(servers, coding: bytes):
    # The body would go on with its chunks undone but its gzip coding lost with the field that named it.
    response, upstream = await _send(servers, b"POST /v1/messages HTTP/1.1\r\nHost: g\r\nTransfer-Encoding: " + coding
                                     + b"\r\nConnection: close\r\n\r\n2\r\n{}\r\n0\r\n\r\n")
    assert response.startswith(b"HTTP/1.1 501 ")
    assert _error_type(response) == "transfer_coding_not_implemented"
    assert upstream.arrived == []


@pytest.mark.parametrize("request_bytes", [
    b"POST /v1/messages HTTP/1.1\r\nHost: g\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: "
    b"dGhlIHNhbXBsZSBub25jZQ==\r\nContent-Length: 2\r\n\r\n{}",
    b"GET /v1/messages HTTP/1.1\r\nHost: g\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
], ids=["post", "no-key"])
async def test_an_upgrade_that_is_no_websocket_handshake_is_relayed_as_the_plain_request_it_is(
    servers, request_bytes: bytes
):
    # It was opened upstream as a WebSocket GET: a POST's method and body never reached the upstream.
    response, upstream = await _send(servers, request_bytes.replace(b"\r\n\r\n", b"\r\nx-end: 1\r\n\r\n", 1)
                                     .replace(b"Connection: Upgrade", b"Connection: Upgrade, close"))
    assert response.startswith(b"HTTP/1.1 200 ")
    (arrived,) = upstream.arrived
    method, _, _ = request_bytes.partition(b" ")
    assert arrived.method == method.decode()
    assert arrived.body == (b"{}" if method == b"POST" else b"")
    assert not {"upgrade", "connection", "sec-websocket-version"} & arrived.header_names()


@pytest.mark.parametrize("target", [b"/v1/messages", b"127.0.0.1:9"])
async def test_a_connect_after_other_requests_is_refused_and_the_connection_closed(servers, target: bytes):
    # A CONNECT with a path was relayed as a CONNECT to the upstream's own address, and its answer left the
    # connection hanging as a tunnel.
    response, upstream = await _send(servers, b"GET /v1/models HTTP/1.1\r\nHost: g\r\n\r\nCONNECT " + target
                                     + b" HTTP/1.1\r\nHost: g\r\n\r\n")
    first, second = response.split(b"HTTP/1.1 ")[1:]
    assert first.startswith(b"200 ") and second.startswith(b"400 ")  # and raw_http read to the close
    assert b"Connection: close" in second
    assert [a.method for a in upstream.arrived] == ["GET"]


async def test_a_request_that_is_not_http_is_logged_in_one_debug_line_without_its_bytes(servers, caplog):
    with caplog.at_level(logging.DEBUG):
        response, upstream = await _send(servers, b"POST /v1/messages HTTP/1.1\r\nHost: g\r\n"
                                                   b"x-api-key: sk-ant-secret\x01\r\n\r\n")
    assert response.startswith(b"HTTP/1.0 400 ")
    assert upstream.arrived == []
    assert "sk-ant-secret" not in caplog.text
    assert [r.levelname for r in caplog.records if r.name == "aiohttp.server"] == ["DEBUG"]
