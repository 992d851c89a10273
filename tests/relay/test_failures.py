"""Upstream failures become JSON errors the SDKs surface, or (once headers are out) a cut connection."""

from __future__ import annotations

import asyncio
import time
from contextlib import AsyncExitStack

import aiohttp
import anthropic
import openai
import pytest
from aiohttp import web
from yarl import URL

from llm_gateway.config import load_settings
from llm_gateway.server import Gateway
from tests.support.servers import closed_port_url, running_gateway, running_upstream, silent_upstream

_TIMEOUT_ENV = {"LLM_GATEWAY_READ_TIMEOUT": "0.5"}


async def _gateway(servers: AsyncExitStack, **env: str) -> Gateway:
    return await servers.enter_async_context(running_gateway(load_settings(env=env)))


async def _post_json(url: str) -> tuple[int, dict]:
    async with aiohttp.ClientSession() as client, client.post(url, data=b"{}") as response:
        return response.status, await response.json()


async def test_refused_upstream_gives_502_naming_it(servers: AsyncExitStack) -> None:
    dead = closed_port_url()
    gateway = await _gateway(servers, LLM_GATEWAY_UPSTREAM_ANTHROPIC=dead)

    status, error = await _post_json(gateway.url + "/v1/messages")

    assert status == 502
    assert error["type"] == "error"
    assert error["error"]["type"] == "upstream_unreachable"
    assert error["error"]["upstream"] == dead
    assert str(URL(dead).origin()) in error["error"]["message"]


async def test_an_error_names_the_upstream_without_the_credentials_in_its_url(servers: AsyncExitStack) -> None:
    dead = closed_port_url().replace("http://", "http://gateway-user:s3cret@")
    gateway = await _gateway(servers, LLM_GATEWAY_UPSTREAM_ANTHROPIC=dead)

    status, error = await _post_json(gateway.url + "/v1/messages")

    assert (status, error["error"]["type"]) == (502, "upstream_unreachable")
    assert error["error"]["upstream"] == dead.replace("gateway-user:s3cret", "REDACTED:REDACTED")
    assert "s3cret" not in str(error)
    # nor do the startup lines, which end up in logs
    assert f"anthropic  -> {error['error']['upstream']}" in gateway.describe() and "s3cret" not in gateway.describe()


async def test_silent_upstream_gives_504_after_read_timeout(servers: AsyncExitStack) -> None:
    url = await servers.enter_async_context(silent_upstream())
    gateway = await _gateway(servers, LLM_GATEWAY_UPSTREAM_OPENAI=url, **_TIMEOUT_ENV)

    started = time.monotonic()
    status, error = await asyncio.wait_for(_post_json(gateway.url + "/v1/chat/completions"), 3.0)

    assert status == 504
    assert error["error"]["type"] == "upstream_timeout"
    assert error["error"]["upstream"] == url
    assert 0.4 < time.monotonic() - started < 2.0


async def _stall_after_first_chunk(request: web.BaseRequest) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    await response.write(b"data: first\n\n")
    await asyncio.sleep(30)  # cancelled when the gateway gives up
    return response


async def test_upstream_stalling_mid_stream_past_read_timeout_cuts_client(servers: AsyncExitStack) -> None:
    url = await servers.enter_async_context(running_upstream(_stall_after_first_chunk))
    gateway = await _gateway(servers, LLM_GATEWAY_UPSTREAM_ANTHROPIC=url, **_TIMEOUT_ENV)

    async with aiohttp.ClientSession() as client, client.post(gateway.url + "/v1/messages", data=b"{}") as response:
        assert await response.content.readany() == b"data: first\n\n"
        with pytest.raises(aiohttp.ClientPayloadError):
            await asyncio.wait_for(response.content.read(), 3.0)


async def test_anthropic_sdk_surfaces_gateway_error_message(servers: AsyncExitStack) -> None:
    gateway = await _gateway(servers, LLM_GATEWAY_UPSTREAM_ANTHROPIC=closed_port_url())

    async with anthropic.AsyncAnthropic(base_url=gateway.url, api_key="test", max_retries=0) as client:
        with pytest.raises(anthropic.APIStatusError) as caught:
            await client.messages.create(model="m", max_tokens=1, messages=[{"role": "user", "content": "hi"}])

    assert caught.value.status_code == 502
    assert "could not be reached" in caught.value.message


async def test_openai_sdk_surfaces_gateway_error_message(servers: AsyncExitStack) -> None:
    url = await servers.enter_async_context(silent_upstream())
    gateway = await _gateway(servers, LLM_GATEWAY_UPSTREAM_OPENAI=url, **_TIMEOUT_ENV)

    async with openai.AsyncOpenAI(base_url=gateway.url + "/v1", api_key="test", max_retries=0) as client:
        with pytest.raises(openai.APIStatusError) as caught:
            await client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])

    assert caught.value.status_code == 504
    assert "did not answer in time" in caught.value.message


async def _cut_after_first_chunk(request: web.BaseRequest) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    await response.write(b"data: first\n\n")
    assert request.transport is not None
    request.transport.abort()  # the upstream goes away mid-stream, without the chunked body's end
    return response


async def test_upstream_going_away_mid_stream_cuts_client(servers: AsyncExitStack) -> None:
    url = await servers.enter_async_context(running_upstream(_cut_after_first_chunk))
    gateway = await _gateway(servers, LLM_GATEWAY_UPSTREAM_ANTHROPIC=url)

    async with aiohttp.ClientSession() as client, client.post(gateway.url + "/v1/messages", data=b"{}") as response:
        assert await response.content.readany() == b"data: first\n\n"
        with pytest.raises(aiohttp.ClientPayloadError):
            await asyncio.wait_for(response.content.read(), 3.0)
