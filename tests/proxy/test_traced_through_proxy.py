"""Spans of a call read through the proxy are those of the same call sent directly: same names, kinds, parents and
attributes (server.address is the upstream's in both), only ids and times differ."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from anthropic import AsyncAnthropic

from tests.proxy.conftest import Proxied, ProxiedGateway
from tests.proxy.test_sdk_through_proxy import ANTHROPIC_STREAM, anthropic_events, first_exchange_twice
from tests.support.chat_spans import spans_named
from tests.support.otlp import OTLPReceiver, ReceivedSpan
from tests.support.servers import running_replay

#: attributes that are times or random ids: they differ between any two runs
_VOLATILE = frozenset({"gen_ai.response.time_to_first_chunk", "llm_gateway.response.time_to_first_token"})


def shape(spans: list[ReceivedSpan], upstream_port: int) -> list[tuple[Any, ...]]:
    """Each span's name, kind, parent's name, status and attributes; the run's upstream port made a placeholder."""
    by_id = {s.span_id: s.name for s in spans}

    def same_port(value: Any) -> Any:
        if value == upstream_port:
            return "PORT"
        return value.replace(f":{upstream_port}", ":PORT") if isinstance(value, str) else value

    return sorted(
        (s.name, s.kind, by_id.get(s.parent_id or ""), s.status_code,
         sorted((k, same_port(v)) for k, v in s.attributes.items() if k not in _VOLATILE))
        for s in spans
    )


async def traced_run(proxied_gateway: ProxiedGateway, client: Callable[[Proxied], AsyncAnthropic]) -> list[Any]:
    receiver = await OTLPReceiver().start()
    try:
        env = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint, "OTEL_SERVICE_NAME": "llm-gateway-test"}
        async with running_replay([first_exchange_twice(ANTHROPIC_STREAM)]) as replay, \
                proxied_gateway(replay.url, env=env) as proxied:
            await anthropic_events(client(proxied))
            upstream_port = replay.port
        spans = await receiver.wait_for(lambda s: bool(spans_named(s, "session ")))
    finally:
        await receiver.stop()
    chat = next(s for s in spans if s.name.startswith("chat "))
    assert chat.attributes["server.port"] == upstream_port  # the upstream's, not api.anthropic.com's
    return shape(spans, upstream_port)


async def test_spans_through_the_proxy_are_those_of_direct_traffic(
        proxied_gateway: ProxiedGateway, client_env: Callable[[Proxied], None],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "50")
    direct = await traced_run(proxied_gateway, lambda p: AsyncAnthropic(base_url=p.url, api_key="sk-t", max_retries=0))

    def through(proxied: Proxied) -> AsyncAnthropic:
        client_env(proxied)
        return AsyncAnthropic(api_key="sk-t", max_retries=0)

    assert await traced_run(proxied_gateway, through) == direct
    assert any(name.startswith("chat ") for name, *_ in direct)
