"""Bedrock runtime adapter: every recorded and composed exchange; cut-short bodies and garbage requests; the
request readings (Converse, Anthropic and prompt-style InvokeModel bodies). (Any chunking, garbage responses,
capture off: test_every_adapter.py.)

Expected values come from the recorded bytes through the plain readers below: botocore's `EventStreamBuffer`
frames the bodies, `json` reads the payloads, and `recorded_facts` picks the fields. Never from the adapter.
"""

from __future__ import annotations

import base64
import json
from typing import Any
from urllib.parse import unquote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llm_gateway.protocols.bedrock import ADAPTER
from llm_gateway.protocols.exchange import ChatRecord
from llm_gateway.recordings import Exchange, fixtures
from tests.support import FIXTURES
from tests.support.eventstream_decode import botocore_frames
from tests.support.eventstream_encode import event, exception, frame
from tests.support.exchanges import exchange_with, exchanges_of, fixtures_in, params
from tests.support.records import http_request, output_text, record_of

LOADED = fixtures_in(FIXTURES / "bedrock")
ALL = exchanges_of(LOADED)
EXCHANGES = params(ALL)
RECORDED_LOOPS = [pytest.param(f, id=name) for name, f in LOADED.items() if not f.source.get("composed")]
EVENTSTREAM = "application/vnd.amazon.eventstream"


# ---------------------------------------------------------------------------------------------------------
# Plain readers of the recorded bytes


def content_type(exchange: Exchange) -> str:
    return fixtures.header(exchange.response.headers, "content-type") or ""


def recorded_events(exchange: Exchange) -> list[tuple[str, dict[str, Any]]]:
    """(event type, JSON) per frame; an InvokeModel chunk as its native JSON; exceptions as ("!type", ...)."""
    out = []
    for headers, payload in botocore_frames(exchange.response.body):
        doc = json.loads(payload)
        if headers[":message-type"] == "exception":
            out.append(("!" + headers[":exception-type"], doc))
        elif headers[":event-type"] == "chunk":
            out.append(("chunk", json.loads(base64.b64decode(doc["bytes"]))))
        else:
            out.append((headers[":event-type"], doc))
    return out


def bedrock_usage(usage: dict[str, Any], suffix: str) -> tuple[int | None, ...]:
    """(input, output, cache read, cache write); Bedrock's input count leaves out the cache, so all add up."""
    inputs = [usage[f"{name}{suffix}"] for name in ("input", "cacheReadInput", "cacheWriteInput")
              if f"{name}{suffix}" in usage]
    return (sum(inputs) if inputs else None, usage.get(f"output{suffix}"),
            usage.get(f"cacheReadInput{suffix}"), usage.get(f"cacheWriteInput{suffix}"))


def anthropic_usage(usage: dict[str, Any]) -> tuple[int | None, ...]:
    inputs = [usage[k] for k in ("input_tokens", "cache_read_input_tokens", "cache_creation_input_tokens")
              if k in usage]
    return (sum(inputs), usage.get("output_tokens"), usage.get("cache_read_input_tokens"),
            usage.get("cache_creation_input_tokens"))


def header_usage(exchange: Exchange) -> tuple[int | None, ...]:
    def count(name: str) -> int | None:
        value = fixtures.header(exchange.response.headers, f"x-amzn-bedrock-{name}-token-count")
        return int(value) if value else None

    read, write = count("cache-read-input"), count("cache-write-input")
    return (sum(n for n in (count("input"), read, write) if n is not None), count("output"), read, write)


def recorded_facts(exchange: Exchange) -> dict[str, Any]:
    """What the response says: id, model, finish reasons, usage, tool calls by index, text, error."""
    facts: dict[str, Any] = {"id": None, "model": None, "finish": [], "usage": (None, None, None, None),
                             "calls": {}, "text": "", "error": None}
    if EVENTSTREAM not in content_type(exchange):
        doc = json.loads(exchange.response.body)
        if "output" in doc:  # Converse
            blocks = doc["output"]["message"]["content"]
            uses = {i: b["toolUse"] for i, b in enumerate(blocks) if "toolUse" in b}
            facts["calls"] = {i: [u["toolUseId"], u["name"], json.dumps(u["input"])] for i, u in uses.items()}
            facts.update(finish=[doc["stopReason"]], usage=bedrock_usage(doc["usage"], "Tokens"),
                         text="".join(b.get("text", "") for b in blocks))
        elif doc.get("type") == "message":  # Anthropic message
            facts["calls"] = {i: [b["id"], b["name"], json.dumps(b["input"])]
                              for i, b in enumerate(doc["content"]) if b["type"] == "tool_use"}
            facts.update(id=doc["id"], model=doc["model"], finish=[doc["stop_reason"]],
                         usage=anthropic_usage(doc["usage"]),
                         text="".join(b["text"] for b in doc["content"] if b["type"] == "text"))
        else:  # Llama: usage only in the headers
            facts.update(finish=[doc["stop_reason"]], text=doc["generation"], usage=header_usage(exchange))
        return facts
    anthropic: dict[str, Any] = {}
    for kind, doc in recorded_events(exchange):
        if kind.startswith("!"):
            facts["error"] = (kind[1:], doc["message"])
        elif kind == "chunk" and "type" in doc:  # Anthropic events
            _anthropic_event(doc, facts, anthropic)
        elif kind == "chunk":  # Llama chunks: usage from the invocation metrics of the last one
            facts["text"] += doc["generation"]
            facts["finish"] = [doc["stop_reason"]] if doc["stop_reason"] else facts["finish"]
            if "amazon-bedrock-invocationMetrics" in doc:
                facts["usage"] = bedrock_usage(doc["amazon-bedrock-invocationMetrics"], "TokenCount")
        else:
            _converse_event(kind, doc, facts)
    if anthropic:
        facts["usage"] = anthropic_usage(anthropic)
    return facts


