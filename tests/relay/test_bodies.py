"""Request bodies: large ones arrive byte-identical, ones over the limit get a 413 the SDKs can read."""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack

import aiohttp
import pytest

from llm_gateway.config import load_settings
from llm_gateway.server import Gateway
from tests.support.servers import RecordingUpstream, raw_http, running_gateway, running_upstream

_LIMIT = 1024


async def _relay_to(servers: AsyncExitStack, upstream: RecordingUpstream, **env: str) -> Gateway:
    url = await servers.enter_async_context(running_upstream(upstream.handle))
    settings = load_settings(env={"LLM_GATEWAY_UPSTREAM_ANTHROPIC": url, **env})
    return await servers.enter_async_context(running_gateway(settings))


async def _in_pieces(data: bytes, size: int) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def test_20_mib_body_arrives_byte_identical(servers: AsyncExitStack) -> None:
    upstream = RecordingUpstream()
    gateway = await _relay_to(servers, upstream)
    body = os.urandom(20 * 1024 * 1024)

    async with aiohttp.ClientSession() as client, client.post(gateway.url + "/v1/messages", data=body) as response:
        assert response.status == 200

    (arrived,) = upstream.arrived
    assert hashlib.sha256(arrived.body).hexdigest() == hashlib.sha256(body).hexdigest()
    assert arrived.values("Content-Length") == [str(len(body))]


async def test_chunked_request_body_arrives_byte_identical(servers: AsyncExitStack) -> None:
    upstream = RecordingUpstream()
    gateway = await _relay_to(servers, upstream)
    body = os.urandom(300_000)

    async with aiohttp.ClientSession() as client, client.post(
        gateway.url + "/v1/messages", data=_in_pieces(body, 7777)
    ) as response:
        assert response.status == 200

    assert upstream.arrived[0].body == body


@pytest.mark.parametrize("size", [_LIMIT - 1, _LIMIT])
async def test_body_up_to_limit_is_relayed(servers: AsyncExitStack, size: int) -> None:
    upstream = RecordingUpstream()
    gateway = await _relay_to(servers, upstream, LLM_GATEWAY_MAX_BODY_BYTES=str(_LIMIT))

    async with aiohttp.ClientSession() as client, client.post(
        gateway.url + "/v1/messages", data=b"x" * size
    ) as response:
        assert response.status == 200

    assert len(upstream.arrived[0].body) == size


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
async def test_body_over_limit_gets_413_json_and_upstream_is_not_called(
    servers: AsyncExitStack, chunked: bool
) -> None:
    upstream = RecordingUpstream()
    gateway = await _relay_to(servers, upstream, LLM_GATEWAY_MAX_BODY_BYTES=str(_LIMIT))
    body = b"x" * (_LIMIT + 1)

    async with aiohttp.ClientSession() as client, client.post(
        gateway.url + "/v1/messages", data=_in_pieces(body, 100) if chunked else body
    ) as response:
        error = await response.json()

    assert response.status == 413
    assert error["type"] == "error"
    assert error["error"]["type"] == "request_too_large"
    assert str(_LIMIT) in error["error"]["message"]
    assert "LLM_GATEWAY_MAX_BODY_BYTES" in error["error"]["message"]
    assert upstream.arrived == []


@pytest.mark.parametrize("size", [_LIMIT, _LIMIT + 1])
async def test_a_chunked_body_that_came_whole_with_its_head_is_held_to_the_limit(
    servers: AsyncExitStack, size: int
) -> None:
    # One write: the relay finds the whole body read already and takes it without waiting (no Content-Length)
    upstream = RecordingUpstream()
    gateway = await _relay_to(servers, upstream, LLM_GATEWAY_MAX_BODY_BYTES=str(_LIMIT))
    body = os.urandom(size)
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (body[:300], body[300:]))
    response = await raw_http(gateway.port, b"POST /v1/messages HTTP/1.1\r\nHost: g\r\nTransfer-Encoding: chunked\r\n"
                                            b"Connection: close\r\n\r\n" + chunks + b"0\r\n\r\n")
    if size <= _LIMIT:
        assert response.startswith(b"HTTP/1.1 200 ") and upstream.arrived[0].body == body
    else:
        assert response.startswith(b"HTTP/1.1 413 ") and upstream.arrived == []
