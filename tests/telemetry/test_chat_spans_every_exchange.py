"""Every recorded exchange through the traced gateway with a raw client: the bytes arrive as recorded, and a model
call gives exactly one chat span whose response attributes are those of the record the adapter builds sans-IO from
the same exchange. This checks relay -> addon -> span for every recording, chunked as the replay sends it.

The model calls go through one traced gateway per capture mode, kept for the module (a gateway per exchange spent
most of each test starting and stopping its telemetry process); what else the recordings hold gets a gateway of its
own, whose stop flushes everything, so that "no span at all" can be seen."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import pytest_asyncio
from multidict import CIMultiDict
from yarl import URL

from llm_gateway.config import Settings
from llm_gateway.protocols.exchange import ChatRecord
from llm_gateway.recordings import Exchange, Fixture, fixture_files, header, load
from llm_gateway.recordings.replay import ReplayUpstream
from llm_gateway.routing import UPSTREAM_NAMES, Router, adapter_for
from llm_gateway.server import Gateway
from llm_gateway.telemetry.chat_attributes import USAGE_CACHE_WRITE
from tests.support import FIXTURES
from tests.support.chat_spans import chat_spans
from tests.support.exchanges import send_recorded
from tests.support.otlp import OTLPReceiver, ReceivedSpan
from tests.support.records import run_exchange

pytestmark = pytest.mark.asyncio(loop_scope="module")

# RequestParams fields that are `gen_ai.request.{field}` as they are
_PARAMS = ("temperature", "top_p", "top_k", "max_tokens", "stop_sequences", "seed", "frequency_penalty",
           "presence_penalty")


def _is_model_call(exchange: Exchange) -> bool:
    """What the recordings hold besides model calls: Agents SDK trace uploads, Kiro's model list, and MCP
    JSON-RPC messages."""
    request = exchange.request
    target = header(request.headers, "x-amz-target") or ""
    return not (request.path.startswith("/v1/traces/") or target.endswith(".ListAvailableModels")
                or b'"jsonrpc"' in request.body[:200])


def _exchanges() -> list[Any]:
    return [
        pytest.param(path, i, id=f"{path.parent.name}/{path.stem}#{i}")
        for path in fixture_files(FIXTURES)
        for i, exchange in enumerate(load(path).exchanges)
        if not exchange.websocket  # its calls are in its messages: tests/relay/test_websocket_calls.py
    ]


def _span_view(record: ChatRecord) -> dict[str, Any]:
    """The chat span attributes the record determines, None where the span must not have one."""
    issues = record.parse_issues + ([record.request.parse_issue] if record.request.parse_issue else [])
    view = {
        "gen_ai.operation.name": record.request.operation,
        "gen_ai.request.model": record.request.model,
        "gen_ai.request.stream": record.request.stream,
        "http.response.status_code": record.status,
        "gen_ai.response.id": record.response_id,
        "gen_ai.response.model": record.response_model,
        "gen_ai.response.finish_reasons": record.finish_reasons or None,
        "gen_ai.usage.input_tokens": record.input_tokens,
        "gen_ai.usage.output_tokens": record.output_tokens,
        "gen_ai.usage.cache_read.input_tokens": record.cache_read,
        USAGE_CACHE_WRITE: record.cache_write,
        "gen_ai.usage.reasoning.output_tokens": record.reasoning_tokens,
        "llm_gateway.response.tool_calls": [c.name for c in record.tool_calls] or None,
        "error.type": record.error_type,
        "llm_gateway.error.message": ((record.error_message or "")[:500] or None) if record.error_type else None,
        "llm_gateway.parse_error": "; ".join(issues) or None,
    }
    params = record.request.params
    view.update({f"gen_ai.request.{name}": getattr(params, name) for name in _PARAMS})
    view["gen_ai.request.choice.count"] = params.choice_count if params.choice_count != 1 else None
    view["gen_ai.output.type"] = record.request.output_type
    view.update({f"llm_gateway.{key}": value for key, value in record.extras.items()})
    return view


def _content_view(record: ChatRecord) -> dict[str, Any]:
    """The content attributes (JSON text on the span) as the record holds them, None where absent."""
    request = record.request
    return {
        "gen_ai.system_instructions": request.system_instructions,
        "gen_ai.input.messages": request.input_messages,
        "gen_ai.tool.definitions": request.tool_definitions,
        "gen_ai.output.messages": record.output_messages,
    }


def _env(receiver: OTLPReceiver, capture: bool) -> dict[str, str]:
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint, "OTEL_SERVICE_NAME": "llm-gateway-test",
           "OTEL_BSP_SCHEDULE_DELAY": "50"}
    if capture:
        env["OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"] = "true"
    return env


class Shared:
    """A receiver, a replay upstream that is told each test's exchange, and a traced gateway per capture mode."""

    def __init__(self, receiver: OTLPReceiver, upstream: ReplayUpstream, gateways: dict[bool, Gateway]) -> None:
        self.receiver = receiver
        self.upstream = upstream
        self.gateways = gateways


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def shared() -> AsyncIterator[Shared]:
    receiver = await OTLPReceiver().start()
    upstream = await ReplayUpstream([]).start()
    settings = Settings(port=0, upstreams=dict.fromkeys(UPSTREAM_NAMES, upstream.url))
    gateways: dict[bool, Gateway] = {}
    try:
        for capture in (False, True):
            gateways[capture] = await Gateway.start(settings, _env(receiver, capture))
        yield Shared(receiver, upstream, gateways)
    finally:
        for gateway in gateways.values():
            await gateway.stop()
        await upstream.stop()
        await receiver.stop()


