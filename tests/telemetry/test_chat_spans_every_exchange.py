"""Every recorded exchange through the traced gateway with a raw client: the bytes arrive as recorded, and a model
call gives exactly one chat span whose response attributes are those of the record the adapter builds sans-IO from
the same exchange. This checks relay -> addon -> span for every recording, chunked as the replay sends it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from multidict import CIMultiDict
from yarl import URL

from llm_gateway.config import Settings
from llm_gateway.protocols.exchange import ChatRecord
from llm_gateway.recordings import Exchange, Fixture, fixture_files, header, load
from llm_gateway.routing import Router, adapter_for
from llm_gateway.telemetry.chat_attributes import USAGE_CACHE_WRITE
from tests.support import FIXTURES
from tests.support.chat_spans import chat_spans
from tests.support.exchanges import send_recorded
from tests.support.otlp import OTLPReceiver
from tests.support.records import run_exchange

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


@pytest.mark.parametrize("capture", [False, True], ids=["plain", "capture"])
@pytest.mark.parametrize(("path", "index"), _exchanges())
async def test_recorded_exchange_relayed_whole_gives_the_adapters_chat_span(
    traced_gateway, receiver: OTLPReceiver, path: Path, index: int, capture: bool
) -> None:
    exchange = load(path).exchanges[index]
    async with traced_gateway([Fixture([exchange], name=path.stem)], capture=capture) as (gateway, upstream):
        status, body = await send_recorded(gateway.url, exchange)
    assert (status, body) == (exchange.response.status, exchange.response.body)
    assert len(upstream.requests) == 1 and upstream.requests[0].body == exchange.request.body

    spans = receiver.spans  # gateway.stop() flushed everything
    if not _is_model_call(exchange):
        assert spans == []  # relayed untraced: no chat span, and no stray HTTP span either
        return
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
