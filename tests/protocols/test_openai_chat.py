"""OpenAI Chat Completions adapter: recorded and composed exchanges, cut-short streams, tool loops, capture.
(Any chunking, arbitrary bytes, capture off: test_every_adapter.py.)

Expected values are read from the recordings here, with plain json over the `data:` lines, never typed in.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from llm_gateway.protocols.base import HttpRequest
from llm_gateway.protocols.exchange import ChatRecord
from llm_gateway.protocols.openai_chat import ADAPTER
from llm_gateway.recordings import Exchange, load
from tests.support import FIXTURES as ALL_FIXTURES
from tests.support.exchanges import exchange_with, exchanges_of, fixtures_in, params
from tests.support.records import run_exchange

FIXTURES = ALL_FIXTURES / "openai_chat"


# ---------------------------------------------------------------------------------------------------------
# Helpers shared with test_openai_responses (no protocol knowledge in them)


def model_calls(directory: Path, call_path: str) -> list[Any]:
    """pytest params of every model call recorded in `directory` (id `<fixture>#<index>`)."""
    return params(exchanges_of(directory, lambda ex: ex.request.path.partition("?")[0].endswith(call_path)))


def body(exchange: Exchange) -> bytes:
    return exchange.response.body


def request_json(exchange: Exchange) -> dict[str, Any]:
    return json.loads(exchange.request.body)


def sse_json(exchange: Exchange) -> list[dict[str, Any]]:
    """The JSON documents of the `data:` lines of a recorded SSE body (`[DONE]` left out)."""
    lines = body(exchange).decode().split("\n")
    return [json.loads(line[6:]) for line in lines if line.startswith("data: ") and line[6:] != "[DONE]"]


def is_sse(exchange: Exchange) -> bool:
    return any(k.lower() == "content-type" and "event-stream" in v for k, v in exchange.response.headers)


def answer_text(record: ChatRecord, choice: int = 0) -> str:
    assert record.output_messages is not None
    message = record.output_messages[choice]
    return "".join(p["content"] for p in message["parts"] if p["type"] == "text")


def http(path: str, request: dict[str, Any], url: str) -> HttpRequest:
    return HttpRequest("POST", path, {}, json.dumps(request).encode(), url)


CALLS = model_calls(FIXTURES, "/chat/completions")
#: the recordings whose stream is whole (the composed cut one is tested on its own)
COMPLETE = [c for c in CALLS if "cut" not in str(c.id)]


# ---------------------------------------------------------------------------------------------------------
# Every fixture: what the recording says, garbage


@pytest.mark.parametrize("exchange", COMPLETE)
def test_recorded_exchange_whole_body_matches_recording(exchange: Exchange) -> None:
    record = run_exchange(ADAPTER, exchange, capture=True)
    req = request_json(exchange)
    assert record.request.model == req["model"]
    assert record.request.stream is bool(req.get("stream"))
    assert record.request.tool_names == [t["function"]["name"] for t in req.get("tools", [])]
    expected = _expected_from_recording(exchange)
    assert record.response_id == expected["id"]
    assert record.response_model == expected["model"]
    assert record.finish_reasons == expected["finish_reasons"]
    assert (record.input_tokens, record.output_tokens, record.cache_read, record.reasoning_tokens) == expected["usage"]
    assert [(c.call_id, c.name, c.arguments) for c in record.tool_calls] == expected["tool_calls"]
    for choice, text in enumerate(expected["texts"]):
        assert answer_text(record, choice) == text
    assert record.error_type is None and record.parse_issues == []


def _expected_from_recording(exchange: Exchange) -> dict[str, Any]:
    """id, model, finish reasons, usage, tool calls and texts, read plainly from the recorded body."""
    if is_sse(exchange):
        chunks = sse_json(exchange)
        choices = [(c["index"], c) for chunk in chunks for c in chunk["choices"]]
        deltas = [(i, c["delta"]) for i, c in choices]
        usage = next((chunk["usage"] for chunk in chunks if chunk.get("usage")), None)
        calls: dict[int, list[str]] = {}
        for _, delta in deltas:
            for call in delta.get("tool_calls", []):
                entry = calls.setdefault(call["index"], [call.get("id"), call["function"].get("name"), ""])
                entry[2] += call["function"].get("arguments", "")
        n = 1 + max(i for i, _ in choices)
        texts = ["".join(d.get("content") or "" for i, d in deltas if i == c) for c in range(n)]
        reasons = sorted((i, c["finish_reason"]) for i, c in choices if c["finish_reason"])
        doc = chunks[0]
    else:
        doc = json.loads(body(exchange))
        usage = doc.get("usage")
        messages = [c["message"] for c in doc["choices"]]
        calls = {
            i: [c["id"], c["function"]["name"], c["function"]["arguments"]]
            for m in messages
            for i, c in enumerate(m.get("tool_calls") or [])
        }
        texts = [m.get("content") or "" for m in messages]
        reasons = [(c["index"], c["finish_reason"]) for c in doc["choices"]]
    return {
        "id": doc["id"],
        "model": doc["model"],
        "finish_reasons": [r for _, r in reasons],
        "usage": (None, None, None, None)
        if usage is None
        else (
            usage["prompt_tokens"],
            usage["completion_tokens"],
            usage["prompt_tokens_details"]["cached_tokens"],
            usage["completion_tokens_details"]["reasoning_tokens"],
        ),
        "tool_calls": [tuple(calls[i]) for i in sorted(calls)],
        "texts": texts,
    }


@pytest.mark.parametrize("exchange", COMPLETE)
def test_recording_cut_before_first_finish_is_truncated(exchange: Exchange) -> None:
    raw = body(exchange)
    # up to the first finish_reason: no choice has finished, so a missing [DONE] means a cut stream
    cut = raw.find(b'"finish_reason":"') if is_sse(exchange) else len(raw) // 2
    assert cut > 0
    record = run_exchange(ADAPTER, exchange, chunks=[raw[:cut]])
    assert record.error_type == "stream_truncated"


# ---------------------------------------------------------------------------------------------------------
# Tool loops


def _loops() -> Iterator[Any]:
    for name, fixture in fixtures_in(FIXTURES).items():
        exchanges = fixture.exchanges
        for i in range(len(exchanges) - 1):
            if any(m["role"] == "tool" for m in request_json(exchanges[i + 1])["messages"]):
                yield pytest.param(exchanges[i], exchanges[i + 1], id=f"{name}-{i}")


@pytest.mark.parametrize(("first", "second"), list(_loops()))
def test_tool_loop_result_ids_equal_previous_call_ids(first: Exchange, second: Exchange) -> None:
    calls = run_exchange(ADAPTER, first).tool_calls
    followup = run_exchange(ADAPTER, second).request
    recorded_calls = _expected_from_recording(first)["tool_calls"]
    recorded_results = [m["tool_call_id"] for m in request_json(second)["messages"] if m["role"] == "tool"]
    assert [c.call_id for c in calls] == [c[0] for c in recorded_calls]
    assert [r.call_id for r in followup.tool_results] == recorded_results
    assert {r.call_id for r in followup.tool_results} == {c.call_id for c in calls}
    assert {r.call_id: r.name for r in followup.tool_results} == {c.call_id: c.name for c in calls}
    assert followup.history_tool_calls == {c.call_id: c.name for c in calls}


@pytest.mark.parametrize(("first", "second"), list(_loops()))
def test_tool_loop_turns_share_conversation_fingerprint(first: Exchange, second: Exchange) -> None:
    one, two = run_exchange(ADAPTER, first).request, run_exchange(ADAPTER, second).request
    assert one.conversation_fingerprint == two.conversation_fingerprint is not None


# ---------------------------------------------------------------------------------------------------------
# Capture


@pytest.mark.parametrize("exchange", CALLS)
def test_capture_on_keeps_messages_and_tools(exchange: Exchange) -> None:
    req = run_exchange(ADAPTER, exchange, capture=True).request
    messages = request_json(exchange)["messages"]
    system = [m["content"] for m in messages if m["role"] in ("system", "developer")]
    assert [p["content"] for p in req.system_instructions or []] == system
    assert req.input_messages is not None
    assert [m["role"] for m in req.input_messages] == [
        m["role"] for m in messages if m["role"] not in ("system", "developer")
    ]
    tools = request_json(exchange).get("tools")
    assert req.tool_definitions == (
        [{"type": "function", **{k: t["function"][k] for k in ("name", "description", "parameters")}} for t in tools]
        if tools
        else None
    )
    results = [m["content"] for m in messages if m["role"] == "tool"]
    assert [r.content for r in req.tool_results] == results


# ---------------------------------------------------------------------------------------------------------
# Composed fixtures


def _composed(name: str) -> Exchange:
    return load(FIXTURES / f"composed-{name}.json").exchanges[0]


def test_n2_stream_reports_each_choice() -> None:
    exchange = _composed("n2-streaming")
    record = run_exchange(ADAPTER, exchange, capture=True)
    expected = _expected_from_recording(exchange)
    assert record.request.params.choice_count == request_json(exchange)["n"]
    assert record.finish_reasons == expected["finish_reasons"]
    assert [answer_text(record, 0), answer_text(record, 1)] == expected["texts"]
    # OpenAI's words are the conventions' here (length, stop)
    assert [m["finish_reason"] for m in record.output_messages or []] == expected["finish_reasons"] == ["length",
                                                                                                       "stop"]
    assert (record.input_tokens, record.output_tokens, record.cache_read) == expected["usage"][:3]


def test_stream_without_include_usage_reports_no_usage() -> None:
    exchange = _composed("stream-without-usage")
    assert "stream_options" not in request_json(exchange)
    record = run_exchange(ADAPTER, exchange)
    assert (record.input_tokens, record.output_tokens, record.cache_read, record.reasoning_tokens) == (None,) * 4
    assert record.finish_reasons == _expected_from_recording(exchange)["finish_reasons"]
    assert record.error_type is None


def test_stream_cut_before_done_is_truncated_and_keeps_text() -> None:
    exchange = _composed("stream-cut-before-done")
    record = run_exchange(ADAPTER, exchange, capture=True)
    whole_chunks = [json.loads(line[6:]) for line in body(exchange).decode().split("\n\n") if line.endswith("}")]
    assert record.error_type == "stream_truncated"
    assert record.finish_reasons == []
    assert record.input_tokens is None
    assert answer_text(record) == "".join(c["choices"][0]["delta"]["content"] for c in whole_chunks)


# ---------------------------------------------------------------------------------------------------------
# Edge cases inline


def _sse(*docs: dict[str, Any] | str) -> bytes:
    return b"".join(f"data: {d if isinstance(d, str) else json.dumps(d)}\n\n".encode() for d in docs)


_ASK = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "hi"}]}


def _chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> dict[str, Any]:
    return {"id": "c1", "model": "m-1", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra}


def test_stream_without_done_after_every_choice_finished_is_complete() -> None:
    raw = _sse(_chunk({"content": "ok"}), _chunk({}, "stop"))
    record = run_exchange(ADAPTER, exchange_with("/v1/chat/completions", _ASK, raw, "text/event-stream"))
    assert record.error_type is None
    assert record.finish_reasons == ["stop"]


def test_error_chunk_mid_stream_is_provider_error() -> None:
    error = {"error": {"message": "Upstream overloaded", "type": "server_error", "code": 502}}
    raw = _sse(_chunk({"content": "par"}), error)
    record = run_exchange(ADAPTER, exchange_with("/v1/chat/completions", _ASK, raw, "text/event-stream"))
    assert (record.error_type, record.error_message) == (error["error"]["type"], error["error"]["message"])


@pytest.mark.parametrize("field", ["reasoning_content", "reasoning"])
def test_reasoning_delta_is_reasoning_not_text(field: str) -> None:
    raw = _sse(_chunk({field: "think"}), _chunk({"content": "answer"}), _chunk({}, "stop"), "[DONE]")
    record = run_exchange(ADAPTER, exchange_with("/v1/chat/completions", _ASK, raw, "text/event-stream"), capture=True)
    assert record.output_messages is not None
    assert record.output_messages[0]["parts"] == [
        {"type": "reasoning", "content": "think"},
        {"type": "text", "content": "answer"},
    ]


def test_usage_details_map_to_cache_read_and_reasoning() -> None:
    usage = {
        "prompt_tokens": 2006,
        "completion_tokens": 300,
        "prompt_tokens_details": {"cached_tokens": 1920},
        "completion_tokens_details": {"reasoning_tokens": 256},
    }
    raw = _sse(_chunk({}, "stop"), {"id": "c1", "choices": [], "usage": usage}, "[DONE]")
    record = run_exchange(ADAPTER, exchange_with("/v1/chat/completions", _ASK, raw, "text/event-stream"))
    assert (record.input_tokens, record.output_tokens, record.cache_read, record.reasoning_tokens) == (
        usage["prompt_tokens"],
        usage["completion_tokens"],
        usage["prompt_tokens_details"]["cached_tokens"],
        usage["completion_tokens_details"]["reasoning_tokens"],
    )


def test_request_fields_map_to_params_hints_and_output_type() -> None:
    request = {
        "model": "gpt-4.1",
        "temperature": 0.2,
        "top_p": 0.5,
        "max_tokens": 100,
        "stop": ["END", "STOP"],
        "seed": 3,
        "frequency_penalty": 0.1,
        "presence_penalty": -0.1,
        "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {}}},
        "user": "user-42",
        "prompt_cache_key": "pck-1",
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "what is this"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
                    {"type": "image_url", "image_url": {"url": "https://example.test/cat.jpg"}},
                ],
            },
        ],
    }
    req = ADAPTER.parse_request(_http(request), capture=True)
    p = req.params
    assert (p.temperature, p.top_p, p.max_tokens, p.stop_sequences, p.seed) == (0.2, 0.5, 100, ["END", "STOP"], 3)
    assert (p.frequency_penalty, p.presence_penalty, p.choice_count) == (0.1, -0.1, None)
    assert req.output_type == "json"
    assert req.hints == {"user_id": request["user"], "prompt_cache_key": request["prompt_cache_key"]}
    assert req.input_messages == [
        {
            "role": "user",
            "parts": [
                {"type": "text", "content": "what is this"},
                {"type": "blob", "mime_type": "image/png", "modality": "image", "content": "iVBORw0KGgo="},
                {"type": "uri", "uri": "https://example.test/cat.jpg", "modality": "image"},
            ],
        }
    ]


def test_request_without_ids_has_no_hints() -> None:
    assert ADAPTER.parse_request(_http(_ASK), capture=False).hints == {}


def _http(request: dict[str, Any], url: str = "https://api.openai.com/v1/chat/completions") -> HttpRequest:
    return http("/v1/chat/completions", request, url)


@pytest.mark.parametrize(
    ("url", "provider"),
    [
        ("https://api.openai.com/v1/chat/completions", "openai"),
        ("https://my-res.openai.azure.com/openai/deployments/d/chat/completions", "azure.ai.openai"),
        ("https://my-res.cognitiveservices.azure.com/openai/v1/chat/completions", "azure.ai.openai"),
        ("https://my-res.services.ai.azure.com/models/chat/completions", "azure.ai.inference"),
        ("https://my-res.services.ai.azure.com/openai/v1/chat/completions", "azure.ai.openai"),
        ("https://api.groq.com/openai/v1/chat/completions", "groq"),
        ("https://api.deepseek.com/chat/completions", "deepseek"),
        ("https://api.mistral.ai/v1/chat/completions", "mistral_ai"),
        ("https://api.x.ai/v1/chat/completions", "x_ai"),
        ("https://api.perplexity.ai/chat/completions", "perplexity"),
        ("https://api.cohere.ai/compatibility/v1/chat/completions", "cohere"),
        ("https://us-south.ml.cloud.ibm.com/ml/v1/chat/completions", "ibm.watsonx.ai"),
        ("https://generativelanguage.googleapis.com/v1beta/openai/chat/completions", "gcp.gemini"),
        ("https://us-central1-aiplatform.googleapis.com/v1/projects/p/locations/l/endpoints/openapi", "gcp.vertex_ai"),
        ("https://bedrock-runtime.us-west-2.amazonaws.com/openai/v1/chat/completions", "aws.bedrock"),
        # compatible servers the conventions have no name for: `openai`, as the OpenAI instrumentation names them,
        # never their host (issue 14); the host is in server.address
        ("https://openrouter.ai/api/v1/chat/completions", "openai"),
        ("http://127.0.0.1:11434/v1/chat/completions", "openai"),
        ("http://vllm.lan:8000/v1/chat/completions", "openai"),
        ("https://notx.ai/v1/chat/completions", "openai"),
        ("", "openai"),
    ],
)
def test_upstream_host_names_the_provider(url: str, provider: str) -> None:
    assert ADAPTER.provider_name(_http(_ASK, url)) == provider
