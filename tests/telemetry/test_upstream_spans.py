"""The upstream HTTP CLIENT span: built by the gateway after the exchange (default), by the aiohttp-client
instrumentation (`LLM_GATEWAY_HTTP_SPANS=aiohttp`), or not at all (`none`). Every recording's span attributes are
checked in test_chat_spans_every_exchange.py; these are the cases no recording has."""

from __future__ import annotations

import orjson
import pytest
from yarl import URL

from llm_gateway.config import Settings
from llm_gateway.recordings import load
from llm_gateway.redact import url_without_credentials
from llm_gateway.server import Gateway
from llm_gateway.telemetry import TelemetryConfigError, configure
from tests.support import FIXTURES
from tests.support.chat_spans import chat_spans
from tests.support.exchanges import send_recorded
from tests.support.otlp import OTLPReceiver
from tests.support.servers import closed_port_url, raw_http

ANTHROPIC = load(FIXTURES / "anthropic/tools-streaming.json")
GEMINI = load(FIXTURES / "gemini/tool-loop-streaming.json")


def _children(spans, parent) -> list:
    return [s for s in spans if s.parent_id == parent.span_id]


async def test_a_credential_in_the_query_is_relayed_but_never_on_the_span(traced_gateway, receiver: OTLPReceiver):
    exchange = GEMINI.exchanges[0]
    assert "?alt=sse" in exchange.request.path
    async with traced_gateway([GEMINI]) as (gateway, upstream):
        status, _ = await send_recorded(gateway.url, exchange, path=exchange.request.path + "&key=AIza-secret")
    assert status == exchange.response.status
    assert upstream.requests[0].path.endswith("&key=AIza-secret")  # forwarded unchanged
    (chat,) = chat_spans(receiver.spans)
    (http,) = _children(receiver.spans, chat)
    assert http.attributes["url.full"] == upstream.url + exchange.request.path
    assert not any("AIza-secret" in str(v) for s in receiver.spans for v in s.attributes.values())


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://h/v1/m?alt=sse", "https://h/v1/m?alt=sse"),
        ("https://h/v1/m?key=s&alt=sse", "https://h/v1/m?alt=sse"),
        ("https://h/x?api-key=s&sig=t&Token=u&a=1&a=2", "https://h/x?a=1&a=2"),
        ("https://h/x?key=s", "https://h/x"),
        ("https://u:p%40ss@h:8443/v1?key=s&a=1", "https://REDACTED:REDACTED@h:8443/v1?a=1"),
        ("http://token@h/v1", "http://REDACTED@h/v1"),
    ],
)
def test_url_without_credentials(url: str, expected: str) -> None:
    assert url_without_credentials(url) == expected


async def test_an_unreachable_upstream_gives_an_http_span_with_the_cause(receiver: OTLPReceiver):
    dead = closed_port_url()
    port = URL(dead).port
    settings = Settings(port=0, upstreams={"anthropic": dead})
    gateway = await Gateway.start(settings, {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint})
    try:
        status, _ = await send_recorded(gateway.url, ANTHROPIC.exchanges[0])
    finally:
        await gateway.stop()
    assert status == 502
    (chat,) = chat_spans(receiver.spans)
    (http,) = _children(receiver.spans, chat)
    assert http.attributes == {
        "http.request.method": "POST",
        "url.full": f"http://127.0.0.1:{port}{ANTHROPIC.exchanges[0].request.path}",
        "server.address": "127.0.0.1",
        "server.port": port,
        "error.type": "upstream_unreachable",
        **{k: chat.attributes[k] for k in ("session.id", "gen_ai.conversation.id", "llm_gateway.session.key")},
    }
    assert http.status_code == 2 and chat.status_code == 2


@pytest.mark.parametrize("mode", ["aiohttp", "none"])
async def test_the_http_span_can_come_from_the_instrumentation_or_not_at_all(
    traced_gateway, receiver: OTLPReceiver, mode: str
):
    exchange = ANTHROPIC.exchanges[0]
    async with traced_gateway([ANTHROPIC], extra_env={"LLM_GATEWAY_HTTP_SPANS": mode}) as (gateway, upstream):
        await send_recorded(gateway.url, exchange)
    (chat,) = chat_spans(receiver.spans)
    children = _children(receiver.spans, chat)
    if mode == "none":
        assert children == []
        return
    (http,) = children
    # The instrumentation's own (older) HTTP conventions, on the same call.
    assert (http.kind, http.attributes["http.method"], http.attributes["http.status_code"]) == (
        "CLIENT", "POST", exchange.response.status)
    assert http.attributes["http.url"] == upstream.url + exchange.request.path


async def test_with_the_instrumentation_a_header_value_that_is_not_utf8_is_refused_not_relayed_altered(
    traced_gateway,
):
    # aiohttp's client writes header text as UTF-8: the Latin-1 byte \xe9 would reach the upstream as \xc3\xa9.
    extra_env = {"LLM_GATEWAY_HTTP_SPANS": "aiohttp"}
    async with traced_gateway([ANTHROPIC], extra_env=extra_env) as (gateway, upstream):
        response = await raw_http(gateway.port, b"POST /v1/messages HTTP/1.1\r\nHost: g\r\nx-title: caf\xe9\r\n"
                                                b"Content-Length: 2\r\nConnection: close\r\n\r\n{}")
        assert response.startswith(b"HTTP/1.1 400 ")
        assert orjson.loads(response.split(b"\r\n\r\n", 1)[1])["error"]["type"] == "header_not_utf8"
        assert upstream.requests == []


def test_an_unknown_mode_is_a_configuration_error() -> None:
    with pytest.raises(TelemetryConfigError, match="LLM_GATEWAY_HTTP_SPANS"):
        configure({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318", "LLM_GATEWAY_HTTP_SPANS": "curl"})
