"""The official SDKs with no base URL, sent through the gateway as their HTTPS proxy (HTTPS_PROXY and the CA
bundle in SSL_CERT_FILE, as `llm-gateway ca` says): the gateway reads api.anthropic.com / api.openai.com and relays
to the named upstream override, here a replay of recorded traffic. Results, bytes and spans are those of direct
traffic."""

from __future__ import annotations

import dataclasses
import ssl
from collections.abc import Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import httpx2
from anthropic import AsyncAnthropic
from openai import AsyncOpenAI

from llm_gateway.recordings import Fixture, load
from tests.proxy.conftest import Proxied, ProxiedGateway
from tests.support import FIXTURES
from tests.support.servers import RecordingUpstream, running_replay, running_upstream

ANTHROPIC_STREAM = FIXTURES / "anthropic" / "tools-streaming.json"
OPENAI_STREAM = FIXTURES / "openai_chat" / "tool-loop-streaming.json"
MESSAGES = [{"role": "user", "content": "hi"}]


def first_exchange_twice(path: Path) -> Fixture:
    """The recording's first exchange, to be answered once directly and once through the proxy."""
    fixture = load(path)
    return dataclasses.replace(fixture, exchanges=fixture.exchanges[:1] * 2)


async def anthropic_events(client: AsyncAnthropic) -> list[Any]:
    async with client:
        stream = await client.messages.create(model="claude-test", max_tokens=64, messages=MESSAGES, stream=True)
        return [event.model_dump() async for event in stream]


async def openai_chunks(client: AsyncOpenAI) -> list[Any]:
    async with client:
        stream = await client.chat.completions.create(model="gpt-test", messages=MESSAGES, stream=True)
        return [chunk.model_dump() async for chunk in stream]


async def test_anthropic_sdk_with_https_proxy_gets_what_it_gets_directly(
        servers: AsyncExitStack, proxied_gateway: ProxiedGateway, client_env: Callable[[Proxied], None]) -> None:
    replay = await servers.enter_async_context(running_replay([first_exchange_twice(ANTHROPIC_STREAM)]))
    proxied = await servers.enter_async_context(proxied_gateway(replay.url))
    direct = await anthropic_events(AsyncAnthropic(base_url=proxied.url, api_key="sk-test", max_retries=0))
    client_env(proxied)
    through = await anthropic_events(AsyncAnthropic(api_key="sk-test", max_retries=0))
    assert through == direct
    assert [e["type"] for e in through][:1] == ["message_start"]
    assert [r.path for r in replay.requests] == ["/v1/messages", "/v1/messages"]
    assert replay.requests[0].body == replay.requests[1].body


async def test_openai_sdk_with_https_proxy_gets_what_it_gets_directly(
        servers: AsyncExitStack, proxied_gateway: ProxiedGateway, client_env: Callable[[Proxied], None]) -> None:
    replay = await servers.enter_async_context(running_replay([first_exchange_twice(OPENAI_STREAM)]))
    proxied = await servers.enter_async_context(proxied_gateway(replay.url))
    direct = await openai_chunks(AsyncOpenAI(base_url=proxied.url + "/v1", api_key="sk-test", max_retries=0))
    client_env(proxied)
    through = await openai_chunks(AsyncOpenAI(api_key="sk-test", max_retries=0))
    assert through == direct and len(through) > 3
    assert [r.path for r in replay.requests] == ["/v1/chat/completions"] * 2


def trusting(proxied: Proxied) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(proxied.bundle))


async def test_bytes_and_upstream_request_identical_to_direct(
        servers: AsyncExitStack, proxied_gateway: ProxiedGateway) -> None:
    answer = b"event: message_start\ndata: {\"x\": \"\xc3\xa9\"}\n\n" * 50 + bytes(range(256))
    upstream = RecordingUpstream(headers=[("Content-Type", "text/event-stream"), ("X-Upstream", "1")], body=answer)
    url = await servers.enter_async_context(running_upstream(upstream.handle))
    proxied = await servers.enter_async_context(proxied_gateway(url))
    body = b'{"model":"claude-test","messages":[{"role":"user","content":"h\xc3\xa9"}],"stream":true}'
    headers = {"x-api-key": "sk-test", "anthropic-version": "2023-06-01", "X-Custom": "kept"}
    async with httpx2.AsyncClient(trust_env=False) as client:
        direct = await client.post(proxied.url + "/v1/messages?beta=true", content=body, headers=headers)
    async with httpx2.AsyncClient(proxy=proxied.url, verify=trusting(proxied), trust_env=False) as client:
        through = await client.post("https://api.anthropic.com/v1/messages?beta=true", content=body,
                                    headers=headers)
    assert through.status_code == direct.status_code == 200
    assert through.content == direct.content == answer
    drop = {"date"}
    assert [(k, v) for k, v in through.headers.raw if k.decode().lower() not in drop] == \
        [(k, v) for k, v in direct.headers.raw if k.decode().lower() not in drop]
    first, second = upstream.arrived
    assert (second.method, second.raw_path, second.body) == (first.method, first.raw_path, first.body)
    assert second.headers == first.headers  # Host too: both are the upstream's own


async def test_plain_http_proxy_requests_are_relayed(servers: AsyncExitStack, proxied_gateway: ProxiedGateway) -> None:
    override = RecordingUpstream(body=b'{"id":"chatcmpl-1"}')
    url = await servers.enter_async_context(running_upstream(override.handle))
    elsewhere = RecordingUpstream(body=b"plain origin")
    other = await servers.enter_async_context(running_upstream(elsewhere.handle))
    proxied = await servers.enter_async_context(proxied_gateway(url))
    async with httpx2.AsyncClient(proxy=proxied.url, trust_env=False) as client:
        read = await client.post("http://api.openai.com/v1/chat/completions?x=%2F", content=b'{"model":"m"}')
        passed = await client.get(other + "/any/path?q=1")
        health = await client.get(proxied.url + "/_gateway/health")  # the gateway itself: a direct request
    assert (read.status_code, read.content) == (200, b'{"id":"chatcmpl-1"}')
    assert override.arrived[0].raw_path == "/v1/chat/completions?x=%2F"
    assert (passed.status_code, passed.content) == (200, b"plain origin")
    assert elsewhere.arrived[0].raw_path == "/any/path?q=1"
    assert health.json()["status"] == "ok"
