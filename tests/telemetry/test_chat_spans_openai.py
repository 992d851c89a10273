"""OpenAI chat spans end to end: the openai SDK (Chat Completions and Responses) through the gateway to a replayed
recording, spans read back from a real OTLP/HTTP receiver. Each call sends the recorded request body's fields;
expected values are read from the recorded SSE `data:` JSON or the response document."""

from __future__ import annotations

from typing import Any

import openai
import orjson
import pytest

from llm_gateway.recordings import Exchange, load
from llm_gateway.server import Gateway
from llm_gateway.telemetry.chat_attributes import USAGE_CACHE_WRITE
from tests.support import FIXTURES
from tests.support.chat_spans import (
    assert_call_span,
    assert_loop_trace,
    json_attribute,
    replay_turns,
    sse_json,
)
from tests.support.otlp import OTLPReceiver

_API_KEY = "sk-gateway-test-secret"


def _client(gateway: Gateway) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=gateway.url + "/v1", api_key=_API_KEY, max_retries=0)


def _body(exchange: Exchange) -> dict[str, Any]:
    return orjson.loads(exchange.request.body)


def _common(exchange: Exchange) -> dict[str, Any]:
    body = _body(exchange)
    return {
        "gen_ai.operation.name": "chat",
        # An OpenAI-style upstream the conventions have no name for is `openai`, never its host (issue 14); the
        # host is in server.address (checked for every chat span).
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": body["model"],
        "gen_ai.request.stream": body.get("stream", False),
        "http.response.status_code": 200,
    }


def _openai_usage(usage: dict[str, Any], input_key: str, output_key: str) -> dict[str, Any]:
    """prompt / input tokens already include the cached ones; reported zeros are reported values."""
    return {
        "gen_ai.usage.input_tokens": usage[input_key],
        "gen_ai.usage.output_tokens": usage[output_key],
        "gen_ai.usage.cache_read.input_tokens": (usage.get(f"{input_key}_details") or {}).get("cached_tokens"),
        USAGE_CACHE_WRITE: None,
        "gen_ai.usage.reasoning.output_tokens": (usage.get(f"{output_key}_details") or {}).get("reasoning_tokens"),
    }


# ---------------------------------------------------------------------------------------------- chat completions


def _chunk_calls(chunks: list[Any]) -> list[tuple[str, str]]:
    """(id, name) of the streamed tool calls: the fragment that opens a call carries both."""
    return [(t["id"], t["function"]["name"]) for c in chunks for ch in c["choices"]
            for t in ch["delta"].get("tool_calls") or () if t.get("id")]


async def _chat_stream(client: openai.AsyncOpenAI, exchange: Exchange) -> list[dict[str, Any]]:
    body = _body(exchange)
    assert body["stream_options"] == {"include_usage": True}  # the recording asked for usage
    stream = await client.chat.completions.create(**body)
    return [chunk.model_dump() async for chunk in stream]


@pytest.mark.parametrize("name", ["parallel-tools-streaming", "tool-loop-streaming"])
async def test_chat_completions_streamed_spans_carry_include_usage_chunk(
    traced_gateway, receiver: OTLPReceiver, name: str
) -> None:
    fixture = load(FIXTURES / f"openai_chat/{name}.json")
    run = await replay_turns(traced_gateway, receiver, fixture, _client, _chat_stream)

    calls: list[tuple[str, str]] = []
    for got, span, exchange in zip(run.results, run.chats, fixture.exchanges, strict=True):
        chunks = sse_json(exchange.response.body)
        assert _chunk_calls(got) == _chunk_calls(chunks)
        text = "".join(ch["delta"].get("content") or "" for c in chunks for ch in c["choices"])
        assert "".join(ch["delta"]["content"] or "" for c in got for ch in c["choices"]) == text
        usage = next(c["usage"] for c in chunks if c.get("usage"))
        assert got[-1]["usage"]["total_tokens"] == usage["total_tokens"]
        assert_call_span(span, upstream_url=run.upstream_url, expected={
            **_common(exchange),
            "gen_ai.response.id": chunks[0]["id"],
            "gen_ai.response.model": chunks[0]["model"],
            "gen_ai.response.finish_reasons": [ch["finish_reason"] for c in chunks for ch in c["choices"]
                                               if ch["finish_reason"]],
            **_openai_usage(usage, "prompt_tokens", "completion_tokens"),
        })
        calls += _chunk_calls(chunks)
    answered = {m["tool_call_id"] for ex in fixture.exchanges for m in _body(ex)["messages"] if m["role"] == "tool"}
    assert_loop_trace(run.spans, calls, answered, _API_KEY)


# ---------------------------------------------------------------------------------------------- responses


def _final_response(exchange: Exchange) -> dict[str, Any]:
    """The response object: the document, or the terminal event's `response` in a stream."""
    body = exchange.response.body
    if not body.startswith((b"event:", b"data:")):
        return orjson.loads(body)
    return next(e["response"] for e in sse_json(body) if e["type"] == "response.completed")


