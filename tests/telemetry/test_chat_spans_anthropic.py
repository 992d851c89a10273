"""Chat spans end to end: the anthropic SDK through the gateway to a replayed recording, spans read back from a
real OTLP/HTTP receiver. Expected values are read from the recorded SSE bytes."""

from __future__ import annotations

import aiohttp
import anthropic
import orjson

from llm_gateway.recordings import load
from llm_gateway.telemetry.chat_metrics import CHUNK_BUCKETS
from tests.support import FIXTURES
from tests.support.otlp import OTLPReceiver


def _sse_payloads(body: bytes) -> list[dict]:
    return [orjson.loads(line[5:]) for line in body.splitlines() if line.startswith(b"data:")]


async def test_streamed_tool_loop_spans_carry_recorded_usage(traced_gateway, receiver: OTLPReceiver):
    fixture = load(FIXTURES / "anthropic/tool-runner-loop.json")
    first, second = fixture.exchanges
    async with traced_gateway([fixture]) as (gateway, upstream):
        client = anthropic.AsyncAnthropic(base_url=gateway.url, api_key="sk-test-secret", max_retries=0)
        for exchange in (first, second):
            request = orjson.loads(exchange.request.body)
            async with client.beta.messages.stream(
                model=request["model"], max_tokens=request["max_tokens"], messages=request["messages"],
                tools=request["tools"],
            ) as stream:
                await stream.get_final_message()
    spans = await receiver.wait_for(lambda s: sum(x.name.startswith("chat ") for x in s) == 2)
    chats = sorted((s for s in spans if s.name.startswith("chat ")), key=lambda s: s.start_ns)
    for span, exchange in zip(chats, (first, second), strict=True):
        events = _sse_payloads(exchange.response.body)
        start = next(e for e in events if e["type"] == "message_start")["message"]
        delta = [e for e in events if e["type"] == "message_delta"][-1]
        usage = {**start["usage"], **{k: v for k, v in delta["usage"].items() if v is not None}}
        expected_input = usage["input_tokens"] + (usage.get("cache_read_input_tokens") or 0) + (
            usage.get("cache_creation_input_tokens") or 0)
        attrs = span.attributes
        assert span.kind == "CLIENT"
        assert span.name == f"chat {orjson.loads(exchange.request.body)['model']}"
        assert attrs["gen_ai.operation.name"] == "chat"
        assert attrs["gen_ai.provider.name"] == "anthropic"
        assert attrs["gen_ai.response.id"] == start["id"]
        assert attrs["gen_ai.response.model"] == start["model"]
        assert attrs["gen_ai.response.finish_reasons"] == [delta["delta"]["stop_reason"]]
        assert attrs["gen_ai.usage.input_tokens"] == expected_input
        assert attrs["gen_ai.usage.output_tokens"] == usage["output_tokens"]
        assert attrs["gen_ai.request.stream"] is True
        assert attrs["http.response.status_code"] == 200
        assert attrs["server.address"] == "127.0.0.1"
        assert 0 < attrs["gen_ai.response.time_to_first_chunk"] <= span.duration_s
        assert "gen_ai.input.messages" not in attrs  # content capture is off by default
        assert not any("sk-test-secret" in str(v) for v in attrs.values())
        # The upstream HTTP call is the aiohttp-client span, a child of this chat span in the same trace.
        http_children = [s for s in spans if s.parent_id == span.span_id]
        assert [(c.kind, c.trace_id) for c in http_children] == [("CLIENT", span.trace_id)]
        assert http_children[0].attributes.get("http.request.method", http_children[0].attributes.get(
            "http.method")) == "POST"
    # Relayed unchanged: no trace context is injected into what the upstream receives.
    assert [r.headers.get("traceparent") for r in upstream.requests] == [None, None]
    credentials = {r.headers.get("x-api-key") or r.headers.get("authorization") for r in upstream.requests}
    assert len(credentials) == 1 and "sk-test-secret" in credentials.pop()  # forwarded, never recorded