def _converse_event(kind: str, doc: dict[str, Any], facts: dict[str, Any]) -> None:
    delta = doc.get("delta", {})
    if kind == "contentBlockStart" and "toolUse" in doc["start"]:
        use = doc["start"]["toolUse"]
        facts["calls"][doc["contentBlockIndex"]] = [use["toolUseId"], use["name"], ""]
    elif "toolUse" in delta:
        facts["calls"][doc["contentBlockIndex"]][2] += delta["toolUse"]["input"]
    elif "text" in delta:
        facts["text"] += delta["text"]
    elif kind == "messageStop":
        facts["finish"] = [doc["stopReason"]]
    elif kind == "metadata":
        facts["usage"] = bedrock_usage(doc["usage"], "Tokens")


def _anthropic_event(doc: dict[str, Any], facts: dict[str, Any], usage: dict[str, Any]) -> None:
    delta, block = doc.get("delta", {}), doc.get("content_block", {})
    if doc["type"] == "message_start":
        facts.update(id=doc["message"]["id"], model=doc["message"]["model"])
        usage.update(doc["message"]["usage"])
    elif doc["type"] == "message_delta":
        facts["finish"] = [delta["stop_reason"]]
        usage.update(doc["usage"])
    elif block.get("type") == "tool_use":
        facts["calls"][doc["index"]] = [block["id"], block["name"], ""]
    elif delta.get("type") == "input_json_delta":
        facts["calls"][doc["index"]][2] += delta["partial_json"]
    elif delta.get("type") == "text_delta":
        facts["text"] += delta["text"]


def run(exchange: Exchange, chunks: list[bytes] | None = None, *, capture: bool = True) -> ChatRecord:
    return record_of(ADAPTER, exchange, chunks, capture=capture)


def inline(path: str, request: dict[str, Any], body: bytes, ctype: str = EVENTSTREAM) -> Exchange:
    """A small exchange built in the test, for edge cases no fixture needs."""
    return exchange_with(path, request, body, ctype)


# ---------------------------------------------------------------------------------------------------------
# Every exchange: the record says what the recording says


@pytest.mark.parametrize("exchange", EXCHANGES)
def test_exchange_whole_matches_recorded_facts(exchange):
    facts = recorded_facts(exchange)
    record = run(exchange)
    assert record.response_id == facts["id"]
    assert record.response_model == facts["model"]
    assert record.finish_reasons == facts["finish"]
    usage = (record.input_tokens, record.output_tokens, record.cache_read, record.cache_write)
    assert usage == facts["usage"]
    calls = [(c.call_id, c.name, json.loads(c.arguments)) for c in record.tool_calls]
    assert calls == [(cid, name, json.loads(args)) for cid, name, args in facts["calls"].values()]
    assert output_text(record) == facts["text"]
    if facts["error"]:
        assert (record.error_type, record.error_message) == facts["error"]


@pytest.mark.parametrize("exchange", EXCHANGES)
def test_request_names_model_stream_and_tools_from_recording(exchange):
    path = exchange.request.path
    body = json.loads(exchange.request.body)
    tools = [t["toolSpec"]["name"] for t in body.get("toolConfig", {}).get("tools", []) if "toolSpec" in t]
    tools += [t["name"] for t in body.get("tools", [])]
    request = run(exchange).request
    assert request.model == unquote(path.split("/")[2])
    assert request.stream is path.endswith("-stream")
    assert request.tool_names == tools
    assert request.parse_issue is None
    assert ADAPTER.provider_name(http_request(exchange)) == "aws.bedrock"