def _response_calls(response: dict[str, Any]) -> list[tuple[str, str]]:
    return [(o["call_id"], o["name"]) for o in response["output"] if o["type"] == "function_call"]


def _output_call_ids(exchange: Exchange) -> set[str]:
    items = _body(exchange)["input"]  # a string, or a list of items
    if not isinstance(items, list):
        return set()
    return {i["call_id"] for i in items if i.get("type") == "function_call_output"}


async def _response(client: openai.AsyncOpenAI, exchange: Exchange) -> Any:
    """The SDK's final response object, streamed or not as the recording was."""
    body = _body(exchange)
    if not body.get("stream"):
        return await client.responses.create(**body)
    stream = await client.responses.create(**body)
    events = [event async for event in stream]
    assert [e.type for e in events] == [e["type"] for e in sse_json(exchange.response.body)]
    return events[-1].response


@pytest.mark.parametrize("name", ["text-streaming", "function-call", "tool-loop-streaming"])
async def test_responses_spans_carry_completed_response(traced_gateway, receiver: OTLPReceiver, name: str) -> None:
    fixture = load(FIXTURES / f"openai_responses/{name}.json")
    run = await replay_turns(traced_gateway, receiver, fixture, _client, _response)

    calls: list[tuple[str, str]] = []
    for final, span, exchange in zip(run.results, run.chats, fixture.exchanges, strict=True):
        recorded = _final_response(exchange)
        assert final.id == recorded["id"]
        assert final.output_text == "".join(c["text"] for o in recorded["output"] if o["type"] == "message"
                                            for c in o["content"] if c["type"] == "output_text")
        assert [(o.call_id, o.name) for o in final.output if o.type == "function_call"] == _response_calls(recorded)
        assert_call_span(span, upstream_url=run.upstream_url, expected={
            **_common(exchange),
            "gen_ai.response.id": recorded["id"],
            "gen_ai.response.model": recorded["model"],
            "gen_ai.response.finish_reasons": [recorded["status"]],  # Responses has only a status
            **_openai_usage(recorded["usage"], "input_tokens", "output_tokens"),
        })
        calls += _response_calls(recorded)
    # tool-loop-streaming's client answered with the call's item id (`fc_...`), not its call_id: nothing pairs.
    assert_loop_trace(run.spans, calls, set().union(*map(_output_call_ids, fixture.exchanges)), _API_KEY)


# ---------------------------------------------------------------------------------------------- content capture


async def test_chat_completions_with_capture_puts_recorded_messages_and_tools_on_span(
    traced_gateway, receiver: OTLPReceiver
) -> None:
    fixture = load(FIXTURES / "openai_chat/parallel-tools-streaming.json")
    run = await replay_turns(traced_gateway, receiver, fixture, _client, _chat_stream, capture=True)

    (span,) = run.chats
    (exchange,) = fixture.exchanges
    body = _body(exchange)
    system = json_attribute(span, "gen_ai.system_instructions")
    assert [p["content"] for p in system] == [m["content"] for m in body["messages"] if m["role"] == "system"]
    inputs = json_attribute(span, "gen_ai.input.messages")
    users = [m["content"] for m in body["messages"] if m["role"] == "user"]
    assert [p["content"] for m in inputs if m["role"] == "user" for p in m["parts"]] == users
    chunks = sse_json(exchange.response.body)
    (output,) = json_attribute(span, "gen_ai.output.messages")
    assert next(ch["finish_reason"] for c in chunks for ch in c["choices"] if ch["finish_reason"]) == "tool_calls"
    assert output["finish_reason"] == "tool_call"  # the conventions' word for it (issue 14)
    assert [(p["id"], p["name"]) for p in output["parts"] if p["type"] == "tool_call"] == _chunk_calls(chunks)
    definitions = json_attribute(span, "gen_ai.tool.definitions")
    assert [d["name"] for d in definitions] == [t["function"]["name"] for t in body["tools"]]


async def test_responses_with_capture_puts_recorded_messages_and_tools_on_span(
    traced_gateway, receiver: OTLPReceiver
) -> None:
    fixture = load(FIXTURES / "openai_responses/function-call.json")
    run = await replay_turns(traced_gateway, receiver, fixture, _client, _response, capture=True)

    (span,) = run.chats
    (exchange,) = fixture.exchanges
    body = _body(exchange)
    inputs = json_attribute(span, "gen_ai.input.messages")
    assert [(m["role"], [p["content"] for p in m["parts"]]) for m in inputs] == [("user", [body["input"]])]
    recorded = _final_response(exchange)
    (output,) = json_attribute(span, "gen_ai.output.messages")
    assert recorded["status"] == "completed"
    assert output["finish_reason"] == "tool_call"  # completed with a function call (issue 14)
    assert [(p["id"], p["name"]) for p in output["parts"] if p["type"] == "tool_call"] == _response_calls(recorded)
    definitions = json_attribute(span, "gen_ai.tool.definitions")
    assert [d["name"] for d in definitions] == [t["name"] for t in body["tools"]]
