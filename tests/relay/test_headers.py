"""Headers, method, path and query cross the gateway unchanged; hop-by-hop fields stop at it."""

from __future__ import annotations

import asyncio
import gzip
from contextlib import AsyncExitStack

import aiohttp
import pytest
from yarl import URL

from llm_gateway.config import Settings
from llm_gateway.server import Gateway
from llm_gateway.upstream.http1 import end_to_end
from llm_gateway.websocket_relay import forward_headers
from tests.support.servers import RecordingUpstream, raw_http, running_gateway, running_upstream

_END_TO_END = (
    ("Content-Type", "application/json"),
    ("Set-Cookie", "session=abc; Path=/; HttpOnly"),
    ("Set-Cookie", "region=eu; Path=/"),
    ("x-request-id", "req_123"),
    ("X-Custom-Thing", "spaced  value, \"quoted\""),
    ("anthropic-ratelimit-requests-remaining", "49"),
    ("Cache-Control", "no-store"),
)
_HOP_BY_HOP = (
    ("Connection", "x-hop-listed"),
    ("x-hop-listed", "dropped because Connection names it"),
    ("Keep-Alive", "timeout=5"),
    ("Proxy-Authenticate", "Basic"),
    ("Trailer", "x-checksum"),
    ("Upgrade", "h2c"),
)


async def _relay_to(servers: AsyncExitStack, upstream: RecordingUpstream) -> Gateway:
    """A gateway sending every request (force-all) to `upstream`."""
    url = await servers.enter_async_context(running_upstream(upstream.handle))
    return await servers.enter_async_context(running_gateway(Settings(catch_all=url, force_all=True)))


def _header_lines(raw_response: bytes) -> list[tuple[str, str]]:
    head = raw_response.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")[1:]
    return [(name, value.strip()) for name, _, value in (line.partition(":") for line in head)]


async def test_response_end_to_end_headers_arrive_unchanged_and_hop_by_hop_do_not(
    servers: AsyncExitStack,
) -> None:
    gateway = await _relay_to(servers, RecordingUpstream(headers=_END_TO_END + _HOP_BY_HOP))

    raw = await raw_http(gateway.port, b"GET /v1/models HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n")

    assert raw.startswith(b"HTTP/1.1 200 OK\r\n")
    received = _header_lines(raw)
    for field in _END_TO_END:
        assert received.count(field) == 1, field
    assert [v for k, v in received if k == "Set-Cookie"] == [v for k, v in _END_TO_END if k == "Set-Cookie"]
    names = {k.lower() for k, _ in received}
    assert not names & {"x-hop-listed", "keep-alive", "proxy-authenticate", "trailer", "upgrade"}
    assert [v for k, v in received if k.lower() == "connection"] == ["close"]  # the gateway's own, for this leg


async def test_response_without_content_type_gets_none_added(servers: AsyncExitStack) -> None:
    gateway = await _relay_to(servers, RecordingUpstream(status=204, body=b""))

    raw = await raw_http(gateway.port, b"POST /v1/traces/ingest HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n"
                                       b"Content-Length: 0\r\n\r\n")

    assert raw.startswith(b"HTTP/1.1 204 No Content\r\n")
    assert "content-type" not in {k.lower() for k, _ in _header_lines(raw)}


async def test_request_end_to_end_headers_arrive_unchanged_with_credentials_and_nothing_added(
    servers: AsyncExitStack,
) -> None:
    upstream = RecordingUpstream()
    gateway = await _relay_to(servers, upstream)
    end_to_end = [
        ("x-api-key", "sk-ant-secret"),
        ("Authorization", "Bearer sk-secret"),
        ("anthropic-version", "2023-06-01"),
        ("X-Stainless-Retry-Count", "0"),
        ("x-repeated", "one"),
        ("x-repeated", "two"),
    ]
    hop_by_hop = [("Connection", "close, x-hop-listed"), ("x-hop-listed", "1"), ("Keep-Alive", "timeout=5"),
                  ("TE", "trailers"), ("Proxy-Authorization", "Basic cHJveHk6cHc=")]
    head = "".join(f"{k}: {v}\r\n" for k, v in end_to_end + hop_by_hop).encode()

    await raw_http(gateway.port, b"POST /v1/messages HTTP/1.1\r\nHost: gw\r\n" + head
                   + b"Content-Length: 2\r\n\r\n{}")

    (arrived,) = upstream.arrived
    assert [h for h in arrived.headers if h[0].lower() not in ("host", "content-length")] == end_to_end
    assert arrived.values("Content-Length") == ["2"]
    assert arrived.body == b"{}"


async def test_request_without_auto_headers_gets_none_added(servers: AsyncExitStack) -> None:
    upstream = RecordingUpstream()
    gateway = await _relay_to(servers, upstream)
    skip = ("User-Agent", "Accept", "Accept-Encoding", "Content-Type")

    async with aiohttp.ClientSession(skip_auto_headers=skip) as client:
        for method, body in (("GET", None), ("POST", b'{"a": 1}'), ("DELETE", None)):
            async with client.request(method, gateway.url + "/v1/files/f1", data=body) as response:
                assert response.status == 200

    for arrived in upstream.arrived:
        assert arrived.header_names() <= {"host", "content-length"}, arrived
    assert [a.body for a in upstream.arrived] == [b"", b'{"a": 1}', b""]