async def _untraced_alone(path: Path, exchange: Exchange, capture: bool) -> None:
    """Not a model call: through a gateway of its own, whose stop flushes every span, none is made."""
    receiver = await OTLPReceiver().start()
    try:
        async with ReplayUpstream([Fixture([exchange], name=path.stem)]) as upstream:
            settings = Settings(port=0, upstreams=dict.fromkeys(UPSTREAM_NAMES, upstream.url))
            gateway = await Gateway.start(settings, _env(receiver, capture))
            try:
                status, body = await send_recorded(gateway.url, exchange)
            finally:
                await gateway.stop()
        assert (status, body) == (exchange.response.status, exchange.response.body)
        assert [r.body for r in upstream.requests] == [exchange.request.body]
        assert receiver.spans == []  # relayed untraced: no chat span, and no stray HTTP span either
    finally:
        await receiver.stop()


def _its_spans(spans: list[ReceivedSpan]) -> bool:
    """The chat span of the one call sent and the HTTP span under it have arrived."""
    return any(s.parent_id == chat.span_id for chat in chat_spans(spans) for s in spans)


@pytest.mark.parametrize("capture", [False, True], ids=["plain", "capture"])
@pytest.mark.parametrize(("path", "index"), _exchanges())
async def test_recorded_exchange_relayed_whole_gives_the_adapters_chat_span(
    shared: Shared, path: Path, index: int, capture: bool
) -> None:
    exchange = load(path).exchanges[index]
    if not _is_model_call(exchange):
        await _untraced_alone(path, exchange, capture)
        return
    receiver, upstream = shared.receiver, shared.upstream
    receiver.spans.clear()  # the calls before this one were waited for; spans of their turns may still come
    upstream.expect([Fixture([exchange], name=path.stem)])
    sent_before = len(upstream.requests)
    status, body = await send_recorded(shared.gateways[capture].url, exchange)
    assert (status, body) == (exchange.response.status, exchange.response.body)
    assert len(upstream.requests) == sent_before + 1 and upstream.requests[-1].body == exchange.request.body

    spans = await receiver.wait_for(_its_spans)
    (span,) = chat_spans(spans)
    request = exchange.request
    route = Router(Settings()).resolve(request.method, request.path, CIMultiDict(request.headers))
    assert route is not None and route.protocol is not None
    assert span.attributes["llm_gateway.protocol"] == route.protocol.name
    adapter = adapter_for(route.protocol.name)
    assert adapter is not None
    record = run_exchange(adapter, exchange, upstream_url=upstream.url, capture=capture)
    expected = _span_view(record)
    assert {key: span.attributes.get(key) for key in expected} == expected
    content = {key: orjson.loads(value) for key, value in span.attributes.items() if key in _content_view(record)}
    assert content == ({k: v for k, v in _content_view(record).items() if v} if capture else {})
    model = record.request.model
    assert span.name == (f"{record.request.operation} {model}" if model else record.request.operation)
    assert span.status_code == (2 if record.error_type else 0)
    # First-token time is a timing, so only its presence is comparable: there was a first text / tool event.
    assert ("llm_gateway.response.time_to_first_token" in span.attributes) == (record.first_token_ns is not None)

    # The upstream call: one HTTP CLIENT span under the chat span, within it, as the recording says.
    (http,) = [s for s in spans if s.parent_id == span.span_id]
    assert (http.name, http.kind, http.trace_id) == (request.method, "CLIENT", span.trace_id)
    status = exchange.response.status
    assert http.attributes == {
        "http.request.method": request.method,
        "url.full": upstream.url + request.path,
        "server.address": "127.0.0.1",
        "server.port": URL(upstream.url).port,
        "http.response.status_code": status,
        **({"error.type": str(status)} if status >= 400 else {}),
        **{k: span.attributes[k] for k in ("session.id", "gen_ai.conversation.id", "llm_gateway.session.key")},
    }
    assert span.start_ns <= http.start_ns <= http.end_ns <= span.end_ns
    assert http.status_code == (2 if status >= 400 else 0)
