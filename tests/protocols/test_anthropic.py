"""Anthropic Messages adapter: every recorded and composed exchange; garbage and cut-short bodies; content
capture; the pieces the Bedrock adapter reuses. (Any chunking, capture off: test_every_adapter.py.)

Expected values are read from the recorded bytes by the plain readers below (`recorded_facts`,
`recorded_usage`), never from the adapter.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict

from llm_gateway.protocols import events as ev
from llm_gateway.protocols.anthropic import ADAPTER, AnthropicStreamState, message_events, parse_messages_body
from llm_gateway.protocols.base import HttpResponseHead
from llm_gateway.protocols.exchange import ChatRecord, ChatRequest, ExchangeBuilder
from llm_gateway.recordings import Exchange, fixtures
from tests.support import FIXTURES
from tests.support.exchanges import decoded_body, exchanges_of, fixtures_in, params
from tests.support.records import http_request, one_by_one, output_text, record_of


def header(exchange: Exchange, name: str) -> str:
    return (fixtures.header(exchange.response.headers, name) or "").lower()


LOADED = fixtures_in(FIXTURES / "anthropic")
ALL = exchanges_of(LOADED)
EXCHANGES = params(ALL)
SSE_EXCHANGES = params((name, ex) for name, ex in ALL if "event-stream" in header(ex, "content-type"))
CUTS = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


# ---------------------------------------------------------------------------------------------------------
# Plain readers of the recorded bytes


def recorded_stream(exchange: Exchange) -> list[dict[str, Any]]:
    """The JSON of every `data:` line."""
    lines = decoded_body(exchange).decode().split("\n")
    return [json.loads(line[len("data:") :]) for line in lines if line.startswith("data:")]


def arguments(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def recorded_facts(exchange: Exchange) -> dict[str, Any]:
    """What the response says: id, model, finish reasons, latest usage fields, tool calls, text, error."""
    if "event-stream" not in header(exchange, "content-type"):
        doc = json.loads(decoded_body(exchange))
        calls = [(b["id"], b["name"], b["input"]) for b in doc["content"] if b["type"].endswith("tool_use")]
        text = "".join(b["text"] for b in doc["content"] if b["type"] == "text")
        return {"id": doc["id"], "model": doc["model"], "finish": [doc["stop_reason"]], "usage": doc["usage"],
                "calls": calls, "text": text, "error": None, "complete": True}
    facts: dict[str, Any] = {"id": None, "model": None, "finish": [], "usage": {}, "text": "", "error": None,
                             "complete": False}
    calls: dict[int, list[Any]] = {}
    for obj in recorded_stream(exchange):
        kind, delta, block = obj["type"], obj.get("delta", {}), obj.get("content_block", {})
        if kind == "message_start":
            facts["id"], facts["model"] = obj["message"]["id"], obj["message"]["model"]
            facts["usage"].update(obj["message"]["usage"])
        elif kind == "message_delta":
            facts["finish"] = [delta["stop_reason"]]
            facts["usage"].update({k: v for k, v in obj["usage"].items() if v is not None})
        elif kind == "content_block_start" and block["type"].endswith("tool_use"):
            calls[obj["index"]] = [block["id"], block["name"], ""]
        elif delta.get("type") == "input_json_delta":
            calls[obj["index"]][2] += delta["partial_json"]
        elif delta.get("type") == "text_delta":
            facts["text"] += delta["text"]
        elif kind == "error":
            facts["error"] = (obj["error"]["type"], obj["error"]["message"])
        facts["complete"] |= kind == "message_stop"
    facts["calls"] = [(cid, name, arguments(args)) for cid, name, args in calls.values()]
    return facts


def recorded_usage(usage: dict[str, Any]) -> tuple[int | None, ...]:
    """(input, output, cache_read, cache_write): Anthropic's input_tokens excludes the cache, so all three add up."""
    parts = ("input_tokens", "cache_read_input_tokens", "cache_creation_input_tokens")
    inputs = [usage[key] for key in parts if usage.get(key) is not None]
    return (sum(inputs) if inputs else None, usage.get("output_tokens"), usage.get("cache_read_input_tokens"),
            usage.get("cache_creation_input_tokens"))