@pytest.mark.parametrize(
    ("method", "target"),
    [
        ("GET", "/v1/models?limit=2&after=m%3A1"),
        ("POST", "/model/anthropic.claude-3-sonnet-20240229-v1%3A0/converse"),
        ("PUT", "/odd/%7Euser/a%2Fb?q=a+b&q=%2B&&flag&x=1=2;y&=&z=%zz"),
        ("PATCH", "/v1/things/x?%E2%9C%93=%F0%9F%98%80"),
        ("DELETE", "/v1/files/file-abc?a"),
        ("OPTIONS", "/v1/messages"),
        ("PROPFIND", "/dav/x"),
    ],
)
async def test_method_path_and_query_arrive_unchanged(
    servers: AsyncExitStack, method: str, target: str
) -> None:
    upstream = RecordingUpstream()
    gateway = await _relay_to(servers, upstream)

    request = f"{method} {target} HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n"
    raw = await raw_http(gateway.port, request.encode())

    assert raw.startswith(b"HTTP/1.1 200 OK\r\n")
    (arrived,) = upstream.arrived
    assert (arrived.method, arrived.raw_path) == (method, target)


async def test_gzip_response_passes_compressed_with_its_header(servers: AsyncExitStack) -> None:
    plain = b'{"id": "msg_1", "content": [{"type": "text", "text": "' + "é" .encode() * 2000 + b'"}]}'
    compressed = gzip.compress(plain)
    upstream = RecordingUpstream(headers=[("Content-Type", "application/json"), ("Content-Encoding", "gzip")],
                                 body=compressed)
    gateway = await _relay_to(servers, upstream)

    async with aiohttp.ClientSession(auto_decompress=False) as client, client.post(
        URL(gateway.url + "/v1/messages"), data=b"{}", headers={"Accept-Encoding": "gzip"}
    ) as response:
        body = await response.read()

    assert body == compressed
    assert response.headers["Content-Encoding"] == "gzip"
    assert response.headers["Content-Length"] == str(len(compressed))
    assert upstream.arrived[0].values("Accept-Encoding") == ["gzip"]


async def test_utf8_header_values_cross_byte_exact_both_ways(servers: AsyncExitStack) -> None:
    upstream = RecordingUpstream(headers=[("x-title", "Café ✓ 日本")])
    gateway = await _relay_to(servers, upstream)

    raw = await raw_http(gateway.port, "GET /v1/models HTTP/1.1\r\nHost: gw\r\nx-user: Zoë ✓\r\n"
                                       "Connection: close\r\n\r\n".encode())

    assert "x-title: Café ✓ 日本\r\n".encode() in raw
    assert upstream.arrived[0].values("x-user") == ["Zoë ✓"]


async def test_expect_100_continue_is_answered_before_the_body_is_sent(servers: AsyncExitStack) -> None:
    upstream = RecordingUpstream()
    gateway = await _relay_to(servers, upstream)

    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
    try:
        writer.write(b"POST /v1/messages HTTP/1.1\r\nHost: gw\r\nContent-Length: 2\r\nExpect: 100-continue\r\n"
                     b"Connection: close\r\n\r\n")
        interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 0.5)  # curl waits 1 s, then sends anyway
        writer.write(b"{}")
        final = await asyncio.wait_for(reader.read(), 2.0)
    finally:
        writer.close()

    assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
    assert final.startswith(b"HTTP/1.1 200 OK\r\n")
    assert upstream.arrived[0].body == b"{}"
    assert "expect" not in upstream.arrived[0].header_names()


async def test_expect_100_continue_over_limit_gets_413_without_continue(servers: AsyncExitStack) -> None:
    url = await servers.enter_async_context(running_upstream(RecordingUpstream().handle))
    settings = Settings(upstreams={"anthropic": url}, max_body_bytes=10)
    gateway = await servers.enter_async_context(running_gateway(settings))

    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
    try:
        writer.write(b"POST /v1/messages HTTP/1.1\r\nHost: gw\r\nContent-Length: 11\r\nExpect: 100-continue\r\n"
                     b"Connection: close\r\n\r\n")
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 2.0)
    finally:
        writer.close()

    assert head.startswith(b"HTTP/1.1 413 ")


@pytest.mark.parametrize("status", [301, 307, 400, 401, 429, 500, 529])
async def test_upstream_status_and_body_pass_unchanged(servers: AsyncExitStack, status: int) -> None:
    body = b'{"type":"error","error":{"type":"overloaded_error","message":"busy"}}'
    upstream = RecordingUpstream(status=status, body=body,
                                 headers=[("Location", "https://elsewhere.test/"), ("Retry-After", "7")])
    gateway = await _relay_to(servers, upstream)

    async with aiohttp.ClientSession() as client, client.post(
        gateway.url + "/v1/messages", data=b"{}", allow_redirects=False
    ) as response:
        received = await response.read()

    assert (response.status, received) == (status, body)
    assert response.headers["Location"] == "https://elsewhere.test/"
    assert response.headers["Retry-After"] == "7"
    assert len(upstream.arrived) == 1


def test_end_to_end_fields_are_the_bytes_received_less_the_hop_by_hop_and_those_connection_lists() -> None:
    received = [(b"X-Caf\xe9", b"\xe9t\xe9"), (b"Connection", b"x-same, close"), (b"X-Same", b"a"),
                (b"Keep-Alive", b"5"), (b"x-a", b"1"), (b"X-A", b"2")]
    assert end_to_end(received) == [(b"X-Caf\xe9", b"\xe9t\xe9"), (b"x-a", b"1"), (b"X-A", b"2")]
    # as text, for aiohttp's client (WebSockets, LLM_GATEWAY_HTTP_SPANS=aiohttp): UTF-8, else Latin-1
    assert list(forward_headers(received).items()) == [("X-Caf\xe9", "\xe9t\xe9"), ("x-a", "1"), ("X-A", "2")]
