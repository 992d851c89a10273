"""Gemini adapter: every recorded and composed exchange (SSE, JSON array, one JSON object, Code Assist); tool
loops; garbage and cut-short bodies; request fields; provider names. (Any chunking, arbitrary bytes, capture off:
test_every_adapter.py.)

Expected values are read from the recorded bytes by the plain readers below (`recorded_chunks`,
`recorded_facts`), never from the adapter.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict

from llm_gateway.protocols.base import HttpRequest
from llm_gateway.protocols.exchange import ChatRecord
from llm_gateway.protocols.gemini import ADAPTER
from llm_gateway.recordings import Exchange, fixtures
from tests.support import FIXTURES
from tests.support.exchanges import exchange_with, exchanges_of, fixtures_in, params
from tests.support.records import http_request, output_text, record_of, run_exchange

LOADED = fixtures_in(FIXTURES / "gemini")
EXCHANGES = params(exchanges_of(LOADED))
LOOPS = [pytest.param(fx, id=name) for name, fx in LOADED.items() if len(fx.exchanges) > 1]
CUTS = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


# ---------------------------------------------------------------------------------------------------------
# Plain readers of the recorded bytes


def content_type(exchange: Exchange) -> str:
    return (fixtures.header(exchange.response.headers, "content-type") or "").lower()


def recorded_chunks(exchange: Exchange) -> list[dict[str, Any]]:
    """Every `GenerateContentResponse` of the body: SSE `data:` lines, array elements or the one object;
    Code Assist's `{response: ...}` wrapper taken off."""
    body = exchange.response.body.decode()
    if "event-stream" in content_type(exchange):
        docs = [json.loads(line[len("data:") :]) for line in body.splitlines() if line.startswith("data:")]
    else:
        doc = json.loads(body)
        docs = doc if isinstance(doc, list) else [doc]
    return [doc.get("response", doc) for doc in docs]


def recorded_facts(exchange: Exchange) -> dict[str, Any]:
    facts: dict[str, Any] = {"id": None, "model": None, "finish": [], "usage": {}, "calls": [], "text": "",
                             "thoughts": ""}
    for doc in recorded_chunks(exchange):
        facts["id"] = doc.get("responseId", facts["id"])
        facts["model"] = doc.get("modelVersion", facts["model"])
        facts["usage"] = doc.get("usageMetadata", facts["usage"])
        for candidate in doc.get("candidates", []):
            for part in candidate.get("content", {}).get("parts", []):
                if "functionCall" in part:
                    call = part["functionCall"]
                    facts["calls"].append((call.get("id"), call["name"], call.get("args")))
                elif part.get("thought"):
                    facts["thoughts"] += part["text"]
                elif "text" in part:
                    facts["text"] += part["text"]
            if "finishReason" in candidate:
                facts["finish"].append(candidate["finishReason"])
    return facts


def recorded_usage(usage: dict[str, Any]) -> tuple[int | None, ...]:
    """(input, output, cache_read, reasoning): thoughts are output the candidates count leaves out."""
    outputs = [usage[key] for key in ("candidatesTokenCount", "thoughtsTokenCount") if key in usage]
    return (usage.get("promptTokenCount"), sum(outputs) if outputs else None,
            usage.get("cachedContentTokenCount"), usage.get("thoughtsTokenCount"))


def recorded_request(exchange: Exchange) -> dict[str, Any]:
    doc = json.loads(exchange.request.body)
    return doc["request"] if "request" in doc and "contents" not in doc else doc


def declared_tools(body: dict[str, Any]) -> list[str]:
    return [decl["name"] for tool in body.get("tools", []) for decl in tool.get("functionDeclarations", [])]


