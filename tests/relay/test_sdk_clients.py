"""The official SDKs, and a raw client, through the gateway to an upstream that replays recordings.

Expected values are read from the recording itself (JSON of the SSE `data:` lines or of the body), never typed in.
"""

from __future__ import annotations

import gzip
import json
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from anthropic import AsyncAnthropic
from openai import AsyncOpenAI
from yarl import URL

from llm_gateway.config import Settings
from llm_gateway.recordings import Exchange, fixture_files, header, load
from llm_gateway.recordings.replay import ReplayUpstream
from llm_gateway.routing import UPSTREAM_NAMES
from llm_gateway.server import Gateway
from tests.support import FIXTURES
from tests.support.servers import running_gateway, running_replay

# Request header fields a client library frames itself: not replayed verbatim by the raw client.
_FRAMING = frozenset({"host", "content-length", "transfer-encoding", "connection"})


def sse_json(body: bytes) -> list[dict[str, Any]]:
    """The JSON payloads of the `data:` lines of an SSE body ([DONE] left out)."""
    lines = body.decode("utf-8").splitlines()
    payloads = [line.removeprefix("data:").strip() for line in lines if line.startswith("data:")]
    return [json.loads(p) for p in payloads if p != "[DONE]"]


def recorded_json(exchange: Exchange) -> dict[str, Any]:
    body = exchange.response.body
    if header(exchange.response.headers, "content-encoding") == "gzip":
        body = gzip.decompress(body)
    return json.loads(body)


async def _gateway_to(servers: AsyncExitStack, fixture: Path) -> tuple[ReplayUpstream, Gateway]:
    """A replay of `fixture` and a gateway whose every named upstream points at it."""
    replay = await servers.enter_async_context(running_replay([fixture]))
    settings = Settings(upstreams=dict.fromkeys(UPSTREAM_NAMES, replay.url))
    return replay, await servers.enter_async_context(running_gateway(settings))


async def _replayed_stream(servers: AsyncExitStack, directory: str, name: str) -> tuple[list[dict], Gateway]:
    """The recorded SSE payloads of a fixture's first exchange, and a gateway to a replay of that fixture."""
    fixture = FIXTURES / directory / f"{name}.json"
    _, gateway = await _gateway_to(servers, fixture)
    return sse_json(load(fixture).exchanges[0].response.body), gateway


def _anthropic(gateway: Gateway) -> AsyncAnthropic:
    return AsyncAnthropic(base_url=gateway.url, api_key="test", max_retries=0)


def _openai(gateway: Gateway) -> AsyncOpenAI:
    return AsyncOpenAI(base_url=gateway.url + "/v1", api_key="test", max_retries=0)


# ---------------------------------------------------------------------------------------------- anthropic


@pytest.mark.parametrize("name", ["tools-streaming", "parallel-tools-streaming", "thinking-streaming"])
async def test_anthropic_sdk_streamed_parses_recorded_events(servers: AsyncExitStack, name: str) -> None:
    recorded, gateway = await _replayed_stream(servers, "anthropic", name)
    async with _anthropic(gateway) as client:
        stream = await client.messages.create(
            model="claude-test", max_tokens=64, messages=[{"role": "user", "content": "hi"}], stream=True
        )
        events = [event async for event in stream]

    # The SDK swallows keep-alive pings; every other event comes through.
    assert [e.type for e in events] == [r["type"] for r in recorded if r["type"] != "ping"]
    assert events[0].message.id == recorded[0]["message"]["id"]
    tool_uses = [(e.content_block.id, e.content_block.name) for e in events
                 if e.type == "content_block_start" and e.content_block.type == "tool_use"]
    assert tool_uses == [(r["content_block"]["id"], r["content_block"]["name"]) for r in recorded
                         if r["type"] == "content_block_start" and r["content_block"]["type"] == "tool_use"]
    text = "".join(e.delta.text for e in events if e.type == "content_block_delta" and e.delta.type == "text_delta")
    assert text == "".join(r["delta"]["text"] for r in recorded
                           if r["type"] == "content_block_delta" and r["delta"]["type"] == "text_delta")


async def test_anthropic_sdk_stream_helper_assembles_recorded_message(servers: AsyncExitStack) -> None:
    recorded, gateway = await _replayed_stream(servers, "anthropic", "tools-streaming")
    async with _anthropic(gateway) as client, client.messages.stream(
        model="claude-test", max_tokens=64, messages=[{"role": "user", "content": "hi"}]
    ) as stream:
        message = await stream.get_final_message()

    inputs = {}
    for r in recorded:
        if r["type"] == "content_block_start" and r["content_block"]["type"] == "tool_use":
            inputs[r["index"]] = ""
        elif r["type"] == "content_block_delta" and r["delta"]["type"] == "input_json_delta":
            inputs[r["index"]] += r["delta"]["partial_json"]
    assert [b.input for b in message.content if b.type == "tool_use"] == [json.loads(v) for v in inputs.values()]
    stop = next(r for r in recorded if r["type"] == "message_delta")
    assert message.stop_reason == stop["delta"]["stop_reason"]
    assert message.usage.output_tokens == stop["usage"]["output_tokens"]


async def test_anthropic_sdk_not_streamed_gzip_body_parses_recorded_message(servers: AsyncExitStack) -> None:
    fixture = FIXTURES / "anthropic" / "tools-history-gzip.json"
    recorded = recorded_json(load(fixture).exchanges[0])
    _, gateway = await _gateway_to(servers, fixture)
    async with _anthropic(gateway) as client:
        message = await client.messages.create(
            model="claude-test", max_tokens=64, messages=[{"role": "user", "content": "hi"}]
        )

    assert message.id == recorded["id"]
    assert [b.model_dump(exclude_none=True) for b in message.content] == recorded["content"]
    assert message.usage.input_tokens == recorded["usage"]["input_tokens"]


