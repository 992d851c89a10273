"""Gemini chat spans end to end: google-genai through the gateway to a replayed recording, spans read back from a
real OTLP/HTTP receiver. Each turn sends the recorded `contents` (automatic function calling off, so the SDK sends
exactly the recorded turns); expected values are read from the recorded JSON / SSE bytes."""

from __future__ import annotations

from typing import Any

import aiohttp
import orjson
import pytest
from google import genai
from google.genai import types

from llm_gateway.recordings import Exchange, load
from llm_gateway.server import Gateway
from llm_gateway.telemetry.chat_attributes import USAGE_CACHE_WRITE
from tests.support import FIXTURES
from tests.support.chat_spans import (
    Replayed,
    assert_call_span,
    assert_loop_trace,
    assert_no_content_nor_secret,
    chat_spans,
    json_attribute,
    replay_turns,
    sse_json,
)
from tests.support.otlp import OTLPReceiver

_API_KEY = "gemini-gateway-test-key"


def _client(gateway: Gateway) -> genai.Client:
    # The recordings are of the v1beta API; this SDK defaults to v1.
    options = types.HttpOptions(base_url=gateway.url, api_version="v1beta")
    return genai.Client(api_key=_API_KEY, http_options=options)


def _model(exchange: Exchange) -> str:
    return exchange.request.path.split("/models/")[1].partition(":")[0]


def _request(exchange: Exchange) -> dict[str, Any]:
    """The recorded turn as SDK arguments: contents, and the config with function calling left to us."""
    body = orjson.loads(exchange.request.body)
    config = {**body.get("generationConfig", {}), "tools": body.get("tools"),
              "system_instruction": body.get("systemInstruction"),
              "automatic_function_calling": {"disable": True}}
    return {"model": _model(exchange), "contents": body["contents"],
            "config": types.GenerateContentConfig.model_validate(config)}


def _recorded_chunks(exchange: Exchange) -> list[dict[str, Any]]:
    body = exchange.response.body
    return sse_json(body) if body.startswith(b"data:") else [orjson.loads(body)]