def trailing_function_responses(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The functionResponse parts after the last model turn."""
    contents = body["contents"]
    last_model = max((i for i, c in enumerate(contents) if c.get("role") == "model"), default=-1)
    return [p["functionResponse"] for c in contents[last_model + 1 :] for p in c["parts"] if "functionResponse" in p]


def run(exchange: Exchange, chunks: list[bytes] | None = None, *, capture: bool = True) -> ChatRecord:
    return record_of(ADAPTER, exchange, chunks, capture=capture)


def exchange_of(path: str, body: bytes | dict[str, Any], response: bytes, ctype: str = "text/event-stream") -> Exchange:
    """A made-up exchange; `ctype` "" sends no content type."""
    return exchange_with(path, body, response, ctype or None)


SIMPLE = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}
STREAM_PATH = "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"


# ---------------------------------------------------------------------------------------------------------
# Every fixture


@pytest.mark.parametrize("exchange", EXCHANGES)
def test_fixture_whole_body_matches_recording(exchange: Exchange) -> None:
    record = run(exchange)
    facts = recorded_facts(exchange)
    assert (record.response_id, record.response_model) == (facts["id"], facts["model"])
    assert record.finish_reasons == facts["finish"]
    usage = recorded_usage(facts["usage"])
    assert (record.input_tokens, record.output_tokens, record.cache_read, record.reasoning_tokens) == usage
    assert record.cache_write is None
    assert [(c.call_id, c.name, json.loads(c.arguments)) for c in record.tool_calls] == facts["calls"]
    assert output_text(record) == facts["text"]
    assert output_text(record, "reasoning") == facts["thoughts"]
    assert record.error_type is None and record.parse_issues == []


@pytest.mark.parametrize("exchange", EXCHANGES)
def test_fixture_request_matches_recording(exchange: Exchange) -> None:
    request = ADAPTER.parse_request(http_request(exchange), capture=False)
    doc, body = json.loads(exchange.request.body), recorded_request(exchange)
    path = exchange.request.path
    path_model = path.split("/models/")[1].split(":")[0] if "/models/" in path else None
    assert request.operation == "generate_content"
    assert request.model == (path_model or doc["model"])
    assert request.stream == (":streamGenerateContent" in exchange.request.path)
    assert request.tool_names == declared_tools(body)
    assert request.system_instructions is None and request.input_messages is None


@pytest.mark.parametrize("exchange", EXCHANGES)
def test_fixture_cut_before_finish_reason_is_truncated(exchange: Exchange) -> None:
    body = exchange.response.body
    record = run(exchange, [body[: body.index(b'"finishReason"')]])
    assert record.error_type == "stream_truncated"
    assert record.finish_reasons == []


@pytest.mark.parametrize("fixture", LOOPS)
def test_tool_loop_results_answer_previous_calls(fixture: fixtures.Fixture) -> None:
    for earlier, later in zip(fixture.exchanges, fixture.exchanges[1:], strict=False):
        calls = recorded_facts(earlier)["calls"]
        responses = trailing_function_responses(recorded_request(later))
        request = ADAPTER.parse_request(http_request(later), capture=False)
        assert [r.name for r in request.tool_results] == [name for _, name, _ in calls]
        assert [r.name for r in request.tool_results] == [r["name"] for r in responses]
        assert [r.call_id for r in request.tool_results] == [r.get("id") for r in responses]
        assert all(request.history_tool_calls[r.call_id] == r.name for r in request.tool_results if r.call_id)
        assert all(r.content is None for r in request.tool_results)


def test_json_array_chunk_cut_inside_a_string_with_brackets_reads_the_text_whole() -> None:
    exchange = LOADED["composed-json-array-stream"].exchanges[0]
    cut_chunk = exchange.response.chunks[1].data
    assert cut_chunk.endswith(b"}]") and cut_chunk.count(b'"') % 2 == 1  # the recording is cut inside a string
    record = run(exchange)
    assert output_text(record) == recorded_facts(exchange)["text"]
    assert "}]" in output_text(record)


# ---------------------------------------------------------------------------------------------------------
# Garbage


@CUTS
@given(prefix=st.sampled_from([b"data: ", b"[", b"{", b""]), junk=st.binary(max_size=200))
def test_garbage_after_a_plausible_start_is_a_parse_issue_or_nothing(prefix: bytes, junk: bytes) -> None:
    record = run_exchange(ADAPTER, exchange_of(STREAM_PATH, SIMPLE, prefix + junk, ctype=""))
    assert not any(issue.startswith("response:") for issue in record.parse_issues)
    assert record.error_type is not None  # no finishReason in garbage: cut short at best


def test_unreadable_chunk_is_skipped_and_the_next_is_read() -> None:
    good = b'data: {"candidates": [{"content": {"parts": [{"text": "ok"}]}, "finishReason": "STOP"}]}\n\n'
    record = run(exchange_of(STREAM_PATH, SIMPLE, b"data: {not json\n\n" + good))
    assert record.finish_reasons == ["STOP"] and output_text(record) == "ok"
    assert len(record.parse_issues) == 1 and record.error_type is None


# ---------------------------------------------------------------------------------------------------------
# Response edge cases


def test_blocked_prompt_is_an_error_not_a_cut() -> None:
    chunk = {"promptFeedback": {"blockReason": "PROHIBITED_CONTENT"},
             "usageMetadata": {"promptTokenCount": 9, "totalTokenCount": 9}, "modelVersion": "gemini-2.5-flash"}
    record = run(exchange_of(STREAM_PATH, SIMPLE, b"data: " + json.dumps(chunk).encode() + b"\r\n\r\n"))
    assert (record.error_type, record.error_message) == ("blocked", "PROHIBITED_CONTENT")
    assert record.input_tokens == 9 and record.output_tokens is None


def test_error_chunk_mid_stream_is_a_provider_error() -> None:
    text = {"candidates": [{"content": {"parts": [{"text": "Hel"}]}}]}
    error = {"error": {"code": 503, "message": "The model is overloaded.", "status": "UNAVAILABLE"}}
    body = b"".join(b"data: " + json.dumps(doc).encode() + b"\n\n" for doc in (text, error))
    record = run(exchange_of(STREAM_PATH, SIMPLE, body))
    assert (record.error_type, record.error_message) == (str(error["error"]["code"]), error["error"]["message"])


def test_error_element_in_json_array_is_a_provider_error() -> None:
    text = {"candidates": [{"content": {"parts": [{"text": "x"}]}}]}
    error = {"error": {"message": "boom", "status": "INTERNAL"}}
    body = b"[" + json.dumps(text).encode() + b",\r\n" + json.dumps(error).encode() + b"]"
    record = run(exchange_of(STREAM_PATH.partition("?")[0], SIMPLE, body, "application/json"))
    assert (record.error_type, record.error_message) == (error["error"]["status"], error["error"]["message"])


def test_no_content_type_json_array_is_sniffed() -> None:
    exchange = LOADED["composed-json-array-stream"].exchanges[0]
    bare = exchange_of(exchange.request.path, exchange.request.body, exchange.response.body, ctype="")
    assert run(bare) == run(exchange)


def test_no_content_type_sse_is_sniffed() -> None:
    exchange = LOADED["vertex-streaming"].exchanges[0]
    bare = exchange_of(exchange.request.path, exchange.request.body, exchange.response.body, ctype="")
    assert run(bare) == run(exchange)


def test_second_candidate_keeps_its_own_choice() -> None:
    chunk = {"candidates": [{"content": {"parts": [{"text": "a"}]}, "finishReason": "STOP", "index": 0},
                            {"content": {"parts": [{"text": "b"}]}, "finishReason": "MAX_TOKENS", "index": 1}]}
    record = run(exchange_of(STREAM_PATH, SIMPLE, b"data: " + json.dumps(chunk).encode() + b"\n\n"))
    assert record.finish_reasons == ["STOP", "MAX_TOKENS"]
    assert [m["parts"][0]["content"] for m in record.output_messages or []] == ["a", "b"]


def test_tool_use_prompt_tokens_count_as_input() -> None:
    usage = {"promptTokenCount": 10, "toolUsePromptTokenCount": 5, "candidatesTokenCount": 3}
    chunk = {"candidates": [{"content": {"parts": [{"text": "a"}]}, "finishReason": "STOP"}], "usageMetadata": usage}
    record = run(exchange_of(STREAM_PATH, SIMPLE, b"data: " + json.dumps(chunk).encode() + b"\n\n"))
    assert (record.input_tokens, record.output_tokens) == (usage["promptTokenCount"] + usage["toolUsePromptTokenCount"],
                                                           usage["candidatesTokenCount"])


# ---------------------------------------------------------------------------------------------------------
# Request


def parse(body: dict[str, Any], path: str = STREAM_PATH, *, capture: bool = False) -> Any:
    return ADAPTER.parse_request(http_request(exchange_of(path, body, b"")), capture)


def test_generation_config_fields_become_params() -> None:
    config = {"temperature": 0.3, "topP": 0.8, "topK": 12, "maxOutputTokens": 99, "stopSequences": ["x"],
              "seed": 5, "frequencyPenalty": 0.1, "presencePenalty": 0.2, "candidateCount": 2,
              "responseMimeType": "application/json"}
    request = parse({**SIMPLE, "generationConfig": config})
    params = request.params
    assert (params.temperature, params.top_p, params.top_k, params.max_tokens) == (
        config["temperature"], config["topP"], config["topK"], config["maxOutputTokens"])
    assert (params.stop_sequences, params.seed, params.choice_count) == (
        config["stopSequences"], config["seed"], config["candidateCount"])
    penalties = (params.frequency_penalty, params.presence_penalty)
    assert penalties == (config["frequencyPenalty"], config["presencePenalty"])
    assert request.output_type == "json"


def test_snake_case_fields_are_read_too() -> None:
    body = {"contents": SIMPLE["contents"], "system_instruction": {"parts": [{"text": "sys"}]},
            "tools": [{"function_declarations": [{"name": "f", "parameters": {}}]}],
            "generation_config": {"max_output_tokens": 7, "top_p": 0.5, "response_schema": {"type": "OBJECT"}}}
    request = parse(body, capture=True)
    assert (request.params.max_tokens, request.params.top_p) == (7, 0.5)
    assert request.output_type == "json" and request.tool_names == ["f"]
    assert request.system_instructions == [{"type": "text", "content": "sys"}]


def test_unset_params_stay_none() -> None:
    request = parse(SIMPLE)
    assert request.params == type(request.params)() and request.output_type is None


def test_builtin_tools_are_named_by_their_key() -> None:
    request = parse({**SIMPLE, "tools": [{"googleSearch": {}}, {"functionDeclarations": [{"name": "f"}]}]})
    assert request.tool_names == ["googleSearch", "f"]


def test_capture_on_gives_conventions_shapes() -> None:
    exchange = LOADED["tool-loop-streaming"].exchanges[1]
    body = recorded_request(exchange)
    request = ADAPTER.parse_request(http_request(exchange), capture=True)
    call = body["contents"][1]["parts"][0]["functionCall"]
    answer = body["contents"][2]["parts"][0]["functionResponse"]
    assert request.input_messages == [
        {"role": "user", "parts": [{"type": "text", "content": body["contents"][0]["parts"][0]["text"]}]},
        {"role": "assistant", "parts": [{"type": "tool_call", "id": call["id"], "name": call["name"],
                                         "arguments": call["args"]}]},
        {"role": "tool", "parts": [{"type": "tool_call_response", "id": answer["id"],
                                    "response": answer["response"]}]},
    ]
    assert [t["name"] for t in request.tool_definitions or []] == declared_tools(body)
    assert request.tool_results[0].content == answer["response"]


def test_media_is_a_uri_or_an_inline_blob() -> None:
    parts = [{"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}},
             {"fileData": {"mimeType": "application/pdf", "fileUri": "gs://bucket/doc.pdf"}}]
    request = parse({"contents": [{"role": "user", "parts": parts}]}, capture=True)
    assert request.input_messages == [{"role": "user", "parts": [
        {"type": "blob", "mime_type": "image/png", "modality": "image", "content": "iVBORw0KGgo="},
        {"type": "uri", "mime_type": "application/pdf", "modality": "document", "uri": "gs://bucket/doc.pdf"}]}]


def test_function_error_response_is_an_error_result() -> None:
    contents = [SIMPLE["contents"][0], {"role": "model", "parts": [{"functionCall": {"name": "f", "args": {}}}]},
                {"role": "user", "parts": [{"functionResponse": {"name": "f", "response": {"error": "nope"}}}]}]
    (result,) = parse({"contents": contents}).tool_results
    assert (result.call_id, result.name, result.is_error) == (None, "f", True)


def test_code_assist_ids_become_hints_and_model_comes_from_body() -> None:
    exchange = LOADED["composed-code-assist-stream"].exchanges[0]
    doc = json.loads(exchange.request.body)
    request = ADAPTER.parse_request(http_request(exchange), capture=False)
    assert request.hints == {"session_id": doc["request"]["session_id"], "user_prompt_id": doc["user_prompt_id"]}
    assert request.model == doc["model"]


def test_same_conversation_shares_fingerprints_across_turns() -> None:
    first, *rest = (ADAPTER.parse_request(http_request(ex), False) for ex in LOADED["tool-loop-streaming"].exchanges)
    assert all(r.conversation_fingerprint == first.conversation_fingerprint for r in rest)
    assert all(r.agent_fingerprint == first.agent_fingerprint for r in rest)
    other = parse(SIMPLE)
    assert other.conversation_fingerprint != first.conversation_fingerprint


# ---------------------------------------------------------------------------------------------------------
# Provider name


@pytest.mark.parametrize(
    ("path", "upstream", "expected"),
    [
        ("/v1beta/models/gemini-2.5-flash:generateContent", "https://generativelanguage.googleapis.com", "gcp.gemini"),
        ("/v1/projects/p/locations/us-central1/publishers/google/models/m:streamGenerateContent?alt=sse",
         "https://us-central1-aiplatform.googleapis.com", "gcp.vertex_ai"),
        ("/v1beta1/projects/p/locations/l/publishers/google/models/m:generateContent", "", "gcp.vertex_ai"),
        ("/v1/publishers/google/models/m:generateContent", "https://aiplatform.googleapis.com", "gcp.vertex_ai"),
        ("/v1beta/models/m:generateContent", "https://aiplatform.googleapis.com", "gcp.vertex_ai"),
        ("/v1internal:streamGenerateContent?alt=sse", "https://cloudcode-pa.googleapis.com", "gcp.gen_ai"),
        ("/v1internal:generateContent", "http://127.0.0.1:9000", "gcp.gen_ai"),
    ],
)
def test_provider_name_follows_endpoint(path: str, upstream: str, expected: str) -> None:
    request = HttpRequest("POST", path, CIMultiDict(), b"{}", upstream)
    assert ADAPTER.provider_name(request) == expected