async def test_content_capture_puts_messages_on_span(traced_gateway, receiver: OTLPReceiver):
    fixture = load(FIXTURES / "anthropic/tools-streaming.json")
    (exchange,) = fixture.exchanges
    request = orjson.loads(exchange.request.body)
    async with traced_gateway([fixture], capture=True) as (gateway, _):
        client = anthropic.AsyncAnthropic(base_url=gateway.url, api_key="k", max_retries=0)
        async with client.messages.stream(model=request["model"], max_tokens=request["max_tokens"],
                                          messages=request["messages"], tools=request["tools"]) as stream:
            await stream.get_final_message()
    spans = await receiver.wait_for(lambda s: any(x.name.startswith("chat ") for x in s))
    chat = next(s for s in spans if s.name.startswith("chat "))
    inputs = orjson.loads(chat.attributes["gen_ai.input.messages"])
    assert inputs[0]["role"] == "user"
    assert inputs[0]["parts"][0]["content"] == request["messages"][0]["content"]
    outputs = orjson.loads(chat.attributes["gen_ai.output.messages"])
    recorded_tools = [e["content_block"]["name"] for e in _sse_payloads(exchange.response.body)
                      if e["type"] == "content_block_start" and e["content_block"]["type"] == "tool_use"]
    assert [p["name"] for p in outputs[0]["parts"] if p["type"] == "tool_call"] == recorded_tools
    definitions = orjson.loads(chat.attributes["gen_ai.tool.definitions"])
    assert [d["name"] for d in definitions] == [t["name"] for t in request["tools"]]


async def test_genai_metrics_are_exported_with_the_recorded_token_counts(traced_gateway, receiver: OTLPReceiver):
    fixture = load(FIXTURES / "anthropic/tools-streaming.json")
    (exchange,) = fixture.exchanges
    request = orjson.loads(exchange.request.body)
    async with traced_gateway([fixture]) as (gateway, _):
        client = anthropic.AsyncAnthropic(base_url=gateway.url, api_key="k", max_retries=0)
        async with client.messages.stream(model=request["model"], max_tokens=request["max_tokens"],
                                          messages=request["messages"], tools=request["tools"]) as stream:
            await stream.get_final_message()
    # gateway.stop() flushed the meter provider
    assert {"gen_ai.client.token.usage", "gen_ai.client.operation.duration",
            "gen_ai.client.operation.time_to_first_chunk"} <= receiver.metric_names
    events = _sse_payloads(exchange.response.body)
    start = next(e for e in events if e["type"] == "message_start")["message"]["usage"]
    delta = [e for e in events if e["type"] == "message_delta"][-1]["usage"]
    expected = {"input": start["input_tokens"] + (start.get("cache_read_input_tokens") or 0)
                + (start.get("cache_creation_input_tokens") or 0), "output": delta["output_tokens"]}
    sums: dict[str, float] = {}
    for metric in receiver.metrics["gen_ai.client.token.usage"]:
        for point in metric.histogram.data_points:
            attrs = {kv.key: kv.value.string_value for kv in point.attributes}
            assert attrs["gen_ai.provider.name"] == "anthropic"
            assert list(point.explicit_bounds)[:3] == [1, 4, 16]
            sums[attrs["gen_ai.token.type"]] = point.sum
    assert sums == expected


async def test_time_per_output_chunk_has_one_point_per_recorded_chunk_after_the_first(traced_gateway,
                                                                                      receiver: OTLPReceiver):
    """The gateway aggregates this histogram itself (local_histogram.py); it arrives in the same exports, with the
    same dimensions, as the SDK's metrics. The recorded chunks are 10 ms apart and replayed at that pace."""
    fixture = load(FIXTURES / "anthropic/composed-server-tool-use.json")
    (exchange,) = fixture.exchanges
    async with traced_gateway([fixture], speed=1.0) as (gateway, _), aiohttp.ClientSession() as session, \
            session.post(gateway.url + exchange.request.path, data=exchange.request.body,
                         headers={"content-type": "application/json", "x-api-key": "k"}) as response:
        assert await response.read() == b"".join(c.data for c in exchange.response.chunks)
    (chunk,) = receiver.metrics["gen_ai.client.operation.time_per_output_chunk"][-1].histogram.data_points
    (duration,) = receiver.metrics["gen_ai.client.operation.duration"][-1].histogram.data_points
    # Pieces that arrive together are one chunk to the reader, so up to one point per recorded chunk after the
    # first; the gaps add up to the time from the first piece to the last, as recorded.
    chunks = exchange.response.chunks
    assert 1 <= chunk.count <= len(chunks) - 1 and chunk.count == sum(chunk.bucket_counts)
    assert chunks[-1].at - chunks[0].at - 0.03 <= chunk.sum <= duration.sum
    assert list(chunk.explicit_bounds) == CHUNK_BUCKETS
    assert {kv.key: kv.value.string_value for kv in chunk.attributes}["gen_ai.provider.name"] == "anthropic"