@pytest.mark.parametrize("fixture", RECORDED_LOOPS)
def test_tool_loop_results_answer_previous_calls(fixture):
    first, second = fixture.exchanges
    called = {cid: name for cid, name, _ in recorded_facts(first)["calls"].values()}
    body = json.loads(second.request.body)
    blocks = [b for m in body["messages"] for b in m["content"]]
    answered = [b["toolResult"]["toolUseId"] if "toolResult" in b else b["tool_use_id"]
                for b in blocks if "toolResult" in b or b.get("type") == "tool_result"]
    assert answered == list(called)
    request = run(second).request
    assert [r.call_id for r in request.tool_results] == answered
    assert [r.name for r in request.tool_results] == [called[cid] for cid in answered]
    assert request.history_tool_calls == called


# ---------------------------------------------------------------------------------------------------------
# Cut-short recordings, garbage requests (garbage responses: test_every_adapter.py)


@settings(max_examples=80, deadline=None)
@given(index=st.integers(0, len(ALL) - 1), keep=st.floats(0, 1, exclude_max=True))
def test_cut_short_recording_is_truncated_or_unreadable(index, keep):
    exchange = ALL[index][1]
    body = exchange.response.body
    record = run(exchange, [body[: int(keep * len(body))]])
    assert record.error_type == "stream_truncated" or record.parse_issues


@settings(max_examples=50, deadline=None)
@given(data=st.binary(max_size=300))
def test_garbage_request_body_keeps_model_from_path(data):
    exchange = inline("/model/meta.llama3-8b-instruct-v1%3A0/invoke-with-response-stream", {}, b"")
    exchange.request.body = data
    request = run(exchange).request
    assert request.model == "meta.llama3-8b-instruct-v1:0"
    assert request.stream is True


# ---------------------------------------------------------------------------------------------------------
# Composed streams: errors, truncation, damage


def composed(name: str, index: int = 0) -> Exchange:
    return LOADED[f"composed-{name}"].exchanges[index]


@pytest.mark.parametrize("index", [0, 1])
def test_exception_frame_gives_provider_error_not_truncation(index):
    exchange = composed("exception-midstream", index)
    frames = botocore_frames(exchange.response.body)
    (headers, payload), *_ = [f for f in frames if f[0][":message-type"] != "event"]
    record = run(exchange)
    assert record.error_type == headers[":exception-type"]
    assert record.error_message == json.loads(payload)["message"]
    assert record.finish_reasons == []


def test_stream_cut_after_message_stop_is_truncated():
    exchange = composed("cut-before-metadata")
    kinds = [kind for kind, _ in recorded_events(exchange)]
    assert kinds[-1] == "messageStop" and "metadata" not in kinds
    record = run(exchange)
    assert record.error_type == "stream_truncated"
    assert record.finish_reasons == recorded_facts(exchange)["finish"]
    assert record.input_tokens is None


def test_damaged_frame_gives_parse_issue_and_keeps_what_came_before():
    exchange = composed("corrupt-crc")
    readable = botocore_frames(exchange.response.body)  # botocore stops at the damaged frame too
    record = run(exchange)
    assert record.parse_issues and "checksum" in record.parse_issues[0]
    assert output_text(record) == recorded_facts(exchange)["text"] and len(readable) == 2
    assert record.error_type is None and record.finish_reasons == [] and record.input_tokens is None


def test_reasoning_and_cache_usage_are_read():
    exchange = composed("reasoning-cache")
    events = recorded_events(exchange)
    deltas = [d["delta"] for kind, d in events if kind == "contentBlockDelta"]
    thinking = "".join(d["reasoningContent"].get("text", "") for d in deltas if "reasoningContent" in d)
    usage = next(d["usage"] for k, d in events if k == "metadata")
    record = run(exchange)
    assert output_text(record, "reasoning") == thinking
    read, write = usage["cacheReadInputTokens"], usage["cacheWriteInputTokens"]
    assert record.input_tokens == usage["inputTokens"] + read + write
    assert (record.cache_read, record.cache_write) == (read, write)


