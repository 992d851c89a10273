"""Bedrock chat spans end to end: boto3 `bedrock-runtime` through the gateway to a replayed recording, spans read
back from a real OTLP/HTTP receiver. Each turn sends the recorded request body; expected values come from the
recorded bytes, decoded here with botocore's own event-stream reader. SigV4 signs the gateway's host; the replay
upstream checks no signature."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import unquote

import boto3
import orjson
import pytest
from botocore.config import Config

from llm_gateway.recordings import Exchange, load
from llm_gateway.server import Gateway
from llm_gateway.telemetry.chat_attributes import USAGE_CACHE_WRITE
from tests.support import FIXTURES
from tests.support.chat_spans import (
    anthropic_usage,
    assert_call_span,
    assert_loop_trace,
    event_frames,
    invoke_chunks,
    json_attribute,
    replay_turns,
)
from tests.support.otlp import OTLPReceiver

_ACCESS_KEY = "AKIDGATEWAYTEST0001"
_SECRET_KEY = "gateway-test-secret-key"
_SESSION_TOKEN = "gateway-test-session-token"
_SECRETS = (_ACCESS_KEY, _SECRET_KEY, _SESSION_TOKEN)

Frames = list[tuple[str, dict[str, Any]]]


def _client(gateway: Gateway) -> Any:
    return boto3.client(
        "bedrock-runtime", endpoint_url=gateway.url, region_name="us-east-1", aws_access_key_id=_ACCESS_KEY,
        aws_secret_access_key=_SECRET_KEY, aws_session_token=_SESSION_TOKEN,
        config=Config(retries={"max_attempts": 1}),
    )


def _threaded(call: Callable[[Any, Exchange], Any]) -> Callable[[Any, Exchange], Awaitable[Any]]:
    """boto3 blocks; the gateway runs on this event loop."""
    return lambda client, exchange: asyncio.to_thread(call, client, exchange)


def _model_id(exchange: Exchange) -> str:
    return unquote(exchange.request.path.split("/")[2])


def _converse_kwargs(exchange: Exchange) -> dict[str, Any]:
    return {"modelId": _model_id(exchange), **orjson.loads(exchange.request.body)}


@_threaded
def _converse(client: Any, exchange: Exchange) -> dict[str, Any]:
    return client.converse(**_converse_kwargs(exchange))


@_threaded
def _converse_stream(client: Any, exchange: Exchange) -> list[dict[str, Any]]:
    return list(client.converse_stream(**_converse_kwargs(exchange))["stream"])


@_threaded
def _invoke_stream(client: Any, exchange: Exchange) -> list[dict[str, Any]]:
    response = client.invoke_model_with_response_stream(modelId=_model_id(exchange), body=exchange.request.body)
    return [orjson.loads(event["chunk"]["bytes"]) for event in response["body"]]


def _expected(exchange: Exchange, *, stream: bool, finish: str, usage: dict[str, Any]) -> dict[str, Any]:
    return {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "aws.bedrock",
        "gen_ai.request.model": _model_id(exchange),
        "gen_ai.request.stream": stream,
        "http.response.status_code": 200,
        "gen_ai.response.finish_reasons": [finish],
        **usage,
    }


def _usage(input_tokens: int, output_tokens: int, read: int | None, write: int | None) -> dict[str, Any]:
    """Bedrock's input counts (Converse and Anthropic alike) leave the cache out; the convention's include it."""
    return {
        "gen_ai.usage.input_tokens": input_tokens + (read or 0) + (write or 0),
        "gen_ai.usage.output_tokens": output_tokens,
        "gen_ai.usage.cache_read.input_tokens": read,
        USAGE_CACHE_WRITE: write,
        "gen_ai.usage.reasoning.output_tokens": None,
    }


def _converse_usage(usage: dict[str, int]) -> dict[str, Any]:
    return _usage(usage["inputTokens"], usage["outputTokens"], usage.get("cacheReadInputTokens"),
                  usage.get("cacheWriteInputTokens"))


# Converse names neither a completion id nor the model that answered.
_CONVERSE_NAMES_NOTHING = {"gen_ai.response.id": None, "gen_ai.response.model": None}


def _converse_answered(exchanges: list[Exchange]) -> set[str]:
    """Tool use ids the requests answer with a toolResult."""
    return {block["toolResult"]["toolUseId"] for ex in exchanges for m in orjson.loads(ex.request.body)["messages"]
            for block in m["content"] if "toolResult" in block}


def _stream_calls(frames: Frames) -> list[tuple[str, str]]:
    return [(p["start"]["toolUse"]["toolUseId"], p["start"]["toolUse"]["name"]) for kind, p in frames
            if kind == "contentBlockStart" and "toolUse" in p["start"]]


async def test_converse_tool_loop_spans_carry_recorded_usage_and_tool_ids(traced_gateway, receiver: OTLPReceiver):
    fixture = load(FIXTURES / "bedrock/converse-tool-loop.json")
    run = await replay_turns(traced_gateway, receiver, fixture, _client, _converse)

    calls: list[tuple[str, str]] = []
    for reply, span, exchange in zip(run.results, run.chats, fixture.exchanges, strict=True):
        recorded = orjson.loads(exchange.response.body)
        assert reply["output"]["message"] == recorded["output"]["message"]
        assert (reply["stopReason"], reply["usage"]) == (recorded["stopReason"], recorded["usage"])
        assert_call_span(span, upstream_url=run.upstream_url, expected={
            **_expected(exchange, stream=False, finish=recorded["stopReason"],
                        usage=_converse_usage(recorded["usage"])),
            **_CONVERSE_NAMES_NOTHING,
        })
        calls += [(b["toolUse"]["toolUseId"], b["toolUse"]["name"]) for b in recorded["output"]["message"]["content"]
                  if "toolUse" in b]
    assert_loop_trace(run.spans, calls, _converse_answered(fixture.exchanges), *_SECRETS)


@pytest.mark.parametrize("name", ["converse-stream-tool-loop", "converse-stream-parallel-tools"])
async def test_converse_stream_tool_loop_spans_carry_metadata_usage_and_tool_ids(
    traced_gateway, receiver: OTLPReceiver, name: str
) -> None:
    fixture = load(FIXTURES / f"bedrock/{name}.json")
    run = await replay_turns(traced_gateway, receiver, fixture, _client, _converse_stream)

    calls: list[tuple[str, str]] = []
    for events, span, exchange in zip(run.results, run.chats, fixture.exchanges, strict=True):
        frames = event_frames(exchange.response.body)
        once = dict(frames)  # messageStop and metadata come once each
        got: Frames = [next(iter(e.items())) for e in events]  # the SDK's events, one key each
        assert [kind for kind, _ in got] == [kind for kind, _ in frames]
        assert _stream_calls(got) == _stream_calls(frames)
        assert [p["delta"] for kind, p in got if kind == "contentBlockDelta"] == [  # text and tool input pieces
            p["delta"] for kind, p in frames if kind == "contentBlockDelta"]
        assert got[-1][1]["usage"] == once["metadata"]["usage"]
        assert_call_span(span, upstream_url=run.upstream_url, expected={
            **_expected(exchange, stream=True, finish=once["messageStop"]["stopReason"],
                        usage=_converse_usage(once["metadata"]["usage"])),
            **_CONVERSE_NAMES_NOTHING,
        })
        calls += _stream_calls(frames)
    assert_loop_trace(run.spans, calls, _converse_answered(fixture.exchanges), *_SECRETS)


async def test_invoke_stream_anthropic_tool_loop_spans_carry_message_id_and_body_usage(
    traced_gateway, receiver: OTLPReceiver
) -> None:
    fixture = load(FIXTURES / "bedrock/invoke-stream-anthropic-tool-loop.json")
    run = await replay_turns(traced_gateway, receiver, fixture, _client, _invoke_stream)

    calls: list[tuple[str, str]] = []
    for chunks, span, exchange in zip(run.results, run.chats, fixture.exchanges, strict=True):
        events = invoke_chunks(exchange.response.body)
        assert chunks == events
        start = next(e for e in events if e["type"] == "message_start")["message"]
        stop_reason = next(e for e in events if e["type"] == "message_delta")["delta"]["stop_reason"]
        # The body's own usage, not the invocation metrics Bedrock appends (they disagree in this recording).
        usage = anthropic_usage(events)
        assert_call_span(span, upstream_url=run.upstream_url, expected={
            **_expected(exchange, stream=True, finish=stop_reason, usage=_usage(
                usage["input_tokens"], usage["output_tokens"], usage.get("cache_read_input_tokens"),
                usage.get("cache_creation_input_tokens"))),
            "gen_ai.response.id": start["id"],
            "gen_ai.response.model": start["model"],
            "gen_ai.request.max_tokens": orjson.loads(exchange.request.body)["max_tokens"],
        })
        calls += [(e["content_block"]["id"], e["content_block"]["name"]) for e in events
                  if e["type"] == "content_block_start" and e["content_block"]["type"] == "tool_use"]
    answered = {block["tool_use_id"] for ex in fixture.exchanges for m in orjson.loads(ex.request.body)["messages"]
                if isinstance(m["content"], list) for block in m["content"] if block.get("type") == "tool_result"}
    assert_loop_trace(run.spans, calls, answered, *_SECRETS)


async def test_converse_stream_with_capture_puts_recorded_messages_and_tools_on_span(
    traced_gateway, receiver: OTLPReceiver
) -> None:
    fixture = load(FIXTURES / "bedrock/converse-stream-tool-loop.json")
    run = await replay_turns(traced_gateway, receiver, fixture, _client, _converse_stream, capture=True, turns=1)

    (span,) = run.chats
    first = fixture.exchanges[0]
    request = orjson.loads(first.request.body)
    inputs = json_attribute(span, "gen_ai.input.messages")
    assert [m["role"] for m in inputs] == [m["role"] for m in request["messages"]]
    assert inputs[0]["parts"][0]["content"] == request["messages"][0]["content"][0]["text"]
    frames = event_frames(first.response.body)
    (output,) = json_attribute(span, "gen_ai.output.messages")
    assert dict(frames)["messageStop"]["stopReason"] == "tool_use"
    assert output["finish_reason"] == "tool_call"  # the conventions' word for it (issue 14)
    assert [(p["id"], p["name"]) for p in output["parts"] if p["type"] == "tool_call"] == _stream_calls(frames)
    definitions = json_attribute(span, "gen_ai.tool.definitions")
    assert [d["name"] for d in definitions] == [t["toolSpec"]["name"] for t in request["toolConfig"]["tools"]]