def _parts(chunks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [p for c in chunks for cand in c.get("candidates", []) for p in cand["content"].get("parts", [])]


def _expected(exchange: Exchange, *, stream: bool) -> dict[str, Any]:
    """Usage: the last report wins; thoughts count as output (and are the reasoning part); promptTokenCount
    already includes cached tokens."""
    chunks = _recorded_chunks(exchange)
    usage = chunks[-1]["usageMetadata"]
    thoughts = usage.get("thoughtsTokenCount")
    return {
        "gen_ai.operation.name": "generate_content",
        "gen_ai.provider.name": "gcp.gemini",
        "gen_ai.request.model": _model(exchange),
        "gen_ai.request.stream": stream,
        "http.response.status_code": 200,
        "gen_ai.response.id": chunks[-1]["responseId"],
        "gen_ai.response.model": chunks[-1]["modelVersion"],
        "gen_ai.response.finish_reasons": [c["finishReason"] for c in chunks[-1]["candidates"]],
        "gen_ai.usage.input_tokens": usage["promptTokenCount"] + usage.get("toolUsePromptTokenCount", 0),
        "gen_ai.usage.output_tokens": usage.get("candidatesTokenCount", 0) + (thoughts or 0),
        "gen_ai.usage.cache_read.input_tokens": usage.get("cachedContentTokenCount"),
        USAGE_CACHE_WRITE: None,  # Gemini reports no cache writes
        "gen_ai.usage.reasoning.output_tokens": thoughts,
    }


def _calls(exchange: Exchange) -> list[tuple[str | None, str]]:
    return [(p["functionCall"].get("id"), p["functionCall"]["name"]) for p in _parts(_recorded_chunks(exchange))
            if "functionCall" in p]


def _answered(exchange: Exchange) -> set[str]:
    """What the request's function responses answer: calls with their id, and id-less calls of their name (a
    client may give its answer an id the call never had: pydantic-ai does)."""
    responses = [p["functionResponse"] for c in orjson.loads(exchange.request.body)["contents"] for p in c["parts"]
                 if "functionResponse" in p]
    return {r["name"] for r in responses} | {r["id"] for r in responses if r.get("id")}


def _sdk_calls(parts: list[types.Part]) -> list[tuple[str | None, str | None]]:
    return [(p.function_call.id, p.function_call.name) for p in parts if p.function_call]


def _sdk_text(parts: list[types.Part]) -> str:
    return "".join(p.text or "" for p in parts if not p.thought)


def _recorded_text(exchange: Exchange) -> str:
    return "".join(p.get("text", "") for p in _parts(_recorded_chunks(exchange)) if not p.get("thought"))


def _response_parts(response: types.GenerateContentResponse) -> list[types.Part]:
    return [p for cand in response.candidates or () for p in (cand.content.parts or () if cand.content else ())]


async def _generate(client: genai.Client, exchange: Exchange) -> list[types.Part]:
    return _response_parts(await client.aio.models.generate_content(**_request(exchange)))


async def _generate_stream(client: genai.Client, exchange: Exchange) -> list[types.Part]:
    stream = await client.aio.models.generate_content_stream(**_request(exchange))
    return [p async for chunk in stream for p in _response_parts(chunk)]


def _assert_loop(run: Replayed, exchanges: list[Exchange], *, stream: bool) -> None:
    calls: list[tuple[str | None, str]] = []
    for parts, span, exchange in zip(run.results, run.chats, exchanges, strict=True):
        assert _sdk_calls(parts) == _calls(exchange)
        assert _sdk_text(parts) == _recorded_text(exchange)
        assert_call_span(span, upstream_url=run.upstream_url, expected=_expected(exchange, stream=stream))
        calls += _calls(exchange)
    assert_loop_trace(run.spans, calls, set().union(*map(_answered, exchanges)), _API_KEY)


async def test_generate_content_tool_loop_spans_carry_recorded_usage(traced_gateway, receiver: OTLPReceiver):
    fixture = load(FIXTURES / "gemini/tool-loop.json")
    run = await replay_turns(traced_gateway, receiver, fixture, _client, _generate)
    _assert_loop(run, fixture.exchanges, stream=False)


@pytest.mark.parametrize("name", [
    "tool-loop-streaming",  # id-less calls answered with ids of the client's own: paired by name and order
    "reasoning-parallel-tools",
])
async def test_generate_content_stream_spans_carry_last_usage_report(
    traced_gateway, receiver: OTLPReceiver, name: str
) -> None:
    fixture = load(FIXTURES / f"gemini/{name}.json")
    run = await replay_turns(traced_gateway, receiver, fixture, _client, _generate_stream)
    _assert_loop(run, fixture.exchanges, stream=True)


async def test_generate_content_with_capture_puts_recorded_messages_and_tools_on_span(
    traced_gateway, receiver: OTLPReceiver
) -> None:
    fixture = load(FIXTURES / "gemini/tool-loop.json")
    run = await replay_turns(traced_gateway, receiver, fixture, _client, _generate, capture=True, turns=1)

    (span,) = run.chats
    first = fixture.exchanges[0]
    body = orjson.loads(first.request.body)
    system = json_attribute(span, "gen_ai.system_instructions")
    assert [p["content"] for p in system] == [p["text"] for p in body["systemInstruction"]["parts"]]
    inputs = json_attribute(span, "gen_ai.input.messages")
    assert [p["content"] for m in inputs for p in m["parts"]] == [p["text"] for p in body["contents"][0]["parts"]]
    (output,) = json_attribute(span, "gen_ai.output.messages")
    # the conventions' reason: Gemini's STOP for a message that calls tools is a tool call (issue 14)
    assert _recorded_chunks(first)[-1]["candidates"][0]["finishReason"] == "STOP"
    assert output["finish_reason"] == "tool_call"
    assert [p["name"] for p in output["parts"] if p["type"] == "tool_call"] == [name for _, name in _calls(first)]
    definitions = json_attribute(span, "gen_ai.tool.definitions")
    assert [d["name"] for d in definitions] == [d["name"] for t in body["tools"] for d in t["functionDeclarations"]]


async def test_api_key_in_query_string_reaches_no_span(traced_gateway, receiver: OTLPReceiver) -> None:
    # The API's other way to pass the key (`?key=`, in Google's REST examples), not the SDK's header.
    fixture = load(FIXTURES / "gemini/tool-loop.json")
    first = fixture.exchanges[0]
    async with (
        traced_gateway([fixture]) as (gateway, _),
        aiohttp.ClientSession(gateway.url) as client,
        client.post(f"{first.request.path}?key={_API_KEY}", data=first.request.body,
                    headers={"content-type": "application/json"}) as reply,
    ):
        assert reply.status == 200
    spans = receiver.spans  # gateway.stop() flushed everything
    assert len(chat_spans(spans)) == 1
    assert_no_content_nor_secret(spans, _API_KEY)
