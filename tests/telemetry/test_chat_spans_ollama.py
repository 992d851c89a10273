"""Ollama chat spans end to end: a raw aiohttp client (no SDK fits a test in this process) sends the recorded
requests through the gateway to a replayed recording; spans read back from a real OTLP/HTTP receiver. Expected
values are read from the recorded NDJSON lines / JSON document."""

from __future__ import annotations

from typing import Any

import aiohttp
import orjson
import pytest

from llm_gateway.recordings import Exchange, load
from llm_gateway.server import Gateway
from tests.support import FIXTURES
from tests.support.chat_spans import (
    assert_call_span,
    assert_loop_trace,
    json_attribute,
    ndjson,
    replay_turns,
)
from tests.support.otlp import OTLPReceiver

# Ollama needs no key, but a proxy in front of it (Open WebUI) takes one: it must not reach a span either.
_API_KEY = "ollama-gateway-test-key"


def _client(gateway: Gateway) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(gateway.url, headers={"Authorization": f"Bearer {_API_KEY}"})


async def _post(client: aiohttp.ClientSession, exchange: Exchange) -> bytes:
    request = exchange.request
    headers = {k: v for k, v in request.headers if k.lower() != "host"}
    async with client.post(request.path, data=request.body, headers=headers) as response:
        assert response.status == exchange.response.status
        return await response.read()


def _response_objects(exchange: Exchange) -> list[dict[str, Any]]:
    """NDJSON lines, or the one document of a `stream: false` call."""
    body = exchange.response.body
    return ndjson(body) if orjson.loads(exchange.request.body).get("stream", True) else [orjson.loads(body)]


def _expected(exchange: Exchange) -> dict[str, Any]:
    body = orjson.loads(exchange.request.body)
    last = _response_objects(exchange)[-1]  # the `done: true` line
    return {
        "gen_ai.operation.name": "chat" if exchange.request.path == "/api/chat" else "text_completion",
        "gen_ai.provider.name": "ollama",
        "gen_ai.request.model": body["model"],
        "gen_ai.request.stream": body.get("stream", True),  # Ollama streams unless told not to
        "http.response.status_code": 200,
        "gen_ai.response.id": None,  # Ollama names no response
        "gen_ai.response.model": last["model"],
        "gen_ai.response.finish_reasons": [last["done_reason"]],
        "gen_ai.usage.input_tokens": last["prompt_eval_count"],
        "gen_ai.usage.output_tokens": last["eval_count"],
        "gen_ai.usage.cache_read.input_tokens": None,
        "gen_ai.usage.reasoning.output_tokens": None,
        **_sampling(body.get("options", {})),
    }


def _sampling(options: dict[str, Any]) -> dict[str, Any]:
    """`options` under the conventions' names (ollama docs/modelfile.md: num_predict is the output token limit)."""
    names = {"temperature": "temperature", "top_p": "top_p", "top_k": "top_k", "seed": "seed",
             "stop": "stop_sequences", "num_predict": "max_tokens", "frequency_penalty": "frequency_penalty",
             "presence_penalty": "presence_penalty"}
    return {f"gen_ai.request.{name}": options.get(key) for key, name in names.items()}


def _calls(exchange: Exchange) -> list[tuple[None, str]]:
    return [(None, c["function"]["name"]) for line in _response_objects(exchange)
            for c in line.get("message", {}).get("tool_calls") or ()]


@pytest.mark.parametrize("name", ["composed-chat-tool-loop", "composed-chat-not-streamed", "composed-generate"])
async def test_ollama_spans_carry_the_done_lines_counts(traced_gateway, receiver: OTLPReceiver, name: str) -> None:
    fixture = load(FIXTURES / f"ollama/{name}.json")
    run = await replay_turns(traced_gateway, receiver, fixture, _client, _post)

    calls: list[tuple[None, str]] = []
    for body, span, exchange in zip(run.results, run.chats, fixture.exchanges, strict=True):
        assert body == exchange.response.body
        assert_call_span(span, upstream_url=run.upstream_url, expected=_expected(exchange))
        calls += _calls(exchange)
    # Tool messages name their tool; Ollama calls have no ids.
    answered = {m["tool_name"] for ex in fixture.exchanges for m in orjson.loads(ex.request.body).get("messages", [])
                if m["role"] == "tool"}
    assert_loop_trace(run.spans, calls, answered, _API_KEY)


async def test_ollama_chat_with_capture_puts_recorded_messages_and_tools_on_span(
    traced_gateway, receiver: OTLPReceiver
) -> None:
    fixture = load(FIXTURES / "ollama/composed-chat-tool-loop.json")
    run = await replay_turns(traced_gateway, receiver, fixture, _client, _post, capture=True,
                             turns=1)

    (span,) = run.chats
    first = fixture.exchanges[0]
    body = orjson.loads(first.request.body)
    inputs = json_attribute(span, "gen_ai.input.messages")
    assert [(m["role"], m["parts"][0]["content"]) for m in inputs] == [
        (m["role"], m["content"]) for m in body["messages"]]
    (output,) = json_attribute(span, "gen_ai.output.messages")
    lines = ndjson(first.response.body)
    # the conventions' reason (issue 14): Ollama says "stop" for a message that calls tools
    assert lines[-1]["done_reason"] == "stop"
    assert output["finish_reason"] == ("tool_call" if _calls(first) else "stop")
    assert [p["name"] for p in output["parts"] if p["type"] == "tool_call"] == [name for _, name in _calls(first)]
    thinking = "".join(line["message"].get("thinking", "") for line in lines)
    assert [p["content"] for p in output["parts"] if p["type"] == "reasoning"] == [thinking]
    definitions = json_attribute(span, "gen_ai.tool.definitions")
    assert [d["name"] for d in definitions] == [t["function"]["name"] for t in body["tools"]]
