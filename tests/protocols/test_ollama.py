"""Ollama adapter: every composed exchange (/api/chat streamed and not, /api/generate); the tool loop; cut-short
bodies; error lines; request fields. (Any chunking, arbitrary bytes, capture off: test_every_adapter.py.)

There is no recording of Ollama traffic: the fixtures are composed from ollama/ollama docs/api.md (see each
fixture's source note). Expected values are read from those bytes by the plain readers below, never from the
adapter.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from multidict import CIMultiDict

from llm_gateway.protocols.base import HttpRequest
from llm_gateway.protocols.exchange import ChatRecord, ChatRequest
from llm_gateway.protocols.ollama import ADAPTER
from llm_gateway.recordings import Exchange, fixtures
from tests.support import FIXTURES
from tests.support.exchanges import exchange_with, exchanges_of, fixtures_in, params
from tests.support.records import http_request, output_text, record_of

LOADED = fixtures_in(FIXTURES / "ollama")
EXCHANGES = params(exchanges_of(LOADED))
NDJSON = "application/x-ndjson"


# ---------------------------------------------------------------------------------------------------------
# Plain readers of the recorded bytes


def recorded_lines(exchange: Exchange) -> list[dict[str, Any]]:
    """The response objects: one a line, or the one (maybe pretty-printed) document."""
    body = exchange.response.body.decode()
    ctype = fixtures.header(exchange.response.headers, "content-type") or ""
    if "ndjson" in ctype:
        return [json.loads(line) for line in body.split("\n") if line.strip()]
    return [json.loads(body)]


def recorded_facts(exchange: Exchange) -> dict[str, Any]:
    lines = recorded_lines(exchange)
    final = lines[-1]
    messages = [line.get("message", {}) for line in lines]
    calls = [call for m in messages for call in m.get("tool_calls", [])]
    return {
        "model": final["model"],
        "finish": [final["done_reason"]] if final.get("done_reason") else [],
        "usage": (final.get("prompt_eval_count"), final.get("eval_count")),
        "text": "".join(m.get("content", "") for m in messages) + "".join(line.get("response", "") for line in lines),
        "thinking": "".join(m.get("thinking", "") for m in messages),
        "calls": [(c["function"]["name"], c["function"]["arguments"]) for c in calls],
        "done": final.get("done") is True,
    }


def recorded_request(exchange: Exchange) -> dict[str, Any]:
    return json.loads(exchange.request.body)


def run(exchange: Exchange, chunks: list[bytes] | None = None, *, capture: bool = True) -> ChatRecord:
    return record_of(ADAPTER, exchange, chunks, capture=capture)


def exchange_of(body: dict[str, Any], response: bytes, ctype: str = NDJSON, path: str = "/api/chat") -> Exchange:
    """A made-up exchange; `ctype` "" sends no content type."""
    return exchange_with(path, body, response, ctype or None)


def parse(body: dict[str, Any], path: str = "/api/chat", *, capture: bool = False) -> ChatRequest:
    return ADAPTER.parse_request(http_request(exchange_of(body, b"", path=path)), capture)


def ndjson(*lines: dict[str, Any]) -> bytes:
    return b"".join(json.dumps(line).encode() + b"\n" for line in lines)


ASK = {"model": "llama3.2", "messages": [{"role": "user", "content": "hi"}]}
PIECE = {"model": "llama3.2", "message": {"role": "assistant", "content": "Hel"}, "done": False}
FINAL = {"model": "llama3.2", "message": {"role": "assistant", "content": ""}, "done": True, "done_reason": "stop",
         "prompt_eval_count": 3, "eval_count": 2}


# ---------------------------------------------------------------------------------------------------------
# Every fixture


@pytest.mark.parametrize("exchange", EXCHANGES)
def test_fixture_whole_body_matches_recording(exchange: Exchange) -> None:
    record = run(exchange)
    facts = recorded_facts(exchange)
    assert record.response_model == facts["model"] and record.response_id is None
    assert record.finish_reasons == facts["finish"]
    assert (record.input_tokens, record.output_tokens) == facts["usage"]
    assert (record.cache_read, record.cache_write, record.reasoning_tokens) == (None, None, None)
    assert [(c.call_id, c.name, json.loads(c.arguments)) for c in record.tool_calls] == [
        (None, name, args) for name, args in facts["calls"]]
    assert output_text(record) == facts["text"]
    assert output_text(record, "reasoning") == facts["thinking"]
    assert record.error_type is None and record.parse_issues == []


@pytest.mark.parametrize("exchange", EXCHANGES)
def test_fixture_request_matches_recording(exchange: Exchange) -> None:
    request = ADAPTER.parse_request(http_request(exchange), capture=False)
    body = recorded_request(exchange)
    assert request.model == body["model"]
    assert request.operation == ("text_completion" if exchange.request.path == "/api/generate" else "chat")
    assert request.stream == body.get("stream", True)  # Ollama streams unless told not to
    assert request.tool_names == [tool["function"]["name"] for tool in body.get("tools", [])]
    assert request.params.temperature == body.get("options", {}).get("temperature")
    assert request.params.max_tokens == body.get("options", {}).get("num_predict")
    assert request.output_type == ("json" if body.get("format") else None)


@pytest.mark.parametrize("exchange", EXCHANGES)
def test_fixture_cut_before_done_is_truncated(exchange: Exchange) -> None:
    body = exchange.response.body
    done = [m.start() for m in re.finditer(rb'"done":\s*true', body)][-1]
    record = run(exchange, [body[:done]])
    assert record.error_type == "stream_truncated"
    assert record.finish_reasons == [] and record.input_tokens is None


def test_tool_loop_results_answer_previous_calls() -> None:
    earlier, later = LOADED["composed-chat-tool-loop"].exchanges
    request = ADAPTER.parse_request(http_request(later), capture=True)
    tool_messages = [m for m in recorded_request(later)["messages"] if m["role"] == "tool"]
    assert [r.name for r in request.tool_results] == [name for name, _ in recorded_facts(earlier)["calls"]]
    assert [(r.call_id, r.content) for r in request.tool_results] == [(None, m["content"]) for m in tool_messages]
    assert request.input_messages is not None and request.input_messages[-1]["role"] == "tool"


# ---------------------------------------------------------------------------------------------------------
# Garbage, errors, cuts


def test_stream_cut_before_done_is_truncated() -> None:
    record = run(exchange_of(ASK, ndjson(PIECE, PIECE)))
    assert record.error_type == "stream_truncated" and output_text(record) == "HelHel"


def test_error_line_is_a_provider_error_not_a_cut() -> None:
    record = run(exchange_of(ASK, ndjson(PIECE) + b'{"error":"model runner has unexpectedly stopped"}\n'))
    assert (record.error_type, record.error_message) == ("error", "model runner has unexpectedly stopped")


def test_unreadable_line_is_skipped_and_the_next_is_read() -> None:
    record = run(exchange_of(ASK, ndjson(PIECE) + b"{oops\n" + ndjson(FINAL)))
    assert record.finish_reasons == ["stop"] and len(record.parse_issues) == 1 and record.error_type is None


def test_final_line_without_newline_is_read_at_close() -> None:
    record = run(exchange_of(ASK, ndjson(PIECE) + json.dumps(FINAL).encode()))
    assert record.finish_reasons == [FINAL["done_reason"]] and record.error_type is None


def test_done_without_reason_finishes_with_no_invented_reason() -> None:
    final = {k: v for k, v in FINAL.items() if k != "done_reason"}
    record = run(exchange_of(ASK, ndjson(PIECE, final)))
    assert record.finish_reasons == [] and record.error_type is None


def test_whole_document_read_when_request_not_streamed_and_no_content_type() -> None:
    body = json.dumps({**FINAL, "message": {"role": "assistant", "content": "Hello"}}, indent=2).encode()
    record = run(exchange_of({**ASK, "stream": False}, body, ctype=""))
    assert output_text(record) == "Hello" and record.finish_reasons == ["stop"]


# ---------------------------------------------------------------------------------------------------------
# Request


def test_stream_defaults_to_true() -> None:
    assert parse(ASK).stream is True
    assert parse({**ASK, "stream": False}).stream is False


def test_negative_num_predict_is_no_limit() -> None:
    assert parse({**ASK, "options": {"num_predict": -1}}).params.max_tokens is None


def test_options_become_params() -> None:
    options = {"temperature": 0.1, "top_p": 0.2, "top_k": 3, "num_predict": 4, "stop": "x", "seed": 5,
               "frequency_penalty": 0.6, "presence_penalty": 0.7}
    params = parse({**ASK, "options": options}).params
    assert (params.temperature, params.top_p, params.top_k, params.max_tokens) == (
        options["temperature"], options["top_p"], options["top_k"], options["num_predict"])
    assert (params.stop_sequences, params.seed) == ([options["stop"]], options["seed"])
    assert (params.frequency_penalty, params.presence_penalty) == (options["frequency_penalty"],
                                                                   options["presence_penalty"])


@pytest.mark.parametrize(("fmt", "expected"), [("json", "json"), ({"type": "object"}, "json"), ("", None)])
def test_format_asks_for_json(fmt: object, expected: str | None) -> None:
    assert parse({**ASK, "format": fmt}).output_type == expected


def test_tool_result_without_tool_name_takes_the_call_at_its_position() -> None:
    calls = [{"function": {"name": "a", "arguments": {}}}, {"function": {"name": "b", "arguments": {}}}]
    messages = [*ASK["messages"], {"role": "assistant", "content": "", "tool_calls": calls},
                {"role": "tool", "content": "1"}, {"role": "tool", "content": "2"}]
    results = parse({**ASK, "messages": messages}).tool_results
    assert [r.name for r in results] == [c["function"]["name"] for c in calls]
    assert all(r.content is None for r in results)


def test_generate_prompt_and_system_are_the_input() -> None:
    exchange = LOADED["composed-generate"].exchanges[0]
    body = recorded_request(exchange)
    request = ADAPTER.parse_request(http_request(exchange), capture=True)
    assert request.system_instructions == [{"type": "text", "content": body["system"]}]
    assert request.input_messages == [{"role": "user", "parts": [{"type": "text", "content": body["prompt"]}]}]
    assert request.params.stop_sequences == body["options"]["stop"]


def test_images_are_blobs_with_their_bytes() -> None:
    messages = [{"role": "user", "content": "what is this?", "images": ["iVBORw0KGgo="]}]
    request = parse({**ASK, "messages": messages}, capture=True)
    assert request.input_messages == [{"role": "user", "parts": [{"type": "text", "content": "what is this?"},
                                                                 {"type": "blob", "modality": "image",
                                                                  "content": "iVBORw0KGgo="}]}]


def test_provider_name_is_ollama() -> None:
    assert ADAPTER.provider_name(HttpRequest("POST", "/api/chat", CIMultiDict(), b"{}")) == "ollama"