def recorded_request(exchange: Exchange) -> dict[str, Any]:
    return json.loads(exchange.request.body)


def request_blocks(body: dict[str, Any]) -> list[dict[str, Any]]:
    return [b for m in body["messages"] if isinstance(m["content"], list) for b in m["content"]]


def run(exchange: Exchange, chunks: list[bytes] | None = None, *, capture: bool = True) -> ChatRecord:
    return record_of(ADAPTER, exchange, chunks, capture=capture)


def parse(exchange: Exchange, *, capture: bool) -> ChatRequest:
    return ADAPTER.parse_request(http_request(exchange), capture)


# ---------------------------------------------------------------------------------------------------------
# Responses: recorded facts, any chunking


@pytest.mark.parametrize("exchange", EXCHANGES)
def test_recording_whole_gives_recorded_facts(exchange: Exchange) -> None:
    facts = recorded_facts(exchange)
    record = run(exchange)
    assert (record.response_id, record.response_model) == (facts["id"], facts["model"])
    assert record.finish_reasons == facts["finish"]
    usage = (record.input_tokens, record.output_tokens, record.cache_read, record.cache_write)
    assert usage == recorded_usage(facts["usage"])
    assert [(c.call_id, c.name, arguments(c.arguments)) for c in record.tool_calls] == facts["calls"]
    assert output_text(record) == facts["text"]
    if facts["error"]:
        assert (record.error_type, record.error_message) == facts["error"]
    else:
        assert record.error_type == (None if facts["complete"] else "stream_truncated")
    assert record.parse_issues == []


@pytest.mark.parametrize("exchange", SSE_EXCHANGES)
def test_crlf_lines_split_anywhere_match_lf(exchange: Exchange) -> None:
    body = exchange.response.body.replace(b"\n", b"\r\n")
    assert run(exchange, one_by_one(body)) == run(exchange)


@pytest.mark.parametrize("exchange", SSE_EXCHANGES)
@CUTS
@given(data=st.data())
def test_stream_cut_short_is_truncated_until_its_terminal_event(exchange: Exchange, data: st.DataObject) -> None:
    body = exchange.response.body
    end = data.draw(st.integers(0, len(body)))
    error = recorded_facts(exchange)["error"]
    # the terminal event (message_stop, or an error event) counts once its JSON has arrived whole
    terminal = body.find(b'"type":"error"' if error else b'"type":"message_stop"')
    read = terminal >= 0 and end >= body.rindex(b"}", 0, body.index(b"\n", terminal)) + 1
    ended = error[0] if error else None
    assert run(exchange, [body[:end]]).error_type == (ended if read else "stream_truncated")


# ---------------------------------------------------------------------------------------------------------
# Garbage never raises


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.just(2**70) | st.floats(allow_nan=False) | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)


def shape(obj: dict[str, Any]) -> tuple[Any, ...]:
    blocks = (obj.get("delta"), obj.get("content_block"))
    return (obj.get("type"), *(b.get("type") for b in blocks if isinstance(b, dict)), *sorted(obj))


#: one JSON object of each shape the recordings hold: stream events, whole messages, request bodies
SAMPLES = list({
    shape(obj): obj
    for obj in [
        *(obj for _, ex in ALL if "event-stream" in header(ex, "content-type") for obj in recorded_stream(ex)),
        *(json.loads(decoded_body(ex)) for _, ex in ALL if "json" in header(ex, "content-type")),
        *(recorded_request(ex) for _, ex in ALL),
    ]
}.values())


