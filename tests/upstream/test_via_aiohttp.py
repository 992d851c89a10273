"""The aiohttp client behind `LLM_GATEWAY_HTTP_SPANS=aiohttp` answers the relay as the gateway's own client does:
the same calls, and the same errors for the same upstream failures."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest

from llm_gateway.upstream.connection import UpstreamClosed, UpstreamUnreachable
from llm_gateway.upstream.via_aiohttp import AiohttpUpstream
from tests.support.raw_upstream import answer_once, body_of, raw_upstream


@pytest.fixture
async def upstream_client() -> AsyncIterator[AiohttpUpstream]:
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=2.0, sock_read=0.3)
    async with aiohttp.ClientSession(timeout=timeout, auto_decompress=False) as session:
        yield AiohttpUpstream(session)


async def test_an_answer_comes_whole_and_its_connection_goes_back(upstream_client: AiohttpUpstream) -> None:
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Up: 1\r\n\r\nhello"
    async with raw_upstream(answer_once(answer, then_close=False)) as server:
        response = await upstream_client.request("POST", server.url + "/v1", [(b"X-Key", b"k")], b"{}")
        assert (response.status, response.reason, response.headers["X-Up"]) == (200, "OK", "1")
        assert response.whole_body() is None  # read as it comes
        assert await body_of(response) == b"hello"
        assert response.at_eof()
        response.release()


async def test_a_body_cut_short_is_an_upstream_error(upstream_client: AiohttpUpstream) -> None:
    async with raw_upstream(answer_once(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhalf!")) as server:
        response = await upstream_client.request("GET", server.url, [], None)
        with pytest.raises(UpstreamClosed):
            await body_of(response)
        response.release()


async def test_silence_is_a_timeout(upstream_client: AiohttpUpstream) -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()

    async with raw_upstream(silent) as server:
        with pytest.raises(TimeoutError):
            await upstream_client.request("POST", server.url, [], b"{}")


async def test_a_refused_connection_is_unreachable(upstream_client: AiohttpUpstream) -> None:
    async with raw_upstream(lambda reader, writer: reader.read()) as server:
        url = server.url
    with pytest.raises(UpstreamUnreachable):
        await upstream_client.request("GET", url, [], None)