def test_converse_request_fields_are_read():
    exchange = composed("reasoning-cache")
    body = json.loads(exchange.request.body)
    config, extra = body["inferenceConfig"], body["additionalModelRequestFields"]
    request = run(exchange).request
    params = request.params
    assert (params.max_tokens, params.temperature, params.top_p, params.stop_sequences, params.top_k) == (
        config["maxTokens"], config["temperature"], config["topP"], config["stopSequences"], extra["top_k"])
    assert request.model.startswith("arn:aws:bedrock:") and "%" not in request.model
    assert request.hints == {"session_id": body["requestMetadata"]["session_id"]}
    assert request.system_instructions == [{"type": "text", "content": body["system"][0]["text"]}]
    result = body["messages"][2]["content"][0]["toolResult"]
    (recorded,) = request.tool_results
    assert (recorded.call_id, recorded.is_error, recorded.content) == (
        result["toolUseId"], True, result["content"][0]["text"])
    image = request.input_messages[0]["parts"][1]
    sent = body["messages"][0]["content"][1]["image"]["source"]["bytes"]
    assert image == {"type": "blob", "mime_type": "image/png", "modality": "image", "content": sent}
    thought = body["messages"][1]["content"][0]["reasoningContent"]["reasoningText"]["text"]
    assert request.input_messages[1]["parts"][0] == {"type": "reasoning", "content": thought}


def test_prompt_style_invoke_is_a_text_completion():
    exchange = composed("invoke-llama")
    body = json.loads(exchange.request.body)
    request = run(exchange).request
    assert request.operation == "text_completion"
    assert (request.params.max_tokens, request.params.temperature, request.params.top_p) == (
        body["max_gen_len"], body["temperature"], body["top_p"])
    prompt = {"type": "text", "content": body["prompt"]}
    assert request.input_messages == [{"role": "user", "parts": [prompt]}]


def test_anthropic_invoke_body_usage_wins_over_headers():
    exchange = composed("invoke-anthropic")
    record = run(exchange)
    assert record.input_tokens == anthropic_usage(json.loads(exchange.response.body)["usage"])[0]
    assert record.request.hints == {"user_id": json.loads(exchange.request.body)["metadata"]["user_id"]}


# ---------------------------------------------------------------------------------------------------------
# Small edge cases, bytes made in the test


ANTHROPIC_STREAM = "/model/anthropic.claude-3-haiku-20240307-v1%3A0/invoke-with-response-stream"
NOVA_STREAM = "/model/amazon.nova-lite-v1%3A0/invoke-with-response-stream"


def chunk(native: dict[str, Any]) -> bytes:
    return event("chunk", {"bytes": base64.b64encode(json.dumps(native).encode()).decode()})


def test_invocation_metrics_give_usage_when_anthropic_events_have_none():
    body = b"".join([
        chunk({"type": "message_start", "message": {"id": "msg_1", "model": "claude-3-haiku"}}),
        chunk({"type": "message_delta", "delta": {"stop_reason": "end_turn"}}),
        chunk({"type": "message_stop",
               "amazon-bedrock-invocationMetrics": {"inputTokenCount": 11, "outputTokenCount": 7}}),
    ])
    record = run(inline(ANTHROPIC_STREAM, {"anthropic_version": "bedrock-2023-05-31"}, body))
    assert (record.input_tokens, record.output_tokens, record.error_type) == (11, 7, None)


def test_converse_shaped_invoke_chunks_are_read():
    body = b"".join([
        chunk({"messageStart": {"role": "assistant"}}),
        chunk({"contentBlockDelta": {"delta": {"text": "Hi"}, "contentBlockIndex": 0}}),
        chunk({"messageStop": {"stopReason": "end_turn"}}),
        chunk({"metadata": {"usage": {"inputTokens": 3, "outputTokens": 1}},
               "amazon-bedrock-invocationMetrics": {"inputTokenCount": 99, "outputTokenCount": 99}}),
    ])
    record = run(inline(NOVA_STREAM, {"messages": [{"role": "user", "content": [{"text": "Hi"}]}]}, body))
    assert (output_text(record), record.finish_reasons, record.input_tokens) == ("Hi", ["end_turn"], 3)
    assert record.error_type is None


def test_error_message_type_frame_gives_provider_error():
    error = frame({":message-type": "error", ":error-code": "InternalFailure", ":error-message": "boom"}, b"")
    record = run(inline(NOVA_STREAM, {}, event("messageStart", {"role": "assistant"}) + error))
    assert (record.error_type, record.error_message) == ("InternalFailure", "boom")


def test_unreadable_chunk_is_a_parse_issue_and_reading_goes_on():
    body = event("chunk", {"bytes": "not base64!"}) + event("messageStop", {"stopReason": "end_turn"})
    record = run(inline(NOVA_STREAM, {}, body))
    assert len(record.parse_issues) == 1 and record.finish_reasons == ["end_turn"]


def test_exception_after_text_keeps_the_text():
    body = event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "par"}})
    body += exception("internalServerException", "try again")
    record = run(inline(NOVA_STREAM, {}, body))
    assert (output_text(record), record.error_type) == ("par", "internalServerException")


def test_path_outside_the_runtime_api_gives_no_model():
    request = run(inline("/v1/other", {"messages": []}, b"", "application/json")).request
    assert request.model is None and request.parse_issue is None