def value_paths(node: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    children = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else []
    return [path] + [p for key, child in children for p in value_paths(child, (*path, key))]


def replaced(node: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    copy = dict(node) if isinstance(node, dict) else list(node)
    copy[path[0]] = replaced(node[path[0]], path[1:], value)
    return copy


@st.composite
def garbled(draw: st.DrawFn) -> dict[str, Any]:
    """A recorded object with about a quarter of its values (any depth, the root aside) swapped for any JSON."""
    obj = draw(st.sampled_from(SAMPLES))
    for path in reversed(value_paths(obj)[1:]):  # children before parents: every path still resolves
        if draw(st.integers(0, 3)) == 0:
            obj = replaced(obj, path, draw(JSON))
    return obj


def sse_frames(objs: list[Any]) -> bytes:
    return b"".join(b"event: x\ndata: " + json.dumps(obj).encode() + b"\n\n" for obj in objs)


@settings(max_examples=100, deadline=None)
@given(body=st.binary(max_size=512) | st.lists(garbled(), max_size=6).map(sse_frames),
       ctype=st.sampled_from(["text/event-stream", "application/json", ""]), stream=st.booleans())
def test_arbitrary_response_bytes_never_raise(body: bytes, ctype: str, stream: bool) -> None:
    head = HttpResponseHead(200, CIMultiDict({"content-type": ctype}))
    parser = ADAPTER.response_parser(ChatRequest(stream=stream), head)
    builder = ExchangeBuilder(ChatRequest(), 200, capture=True)
    builder.add(1, parser.feed(body[:7]) + parser.feed(body[7:]) + parser.close())
    assert isinstance(builder.finish(), ChatRecord)


@settings(max_examples=100, deadline=None)
@given(obj=garbled())
def test_arbitrary_objects_never_raise_in_shared_pieces(obj: dict[str, Any]) -> None:
    builder = ExchangeBuilder(ChatRequest(), 200, capture=True)
    builder.add(1, AnthropicStreamState().events(obj) + message_events(obj))
    builder.finish()
    parse_messages_body(obj, capture=True)


# ---------------------------------------------------------------------------------------------------------
# Composed cases


def composed(name: str, index: int = 0) -> Exchange:
    return LOADED[f"composed-{name}"].exchanges[index]


def stream_events(exchange: Exchange) -> list[ev.Event]:
    parser = ADAPTER.response_parser(parse(exchange, capture=False), HttpResponseHead(200, CIMultiDict(
        exchange.response.headers)))
    return parser.feed(exchange.response.body) + parser.close()


def test_error_event_midstream_is_provider_error_not_truncation() -> None:
    exchange = composed("error-midstream")
    (error,) = [obj["error"] for obj in recorded_stream(exchange) if obj["type"] == "error"]
    events = stream_events(exchange)
    assert [e for e in events if isinstance(e, ev.ProviderError | ev.Truncated)] == [
        ev.ProviderError(error["type"], error["message"])
    ]
    record = run(exchange)
    assert (record.error_type, record.error_message) == (error["type"], error["message"])


def test_stream_without_message_stop_is_truncated_and_keeps_partial_call() -> None:
    exchange = composed("truncated")
    assert isinstance(stream_events(exchange)[-1], ev.Truncated)
    record = run(exchange)
    (call,) = recorded_facts(exchange)["calls"]
    assert record.error_type == "stream_truncated"
    assert [(c.call_id, c.name, c.arguments) for c in record.tool_calls] == [call]


def test_redacted_thinking_block_counts_as_reasoning() -> None:
    exchange = composed("redacted-thinking")
    objs = recorded_stream(exchange)
    thinking = "".join(o["delta"]["thinking"] for o in objs if o.get("delta", {}).get("type") == "thinking_delta")
    assert ev.ReasoningDelta("") in stream_events(exchange)
    record = run(exchange)
    (message,) = record.output_messages or []
    assert message["parts"][0] == {"type": "reasoning", "content": thinking}


def test_redacted_thinking_history_keeps_reasoning_and_error_result() -> None:
    exchange = composed("redacted-thinking")
    body = recorded_request(exchange)
    request = parse(exchange, capture=True)
    assistant, answer = body["messages"][1]["content"], body["messages"][2]["content"]
    assert [r.call_id for r in request.tool_results] == [answer[0]["tool_use_id"]]
    assert [(r.name, r.is_error) for r in request.tool_results] == [(assistant[2]["name"], True)]
    assert request.tool_results[0].content == answer[0]["content"][0]["text"]
    roles = [(m["role"], [p["type"] for p in m["parts"]]) for m in request.input_messages or []]
    assert roles == [("user", ["text"]), ("assistant", ["reasoning", "reasoning", "tool_call"]),
                     ("tool", ["tool_call_response"]), ("user", ["text"])]
    assert request.system_instructions == [{"type": "text", "content": body["system"]}]


def test_server_tool_use_is_a_server_call_and_citations_add_nothing() -> None:
    exchange = composed("server-tool-use")
    record = run(exchange)
    facts = recorded_facts(exchange)
    assert [(c.call_id, c.name, arguments(c.arguments), c.type) for c in record.tool_calls] == [
        (*facts["calls"][0], "server")
    ]
    assert output_text(record) == facts["text"]
    assert record.parse_issues == []


def test_claude_code_style_request_gives_params_hints_and_definitions() -> None:
    exchange = composed("server-tool-use")
    body = recorded_request(exchange)
    request = parse(exchange, capture=True)
    params = request.params
    assert (params.temperature, params.top_p, params.top_k) == (body["temperature"], body["top_p"], body["top_k"])
    assert (params.max_tokens, params.stop_sequences) == (body["max_tokens"], body["stop_sequences"])
    assert request.hints == {"user_id": body["metadata"]["user_id"]}
    assert request.tool_names == [tool["name"] for tool in body["tools"]]
    web, read = body["tools"]
    assert request.tool_definitions == [
        {"type": web["type"], "name": web["name"]},
        {"type": "function", "name": read["name"], "description": read["description"],
         "parameters": read["input_schema"]},
    ]
    image = body["messages"][0]["content"][0]["source"]
    assert request.input_messages is not None
    # a blob part carries its bytes, base64 as sent (the conventions' schema requires them; issue 14)
    assert request.input_messages[0]["parts"][0] == {"type": "blob", "mime_type": image["media_type"],
                                                     "modality": "image", "content": image["data"]}


def test_billing_header_does_not_change_fingerprints() -> None:
    body = recorded_request(composed("server-tool-use"))
    other = json.loads(json.dumps(body).replace("cch=51234", "cch=99999"))
    first, second = parse_messages_body(body, capture=False), parse_messages_body(other, capture=False)
    assert first.conversation_fingerprint == second.conversation_fingerprint
    assert first.agent_fingerprint == second.agent_fingerprint


@pytest.mark.parametrize("index", [0, 1, 2])
def test_cache_heavy_usage_adds_cache_to_input_once(index: int) -> None:
    exchange = composed("cache-usage", index)
    usage = recorded_facts(exchange)["usage"]
    record = run(exchange)
    assert usage["cache_read_input_tokens"] > 0
    assert record.input_tokens == (usage["input_tokens"] + usage["cache_read_input_tokens"]
                                   + usage["cache_creation_input_tokens"])
    assert (record.cache_read, record.cache_write) == (usage["cache_read_input_tokens"],
                                                       usage["cache_creation_input_tokens"])
    assert record.output_tokens == usage["output_tokens"]


def test_structured_output_request_is_json_output() -> None:
    exchange = composed("cache-usage", 1)
    assert recorded_request(exchange)["output_format"]["type"] == "json_schema"
    assert parse(exchange, capture=False).output_type == "json"
    assert parse(composed("cache-usage", 0), capture=False).output_type is None


# ---------------------------------------------------------------------------------------------------------
# Requests, capture on and off


@pytest.mark.parametrize("exchange", EXCHANGES)
def test_request_fields_match_recorded_body(exchange: Exchange) -> None:
    body = recorded_request(exchange)
    request = parse(exchange, capture=False)
    assert (request.operation, request.model, request.stream) == ("chat", body["model"], body.get("stream", False))
    params = request.params
    assert (params.max_tokens, params.temperature, params.top_p, params.top_k, params.stop_sequences) == tuple(
        body.get(key) for key in ("max_tokens", "temperature", "top_p", "top_k", "stop_sequences")
    )
    assert request.tool_names == [tool["name"] for tool in body.get("tools", [])]
    blocks = request_blocks(body)
    calls = {b["id"]: b["name"] for b in blocks if b["type"] in ("tool_use", "server_tool_use")}
    assert request.history_tool_calls == calls
    results = [(b["tool_use_id"], calls.get(b["tool_use_id"]), b.get("is_error", False))
               for b in blocks if b["type"] == "tool_result"]
    assert [(r.call_id, r.name, r.is_error) for r in request.tool_results] == results
    assert request.hints == ({"user_id": body["metadata"]["user_id"]} if "metadata" in body else {})


@pytest.mark.parametrize("exchange", EXCHANGES)
def test_capture_on_keeps_every_block_in_genai_shapes(exchange: Exchange) -> None:
    body = recorded_request(exchange)
    request = parse(exchange, capture=True)
    messages = request.input_messages or []
    blocks = sum(len(m["content"]) if isinstance(m["content"], list) else 1 for m in body["messages"])
    assert sum(len(m["parts"]) for m in messages) == blocks
    assert {m["role"] for m in messages} <= {"user", "assistant", "tool"}
    tool_parts = [p for m in messages if m["role"] == "tool" for p in m["parts"]]
    assert [p["id"] for p in tool_parts] == [r.call_id for r in request.tool_results]
    assert [p["response"] for p in tool_parts] == [r.content for r in request.tool_results]
    assert [d["name"] for d in request.tool_definitions or []] == request.tool_names
    system = body.get("system")
    texts = [system] if isinstance(system, str) else [b["text"] for b in system or []]
    assert [s["content"] for s in request.system_instructions or []] == texts


def test_tool_runner_loop_second_request_answers_first_call() -> None:
    first, second = LOADED["tool-runner-loop"].exchanges
    (call,) = run(first).tool_calls
    request = parse(second, capture=True)
    body = recorded_request(second)
    (result,) = request.tool_results
    assert result.call_id == call.call_id
    assert result.name == call.name == request.history_tool_calls[call.call_id]
    assert result.content == body["messages"][-1]["content"][0]["content"]
    assert json.loads(call.arguments) == body["messages"][1]["content"][0]["input"]


# ---------------------------------------------------------------------------------------------------------
# The pieces the Bedrock adapter reuses, and content-type dispatch


@pytest.mark.parametrize("exchange", SSE_EXCHANGES)
def test_stream_state_on_parsed_objects_matches_sse_parser(exchange: Exchange) -> None:
    state = AnthropicStreamState()
    events = [event for obj in recorded_stream(exchange) for event in state.events(obj)]
    parsed = stream_events(exchange)
    assert events == [e for e in parsed if not isinstance(e, ev.Truncated)]
    assert state.saw_message_stop == recorded_facts(exchange)["complete"]


def test_bedrock_message_stop_with_invocation_metrics_ends_stream() -> None:
    state = AnthropicStreamState()
    metrics = {"inputTokenCount": 10, "outputTokenCount": 5, "invocationLatency": 300, "firstByteLatency": 90}
    assert state.events({"type": "message_stop", "amazon-bedrock-invocationMetrics": metrics}) == []
    assert state.saw_message_stop


def test_bedrock_native_body_leaves_model_and_stream_to_the_caller() -> None:
    body = {"anthropic_version": "bedrock-2023-05-31", "max_tokens": 300,
            "messages": [{"role": "user", "content": "hi"}]}
    request = parse_messages_body(body, capture=True)
    assert (request.model, request.stream, request.params.max_tokens) == (None, False, 300)
    assert request.input_messages == [{"role": "user", "parts": [{"type": "text", "content": "hi"}]}]


def test_request_body_that_is_not_an_object_is_refused() -> None:
    with pytest.raises(ValueError):
        parse_messages_body([], capture=False)  # type: ignore[arg-type]


@pytest.mark.parametrize(("ctype", "stream", "streamed"), [
    ("application/json", True, False),  # the content type wins over the request
    ("text/event-stream; charset=utf-8", False, True),
    ("", True, True),
    ("", False, False),
])
def test_content_type_decides_streamed_before_request(ctype: str, stream: bool, streamed: bool) -> None:
    parser = ADAPTER.response_parser(ChatRequest(stream=stream), HttpResponseHead(200, CIMultiDict(
        {"content-type": ctype})))
    closing = parser.close()
    assert any(isinstance(e, ev.Truncated) for e in closing) is streamed


def test_provider_name_is_anthropic() -> None:
    assert ADAPTER.provider_name(http_request(ALL[0][1])) == "anthropic"
