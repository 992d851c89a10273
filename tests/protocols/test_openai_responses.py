"""OpenAI Responses adapter: recorded and composed exchanges, cut-short streams, tool loops, capture. (Any
chunking, arbitrary bytes, capture off: test_every_adapter.py.)

Expected values are read from the recordings here, with plain json over the `data:` lines, never typed in.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from llm_gateway.protocols.exchange import ChatRecord
from llm_gateway.protocols.openai_responses import ADAPTER
from llm_gateway.recordings import Exchange, load
from tests.protocols.test_openai_chat import (
    answer_text,
    body,
    http,
    is_sse,
    model_calls,
    request_json,
    sse_json,
)
from tests.support import FIXTURES as ALL_FIXTURES
from tests.support.exchanges import exchange_with, fixtures_in
from tests.support.records import run_exchange

FIXTURES = ALL_FIXTURES / "openai_responses"
#: agents-handoff.json also holds the Agents SDK's POST /v1/traces/ingest calls: not model calls, left out
CALLS = model_calls(FIXTURES, "/responses")
_CALL_ITEMS = {"function_call": "arguments", "custom_tool_call": "input"}


def _recorded(exchange: Exchange) -> dict[str, Any]:
    """The finished response object, the output items and the streamed text, read plainly from the body."""
    if not is_sse(exchange):
        doc = json.loads(body(exchange))
        texts = [c["text"] for i in doc["output"] if i["type"] == "message" for c in i["content"]]
        return {"response": doc, "items": doc["output"], "text": "".join(texts)}
    events = sse_json(exchange)
    final = next(e["response"] for e in events if e["type"] in ("response.completed", "response.failed"))
    items = [e["item"] for e in events if e["type"] == "response.output_item.done"]
    text = "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
    return {"response": final, "items": items, "text": text}


def _recorded_calls(exchange: Exchange, id_field: str = "call_id") -> list[tuple[str, str, str]]:
    items = _recorded(exchange)["items"]
    return [(i[id_field], i["name"], i[_CALL_ITEMS[i["type"]]]) for i in items if i["type"] in _CALL_ITEMS]


# ---------------------------------------------------------------------------------------------------------
# Every fixture: what the recording says, garbage


@pytest.mark.parametrize("exchange", CALLS)
def test_recorded_exchange_whole_body_matches_recording(exchange: Exchange) -> None:
    record = run_exchange(ADAPTER, exchange, capture=True)
    req, recorded = request_json(exchange), _recorded(exchange)
    response = recorded["response"]
    assert (record.request.model, record.request.stream) == (req["model"], bool(req.get("stream")))
    assert record.response_id == response["id"]
    assert record.response_model == response["model"]
    assert record.finish_reasons == [response["status"]]
    usage = response["usage"]
    assert (record.input_tokens, record.output_tokens, record.cache_read, record.reasoning_tokens) == (
        (None,) * 4
        if usage is None
        else (
            usage["input_tokens"],
            usage["output_tokens"],
            usage["input_tokens_details"]["cached_tokens"],
            usage["output_tokens_details"]["reasoning_tokens"],
        )
    )
    assert [(c.call_id, c.name, c.arguments) for c in record.tool_calls] == _recorded_calls(exchange)
    if recorded["text"]:
        assert answer_text(record) == recorded["text"]
    error = response.get("error")
    assert (record.error_type, record.error_message) == ((error["code"], error["message"]) if error else (None, None))
    assert record.parse_issues == []


@pytest.mark.parametrize("exchange", CALLS)
def test_recording_cut_before_terminal_event_is_truncated(exchange: Exchange) -> None:
    raw = body(exchange)
    terminal = max(raw.find(b"event: response.completed"), raw.find(b"event: response.failed"))
    cut = terminal if is_sse(exchange) else len(raw) // 2
    assert cut > 0
    record = run_exchange(ADAPTER, exchange, chunks=[raw[:cut]])
    assert record.error_type == "stream_truncated"


# ---------------------------------------------------------------------------------------------------------
# Tool loops: the results a request adds answer the calls of the response before it

#: pydantic-ai (March 2025) sent the function_call item's `id` as the `call_id` of its result: a quirk of that
#: recording, kept as recorded. Everywhere else the result's call_id is the call's call_id.
_RESULT_ID_FIELD = {"tool-loop-streaming": "id"}


def _loops() -> Iterator[Any]:
    for name, fixture in fixtures_in(FIXTURES).items():
        calls = [e for e in fixture.exchanges if e.request.path.endswith("/responses")]
        for i in range(len(calls) - 1):
            yield pytest.param(calls[i], calls[i + 1], _RESULT_ID_FIELD.get(name, "call_id"), id=f"{name}-{i}")


def _recorded_result_ids(exchange: Exchange) -> list[str]:
    items = request_json(exchange)["input"]
    items = items if isinstance(items, list) else []
    return [i["call_id"] for i in items if i.get("type", "").endswith("_call_output")]


@pytest.mark.parametrize(("first", "second", "id_field"), list(_loops()))
def test_tool_loop_result_ids_equal_previous_call_ids(first: Exchange, second: Exchange, id_field: str) -> None:
    record, followup = run_exchange(ADAPTER, first), run_exchange(ADAPTER, second).request
    assert [c.call_id for c in record.tool_calls] == [c[0] for c in _recorded_calls(first)]
    assert [r.call_id for r in followup.tool_results] == _recorded_result_ids(second)
    earlier = set(_recorded_result_ids(first))
    added = [r for r in followup.tool_results if r.call_id not in earlier]
    assert [r.call_id for r in added] == [c[0] for c in _recorded_calls(first, id_field)]
    assert [r.name for r in added] == [c.name for c in record.tool_calls]
    if id_field == "call_id":
        assert [r.call_id for r in added] == [c.call_id for c in record.tool_calls]


# ---------------------------------------------------------------------------------------------------------
# Capture


def _system_texts(req: dict[str, Any]) -> list[str]:
    texts = [req["instructions"]] if req.get("instructions") else []
    items = req["input"] if isinstance(req["input"], list) else []
    for item in items:
        if item.get("role") in ("system", "developer") and item.get("type", "message") == "message":
            content = item["content"]
            texts += [content] if isinstance(content, str) else [p["text"] for p in content]
    return texts


@pytest.mark.parametrize("exchange", CALLS)
def test_capture_on_keeps_instructions_tools_and_results(exchange: Exchange) -> None:
    req = run_exchange(ADAPTER, exchange, capture=True).request
    recorded = request_json(exchange)
    assert [p["content"] for p in req.system_instructions or []] == _system_texts(recorded)
    assert req.input_messages is not None
    assert [t["name"] for t in req.tool_definitions or []] == req.tool_names
    items = recorded["input"] if isinstance(recorded["input"], list) else []
    outputs = [i["output"] for i in items if i.get("type", "").endswith("_call_output")]
    assert [r.content for r in req.tool_results] == outputs


# ---------------------------------------------------------------------------------------------------------
# Composed fixtures


def _composed(name: str) -> list[Exchange]:
    return load(FIXTURES / f"composed-{name}.json").exchanges


def test_failed_response_is_provider_error_with_status_finish() -> None:
    exchange = _composed("failed")[0]
    record = run_exchange(ADAPTER, exchange)
    failed = _recorded(exchange)["response"]
    assert (record.error_type, record.error_message) == (failed["error"]["code"], failed["error"]["message"])
    assert record.finish_reasons == [failed["status"]]
    assert record.input_tokens is None


def test_codex_custom_tool_call_is_custom_with_streamed_input() -> None:
    exchange = _composed("custom-tool-call")[0]
    record = run_exchange(ADAPTER, exchange, capture=True)
    (item,) = [i for i in _recorded(exchange)["items"] if i["type"] == "custom_tool_call"]
    assert [(c.call_id, c.name, c.arguments, c.type) for c in record.tool_calls] == [
        (item["call_id"], item["name"], item["input"], "custom")
    ]
    summary = "".join(e["delta"] for e in sse_json(exchange) if e["type"] == "response.reasoning_summary_text.delta")
    assert record.output_messages is not None
    assert record.output_messages[0]["parts"][0] == {"type": "reasoning", "content": summary}


def test_codex_additional_tools_are_offered_tools() -> None:
    exchange = _composed("custom-tool-call")[0]
    req = run_exchange(ADAPTER, exchange).request
    recorded = request_json(exchange)
    (extra,) = [i for i in recorded["input"] if i["type"] == "additional_tools"]
    names = [
        t.get("name", t["type"]) for e in extra["tools"] for t in (e["tools"] if e["type"] == "namespace" else [e])
    ]
    assert req.tool_names == names
    assert req.hints == {"prompt_cache_key": recorded["prompt_cache_key"]}


# ---------------------------------------------------------------------------------------------------------
# Edge cases inline


def _sse(*docs: dict[str, Any]) -> bytes:
    return b"".join(f"event: {d['type']}\ndata: {json.dumps(d)}\n\n".encode() for d in docs)


_ASK = {"model": "gpt-5", "input": "hi", "stream": True}


def _run(raw: bytes, capture: bool = False) -> ChatRecord:
    return run_exchange(ADAPTER, exchange_with("/v1/responses", _ASK, raw, "text/event-stream"), capture=capture)


def _final(kind: str, **response: Any) -> dict[str, Any]:
    return {"type": kind, "response": {"id": "resp_1", "model": "gpt-5", "usage": None, **response}}


def test_incomplete_response_finishes_with_incomplete_reason() -> None:
    final = _final("response.incomplete", status="incomplete", incomplete_details={"reason": "max_output_tokens"})
    record = _run(_sse(final))
    assert record.finish_reasons == [final["response"]["incomplete_details"]["reason"]]
    assert record.error_type is None


def test_error_event_is_provider_error_not_truncation() -> None:
    error = {"type": "error", "code": "rate_limit_exceeded", "message": "Slow down", "param": None}
    record = _run(_sse(error))
    assert (record.error_type, record.error_message) == (error["code"], error["message"])


def _call_events(streamed: list[str], whole: str) -> bytes:
    item = {"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "f", "arguments": ""}
    added = {"type": "response.output_item.added", "output_index": 0, "item": item}
    deltas = [
        {"type": "response.function_call_arguments.delta", "output_index": 0, "item_id": "fc_1", "delta": d}
        for d in streamed
    ]
    done = {"type": "response.output_item.done", "output_index": 0, "item": {**item, "arguments": whole}}
    return _sse(added, *deltas, done, _final("response.completed", status="completed"))


@pytest.mark.parametrize("streamed", [[], ['{"a":'], ['{"a":', " 1}"]], ids=["none", "part", "all"])
def test_item_done_adds_only_arguments_not_streamed(streamed: list[str]) -> None:
    whole = '{"a": 1}'
    record = _run(_call_events(streamed, whole))
    assert [c.arguments for c in record.tool_calls] == [whole]


def test_request_fields_map_to_params_hints_and_output_type() -> None:
    request = {
        "model": "gpt-5",
        "temperature": 0.3,
        "top_p": 0.8,
        "max_output_tokens": 512,
        "text": {"format": {"type": "json_schema", "name": "x", "schema": {}}},
        "previous_response_id": "resp_prev",
        "conversation": {"id": "conv_1"},
        "input": [
            {
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "what is this"},
                    {"type": "input_image", "image_url": "data:image/jpeg;base64,/9j/4AAQ"},
                ],
            }
        ],
    }
    req = ADAPTER.parse_request(http("/v1/responses", request, "https://api.openai.com/v1/responses"), capture=True)
    assert (req.params.temperature, req.params.top_p, req.params.max_tokens) == (0.3, 0.8, 512)
    assert req.output_type == "json"
    assert req.hints == {
        "previous_response_id": request["previous_response_id"],
        "conversation_id": request["conversation"]["id"],
    }
    assert req.input_messages == [
        {
            "role": "user",
            "parts": [
                {"type": "text", "content": "what is this"},
                {"type": "blob", "mime_type": "image/jpeg", "modality": "image", "content": "/9j/4AAQ"},
            ],
        }
    ]


def test_azure_upstream_names_azure_provider() -> None:
    url = "https://my-res.openai.azure.com/openai/v1/responses"
    assert ADAPTER.provider_name(http("/openai/v1/responses", _ASK, url)) == "azure.ai.openai"
