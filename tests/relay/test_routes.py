"""Which upstream a live request reaches, the 404 for paths nothing recognizes, and the health endpoint."""

from __future__ import annotations

from contextlib import AsyncExitStack

import aiohttp
import pytest

from llm_gateway.config import load_settings
from llm_gateway.server import Gateway
from tests.support.servers import RecordingUpstream, closed_port_url, running_gateway, running_upstream


async def _upstream(servers: AsyncExitStack) -> tuple[RecordingUpstream, str]:
    upstream = RecordingUpstream()
    return upstream, await servers.enter_async_context(running_upstream(upstream.handle))


async def _gateway(servers: AsyncExitStack, env: dict[str, str]) -> Gateway:
    return await servers.enter_async_context(running_gateway(load_settings(env=env)))


async def _send(gateway: Gateway, method: str, path: str) -> tuple[int, bytes]:
    async with aiohttp.ClientSession() as client, client.request(method, gateway.url + path) as response:
        return response.status, await response.read()


async def test_unrecognized_path_without_catch_all_gives_404_naming_path_and_setting(
    servers: AsyncExitStack,
) -> None:
    gateway = await _gateway(servers, {})

    async with aiohttp.ClientSession() as client, client.get(gateway.url + "/some/thing?x=1") as response:
        error = await response.json()

    assert response.status == 404
    assert error["error"]["type"] == "route_not_found"
    assert error["error"]["path"] == "/some/thing"
    assert "/some/thing" in error["error"]["message"]
    assert "LLM_GATEWAY_UPSTREAM_DEFAULT" in error["error"]["message"]
    assert "--upstream default=URL" in error["error"]["message"]


async def test_unrecognized_path_with_catch_all_is_relayed_there(servers: AsyncExitStack) -> None:
    upstream, url = await _upstream(servers)
    gateway = await _gateway(servers, {"LLM_GATEWAY_UPSTREAM_DEFAULT": url})

    assert (await _send(gateway, "GET", "/some/thing?x=1"))[0] == 200

    assert [(a.method, a.raw_path) for a in upstream.arrived] == [("GET", "/some/thing?x=1")]


@pytest.mark.parametrize(
    "path", ["/v1/messages", "/v1/chat/completions", "/v1/responses", "/api/chat", "/some/thing"]
)
async def test_single_upstream_setting_receives_every_request(servers: AsyncExitStack, path: str) -> None:
    upstream, url = await _upstream(servers)
    gateway = await _gateway(servers, {"LLM_GATEWAY_UPSTREAM": url})

    assert (await _send(gateway, "POST", path))[0] == 200

    assert [a.raw_path for a in upstream.arrived] == [path]


async def test_named_upstream_wins_over_single_upstream_setting(servers: AsyncExitStack) -> None:
    everything, everything_url = await _upstream(servers)
    anthropic, anthropic_url = await _upstream(servers)
    gateway = await _gateway(
        servers, {"LLM_GATEWAY_UPSTREAM": everything_url, "LLM_GATEWAY_UPSTREAM_ANTHROPIC": anthropic_url}
    )

    await _send(gateway, "POST", "/v1/messages")
    await _send(gateway, "POST", "/v1/chat/completions")

    assert [a.raw_path for a in anthropic.arrived] == ["/v1/messages"]
    assert [a.raw_path for a in everything.arrived] == ["/v1/chat/completions"]


async def test_upstream_url_with_path_prefix_gets_prefix_and_original_path(servers: AsyncExitStack) -> None:
    upstream, url = await _upstream(servers)
    gateway = await _gateway(servers, {"LLM_GATEWAY_UPSTREAM_OPENAI": url + "/api/openai/"})

    await _send(gateway, "POST", "/v1/chat/completions?api-version=2024-10-21")

    assert [a.raw_path for a in upstream.arrived] == ["/api/openai/v1/chat/completions?api-version=2024-10-21"]


async def test_health_answers_without_touching_any_upstream(servers: AsyncExitStack) -> None:
    dead = closed_port_url()
    gateway = await _gateway(servers, {"LLM_GATEWAY_UPSTREAM": dead, "LLM_GATEWAY_UPSTREAM_ANTHROPIC": dead})

    async with aiohttp.ClientSession() as client, client.get(gateway.url + "/_gateway/health") as response:
        health = await response.json()

    assert response.status == 200
    assert response.content_type == "application/json"
    assert health["status"] == "ok"


async def test_health_sends_nothing_upstream(servers: AsyncExitStack) -> None:
    upstream, url = await _upstream(servers)
    gateway = await _gateway(servers, {"LLM_GATEWAY_UPSTREAM": url})

    assert (await _send(gateway, "GET", "/_gateway/health"))[0] == 200

    assert upstream.arrived == []