# ---------------------------------------------------------------------------------------------- openai


async def test_openai_sdk_chat_not_streamed_parses_both_recorded_turns(servers: AsyncExitStack) -> None:
    fixture = FIXTURES / "openai_chat" / "tool-loop.json"
    recorded = [recorded_json(ex) for ex in load(fixture).exchanges]
    _, gateway = await _gateway_to(servers, fixture)
    async with _openai(gateway) as client:
        turns = [
            await client.chat.completions.create(model="gpt-test", messages=[{"role": "user", "content": "hi"}])
            for _ in recorded
        ]

    for turn, expected in zip(turns, recorded, strict=True):
        message, want = turn.choices[0].message, expected["choices"][0]["message"]
        assert turn.id == expected["id"]
        assert message.content == want.get("content")
        assert [(c.id, c.function.name, c.function.arguments) for c in message.tool_calls or ()] == [
            (c["id"], c["function"]["name"], c["function"]["arguments"]) for c in want.get("tool_calls") or ()
        ]
        assert turn.usage.total_tokens == expected["usage"]["total_tokens"]


@pytest.mark.parametrize("name", ["parallel-tools-streaming", "tool-loop-streaming"])
async def test_openai_sdk_chat_streamed_parses_recorded_chunks(servers: AsyncExitStack, name: str) -> None:
    recorded, gateway = await _replayed_stream(servers, "openai_chat", name)
    async with _openai(gateway) as client:
        stream = await client.chat.completions.create(
            model="gpt-test", messages=[{"role": "user", "content": "hi"}], stream=True
        )
        chunks = [chunk async for chunk in stream]

    assert [c.id for c in chunks] == [r["id"] for r in recorded]
    calls = [(t.index, t.id, t.function.name) for c in chunks for ch in c.choices
             for t in ch.delta.tool_calls or () if t.id]
    assert calls == [(t["index"], t["id"], t["function"]["name"]) for r in recorded for ch in r["choices"]
                     for t in ch["delta"].get("tool_calls") or () if t.get("id")]
    text = "".join(ch.delta.content or "" for c in chunks for ch in c.choices)
    assert text == "".join(ch["delta"].get("content") or "" for r in recorded for ch in r["choices"])


@pytest.mark.parametrize("name", ["text-streaming", "tool-loop-streaming"])
async def test_openai_sdk_responses_streamed_parses_recorded_events(servers: AsyncExitStack, name: str) -> None:
    recorded, gateway = await _replayed_stream(servers, "openai_responses", name)
    async with _openai(gateway) as client:
        stream = await client.responses.create(model="gpt-test", input="hi", stream=True)
        events = [event async for event in stream]

    # Older recordings carry no sequence_number.
    assert [(e.type, getattr(e, "sequence_number", None)) for e in events] == [
        (r["type"], r.get("sequence_number")) for r in recorded
    ]
    final, want = events[-1].response, recorded[-1]["response"]
    assert final.id == want["id"]
    assert [(o.type, getattr(o, "call_id", None), getattr(o, "name", None)) for o in final.output] == [
        (o["type"], o.get("call_id"), o.get("name")) for o in want["output"]
    ]
    text = "".join(r["delta"] for r in recorded if r["type"] == "response.output_text.delta")
    assert final.output_text == text


async def test_openai_sdk_responses_not_streamed_parses_recorded_function_call(servers: AsyncExitStack) -> None:
    fixture = FIXTURES / "openai_responses" / "function-call.json"
    recorded = recorded_json(load(fixture).exchanges[0])
    _, gateway = await _gateway_to(servers, fixture)
    async with _openai(gateway) as client:
        response = await client.responses.create(model="gpt-test", input="hi")

    assert response.id == recorded["id"]
    assert [(o.call_id, o.name, o.arguments) for o in response.output] == [
        (o["call_id"], o["name"], o["arguments"]) for o in recorded["output"]
    ]


# ---------------------------------------------------------------------------------------------- raw bytes


@pytest.mark.parametrize(
    "fixture",
    # a recorded WebSocket is relayed message by message: tests/relay/test_websocket_calls.py
    [p for p in fixture_files(FIXTURES) if not any(ex.websocket for ex in load(p).exchanges)],
    ids=lambda p: f"{p.parent.name}/{p.stem}",
)
async def test_recorded_exchange_relayed_bytes_equal_recording(servers: AsyncExitStack, fixture: Path) -> None:
    exchanges = load(fixture).exchanges
    replay, gateway = await _gateway_to(servers, fixture)
    async with aiohttp.ClientSession(auto_decompress=False, skip_auto_headers=("User-Agent",)) as client:
        for exchange in exchanges:
            sent = exchange.request
            headers = [(k, v) for k, v in sent.headers if k.lower() not in _FRAMING]
            url = URL(gateway.url + sent.path, encoded=True)
            async with client.request(sent.method, url, headers=headers, data=sent.body) as response:
                body = await response.read()
            recorded = exchange.response
            assert response.status == recorded.status
            assert body == recorded.body
            assert response.headers.get("content-encoding") == header(recorded.headers, "content-encoding")
            if header(recorded.headers, "content-type") is not None:  # else the replay server picks one
                assert response.headers["content-type"] == header(recorded.headers, "content-type")

    arrived = [(r.method, r.path, r.body) for r in replay.requests]
    assert arrived == [(ex.request.method, ex.request.path, ex.request.body) for ex in exchanges]
