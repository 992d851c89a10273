"""Kiro / Amazon Q `GenerateAssistantResponse` adapter: every recorded and composed exchange; cut-short, corrupted
and garbage bodies; the request readings (context pair, tools, results, hints, fingerprints) and the session facts
the tracker relies on. (Any chunking, capture off: test_every_adapter.py.)

Expected values come from the recorded bytes through the plain readers below: botocore's `EventStreamBuffer`
frames the bodies, `json` reads the payloads and request bodies, and `recorded_facts` picks the fields. Never
from the adapter.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict

from llm_gateway.protocols.base import HttpRequest, HttpResponseHead
from llm_gateway.protocols.exchange import ChatRecord, ChatRequest, ExchangeBuilder
from llm_gateway.protocols.kiro import ADAPTER, model_vendor
from llm_gateway.recordings import Chunk, Exchange, RecordedRequest, RecordedResponse, fixtures
from llm_gateway.sessions.identity import identify
from tests.support import FIXTURES
from tests.support.eventstream_decode import botocore_frames, frame_ends
from tests.support.eventstream_encode import event, exception, frame
from tests.support.exchanges import exchanges_of, fixtures_in, params
from tests.support.records import http_request, output_text, record_of

LOADED = fixtures_in(FIXTURES / "kiro")
SESSION = LOADED["cli-2.4.1-session"]
GAR = "GenerateAssistantResponse"


def target(exchange: Exchange) -> str:
    return fixtures.header(exchange.request.headers, "x-amz-target") or ""


STREAMS = exchanges_of(LOADED, lambda ex: target(ex).endswith(GAR) and ex.response.status == 200)
EXCHANGES = params(STREAMS)
SPLITS = settings(max_examples=50, deadline=None)


# ---------------------------------------------------------------------------------------------------------
# Plain readers of the recorded bytes


def recorded_events(exchange: Exchange) -> list[tuple[str, dict[str, Any]]]:
    """(event type, JSON payload) per frame; exception frames as ("!", payload)."""
    out = []
    for headers, payload in botocore_frames(exchange.response.body):
        kind = "!" if headers[":message-type"] != "event" else headers[":event-type"]
        out.append((kind, json.loads(payload)))
    return out


def recorded_facts(exchange: Exchange) -> dict[str, Any]:
    facts: dict[str, Any] = {"text": "", "reasoning": "", "calls": {}, "stopped": set(), "model": None,
                             "context": None, "credits": None, "unit": None, "usage": None, "stop": None,
                             "error": None, "tail": False}
    for kind, doc in recorded_events(exchange):
        if kind == "assistantResponseEvent":
            facts["text"] += doc["content"]
            facts["model"] = doc.get("modelId", facts["model"])
        elif kind == "reasoningContentEvent":
            facts["reasoning"] += doc.get("text", "")
        elif kind == "toolUseEvent":
            call = facts["calls"].setdefault(doc["toolUseId"], [doc["name"], ""])
            call[1] += doc.get("input", "")
            if doc.get("stop"):
                facts["stopped"].add(doc["toolUseId"])
        elif kind == "contextUsageEvent":
            facts["context"] = doc["contextUsagePercentage"]
        elif kind == "meteringEvent":
            facts.update(credits=doc["usage"], unit=doc["unit"], tail=True)
        elif kind == "metadataEvent":
            facts.update(usage=doc.get("tokenUsage"), stop=doc.get("stopReason"), tail=True)
        elif kind == "!":
            facts["error"] = (doc["__type"].rpartition("#")[2], doc["message"])
    return facts


def expected_usage(usage: dict[str, Any] | None) -> tuple[int | None, ...]:
    """(input, output, cache read, cache write): uncachedInputTokens leaves the cache out, so all three add up."""
    if usage is None:
        return (None, None, None, None)
    read, write = usage.get("cacheReadInputTokens"), usage.get("cacheWriteInputTokens")
    return (usage["uncachedInputTokens"] + (read or 0) + (write or 0), usage["outputTokens"], read, write)


def expected_finish(facts: dict[str, Any]) -> list[str]:
    """The stop reason as sent; else, for a complete stream, tool_use when a tool was called, else end_turn."""
    if facts["stop"]:
        return [facts["stop"]]
    if facts["error"] or not facts["tail"] or set(facts["calls"]) - facts["stopped"]:
        return []
    return ["tool_use" if facts["calls"] else "end_turn"]


def request_body(exchange: Exchange) -> dict[str, Any]:
    return json.loads(exchange.request.body)


def current_message(exchange: Exchange) -> dict[str, Any]:
    return request_body(exchange)["conversationState"]["currentMessage"]["userInputMessage"]


def run(exchange: Exchange, chunks: list[bytes] | None = None, *, capture: bool = True) -> ChatRecord:
    return record_of(ADAPTER, exchange, chunks, capture=capture)


def parse(exchange: Exchange, *, capture: bool = False) -> ChatRequest:
    return ADAPTER.parse_request(http_request(exchange), capture)


def with_body(exchange: Exchange, body: bytes, content_type: str = "application/vnd.amazon.eventstream") -> Exchange:
    return Exchange(exchange.request, RecordedResponse(200, [("content-type", content_type)], [Chunk(0.0, body)]))


GAR_REQUEST = RecordedRequest("POST", "/", [("x-amz-target", f"KiroRuntimeService.{GAR}")],
                              json.dumps({"conversationState": {"currentMessage": {"userInputMessage": {
                                  "content": "hi", "modelId": "auto", "origin": "AI_EDITOR"}}}}).encode())


def inline(*frames: bytes) -> Exchange:
    """A made-up GAR exchange with the given response frames."""
    return with_body(Exchange(GAR_REQUEST, RecordedResponse(200, [], [])), b"".join(frames))


# ---------------------------------------------------------------------------------------------------------
# Responses: recorded facts, any chunking


@pytest.mark.parametrize("exchange", EXCHANGES)
def test_recording_whole_gives_recorded_facts(exchange: Exchange) -> None:
    facts = recorded_facts(exchange)
    record = run(exchange)
    assert output_text(record, "text") == facts["text"]
    assert output_text(record, "reasoning") == facts["reasoning"]
    assert [(c.call_id, c.name, c.arguments) for c in record.tool_calls] == [
        (call_id, name, joined) for call_id, (name, joined) in facts["calls"].items()]
    assert record.response_model == facts["model"]
    assert record.finish_reasons == expected_finish(facts)
    assert (record.input_tokens, record.output_tokens, record.cache_read, record.cache_write) == expected_usage(
        facts["usage"])
    assert record.extras.get("kiro.usage_reported") is (facts["usage"] is not None)
    assert record.extras.get("kiro.context_usage_percentage") == facts["context"]
    assert record.extras.get("kiro.credits") == facts["credits"]
    assert record.extras.get("kiro.credits_unit") == facts["unit"]
    assert (record.error_type, record.error_message) == (facts["error"] or (None, None))
    assert record.request.model == current_message(exchange)["modelId"]
    assert record.parse_issues == []


@pytest.mark.parametrize("exchange", EXCHANGES)
@SPLITS
@given(data=st.data())
def test_stream_cut_short_is_truncated_until_its_tail_or_error(exchange: Exchange, data: st.DataObject) -> None:
    body = exchange.response.body
    end = data.draw(st.integers(0, len(body)))
    kinds = [kind for kind, _ in recorded_events(exchange)]
    # the first frame of the tail (metadataEvent or meteringEvent) or an exception frame makes the stream whole
    first = next(i for i, kind in enumerate(kinds) if kind in ("metadataEvent", "meteringEvent", "!"))
    facts = recorded_facts(exchange)
    whole = end >= frame_ends(body)[first]
    error = facts["error"][0] if facts["error"] else None
    assert run(exchange, [body[:end]]).error_type == (error if whole else "stream_truncated")


@pytest.mark.parametrize("exchange", EXCHANGES)
def test_json_content_type_on_a_stream_is_still_read_as_frames(exchange: Exchange) -> None:
    # AWS's generated KRS server labels the streaming 200 application/x-amz-json-1.0
    relabeled = with_body(exchange, exchange.response.body, "application/x-amz-json-1.0")
    assert run(relabeled) == run(exchange)


def test_corrupted_checksum_is_a_parse_issue_after_the_good_frames() -> None:
    exchange = SESSION.exchanges[1]  # row 06: text frames
    body = bytearray(exchange.response.body)
    ends = frame_ends(bytes(body))
    body[ends[5] - 6] ^= 0xFF  # inside the payload of the 6th frame: its message CRC no longer holds
    record = run(with_body(exchange, bytes(body)))
    good = with_body(exchange, bytes(body[: ends[4]]))
    assert record.parse_issues and "checksum" in record.parse_issues[0]
    assert output_text(record, "text") == recorded_facts(good)["text"]
    assert record.error_type is None  # a broken body says only that it was unreadable


# ---------------------------------------------------------------------------------------------------------
# The recorded session, turn by turn (rows 06, 14, 22, 23, 25, 45 of the cc-core capture)


def test_introspect_call_joins_thirteen_input_fragments_including_an_empty_one() -> None:
    exchange = SESSION.exchanges[2]  # row 14
    fragments = [doc["input"] for kind, doc in recorded_events(exchange) if kind == "toolUseEvent" and "input" in doc]
    assert len(fragments) == 13 and "" in fragments
    (call,) = run(exchange).tool_calls
    assert call.arguments == "".join(fragments)
    assert json.loads(call.arguments)["query"]


def test_parallel_read_calls_come_out_in_stream_order() -> None:
    exchange = SESSION.exchanges[4]  # row 23
    recorded = list(dict.fromkeys(doc["toolUseId"] for kind, doc in recorded_events(exchange)
                                  if kind == "toolUseEvent"))
    record = run(exchange)
    assert len(recorded) == 2
    assert [c.call_id for c in record.tool_calls] == recorded
    assert record.finish_reasons == ["tool_use"]


def test_tool_results_of_the_next_turn_answer_the_parallel_calls() -> None:
    calls = [doc["toolUseId"] for kind, doc in recorded_events(SESSION.exchanges[4])
             if kind == "toolUseEvent" and doc.get("stop")]
    following = SESSION.exchanges[5]  # row 25
    recorded = current_message(following)["userInputMessageContext"]["toolResults"]
    request = parse(following)
    assert [r["toolUseId"] for r in recorded] == calls
    assert [(r.call_id, r.name, r.is_error) for r in request.tool_results[-2:]] == [(c, "read", False) for c in calls]
    assert {c: request.history_tool_calls[c] for c in calls} == {c: "read" for c in calls}


def test_opus_turn_takes_model_and_effort_from_the_request() -> None:
    exchange = SESSION.exchanges[6]  # row 45
    body = request_body(exchange)
    request = parse(exchange)
    assert request.model == body["conversationState"]["currentMessage"]["userInputMessage"]["modelId"]
    assert request.hints["effort"] == body["additionalModelRequestFields"]["output_config"]["effort"]
    assert request.hints["model_vendor"] == "anthropic"


def test_checkpoint_side_call_is_auxiliary_in_the_same_session() -> None:
    checkpoint = SESSION.exchanges[3]  # row 22
    state = request_body(checkpoint)["conversationState"]
    assert state["history"] == [] and current_message(checkpoint)["content"].startswith("[SYSTEM NOTE")
    request = parse(checkpoint)
    main = parse(SESSION.exchanges[2])
    assert (request.tool_names, request.tool_results) == ([], [])
    assert request.hints["conversation_id"] == main.hints["conversation_id"] == state["conversationId"]
    headers = CIMultiDict(checkpoint.request.headers)
    assert identify(headers, request).auxiliary
    assert identify(headers, request).session_key == identify(headers, main).session_key
    assert not identify(headers, main).auxiliary


def test_one_conversation_keeps_one_agent_and_conversation_fingerprint() -> None:
    turns = [ex for ex in SESSION.exchanges if target(ex).endswith(GAR) and request_body(ex)["conversationState"][
        "history"]]
    firsts = {request_body(ex)["conversationState"]["history"][0]["userInputMessage"]["content"] for ex in turns}
    requests = [parse(ex) for ex in turns]
    assert len(turns) == 5 and len(firsts) == 3  # the context message changed twice: checkpoint summary, /model
    assert len({r.agent_fingerprint for r in requests}) == 1
    assert len({r.conversation_fingerprint for r in requests}) == 1


def test_capture_moves_the_context_pair_to_system_instructions() -> None:
    exchange = SESSION.exchanges[5]  # row 25
    history = request_body(exchange)["conversationState"]["history"]
    tools = current_message(exchange)["userInputMessageContext"]["tools"]
    request = parse(exchange, capture=True)
    assert request.system_instructions == [{"type": "text", "content": history[0]["userInputMessage"]["content"]}]
    texts = [p.get("content") for m in request.input_messages or [] for p in m["parts"]]
    assert history[1]["assistantResponseMessage"]["content"] not in texts
    assert [t["name"] for t in request.tool_definitions or []] == [t["toolSpecification"]["name"] for t in tools]
    assert request.input_messages[-1]["role"] == "tool"  # the turn carries only tool results
    uses = [u["toolUseId"] for h in history for u in h.get("assistantResponseMessage", {}).get("toolUses", [])]
    calls = [p["id"] for m in request.input_messages for p in m["parts"] if p["type"] == "tool_call"]
    assert calls == uses


def test_without_capture_no_content_is_built() -> None:
    request = parse(SESSION.exchanges[5], capture=False)
    assert (request.system_instructions, request.input_messages, request.tool_definitions) == (None, None, None)
    assert request.tool_results and all(r.content is None for r in request.tool_results)
    assert request.tool_names  # names are always kept


# ---------------------------------------------------------------------------------------------------------
# Composed and converted fixtures


def test_failed_tool_result_is_an_error_and_json_results_are_kept_as_text() -> None:
    exchange = LOADED["composed-fs-tool-loop"].exchanges[2]
    recorded = current_message(exchange)["userInputMessageContext"]["toolResults"]
    request = parse(exchange, capture=True)
    results = request.tool_results[-2:]
    assert [(r.call_id, r.is_error) for r in results] == [(r["toolUseId"], r["status"] == "error") for r in recorded]
    assert json.loads(results[1].content) == recorded[1]["content"][0]["json"]
    assert request.params.max_tokens == request_body(exchange)["additionalModelRequestFields"]["max_tokens"]


def test_image_is_a_blob_with_its_bytes() -> None:
    exchange = LOADED["composed-image-tool-flow"].exchanges[1]  # row 08
    (image,) = current_message(exchange)["images"]
    request = parse(exchange, capture=True)
    blobs = [p for m in request.input_messages or [] for p in m["parts"] if p["type"] == "blob"]
    assert blobs == [{"type": "blob", "modality": "image", "mime_type": f"image/{image['format']}",
                      "content": image["source"]["bytes"]}]


def test_error_body_gives_the_aws_error_type() -> None:
    exchange = LOADED["image-error-400"].exchanges[0]  # row 03: 400, no x-amzn-errortype header
    doc = json.loads(exchange.response.body)
    record = run(exchange)
    assert (record.status, record.error_type) == (400, doc["__type"].rpartition("#")[2])
    assert record.error_message == doc["message"]


def test_exception_frame_reason_is_kept() -> None:
    exchange = LOADED["composed-exception"].exchanges[0]
    reason = next(doc["reason"] for kind, doc in recorded_events(exchange) if kind == "!")
    record = run(exchange)
    assert record.extras["kiro.error_reason"] == reason
    assert record.finish_reasons == []


# ---------------------------------------------------------------------------------------------------------
# Single frames (shapes from the client models, not seen in a capture)


TAIL = (event("contextUsageEvent", {"contextUsagePercentage": 1.5}),
        event("meteringEvent", {"unit": "credit", "unitPlural": "credits", "usage": 0.01}))


def test_message_metadata_names_the_response() -> None:
    record = run(inline(event("messageMetadataEvent", {"conversationId": "c-1", "utteranceId": "u-1"}), *TAIL))
    assert record.response_id == "u-1"


def test_unknown_events_are_counted_and_not_fatal() -> None:
    record = run(inline(event("followupPromptEvent", {"followupPrompt": {}}), event("assistantResponseEvent",
                        {"content": "ok"}), event("codeReferenceEvent", {"references": []}), *TAIL))
    assert record.extras["kiro.unknown_events"] == 2
    assert (output_text(record, "text"), record.finish_reasons, record.error_type) == ("ok", ["end_turn"], None)


def test_invalid_state_is_a_provider_error() -> None:
    record = run(inline(event("invalidStateEvent", {"reason": "INVALID_TASK_ASSIST_PLAN", "message": "no"})))
    assert (record.error_type, record.error_message) == ("INVALID_TASK_ASSIST_PLAN", "no")


def test_exception_without_type_in_payload_takes_the_header() -> None:
    record = run(inline(exception("validationError", "bad input")))
    assert (record.error_type, record.error_message) == ("validationError", "bad input")


def test_tool_call_without_stop_is_truncated_even_with_a_tail() -> None:
    call = {"toolUseId": "t-1", "name": "shell"}
    record = run(inline(event("toolUseEvent", {**call, "input": "{\"command\": \"ls\"}"}), *TAIL))
    assert record.error_type == "stream_truncated" and "t-1" in (record.error_message or "")
    assert record.tool_calls[0].arguments == "{\"command\": \"ls\"}"  # whole input in the first frame


def test_redacted_reasoning_counts_and_a_signature_alone_does_not() -> None:
    frames = (event("reasoningContentEvent", {"redactedContent": "AAEC"}),
              event("reasoningContentEvent", {"signature": "c2ln"}), *TAIL)
    events = ADAPTER.response_parser(ChatRequest(), HttpResponseHead(200, CIMultiDict())).feed(b"".join(frames))
    assert [type(e).__name__ for e in events if type(e).__name__ == "ReasoningDelta"] == ["ReasoningDelta"]


def test_metadata_stop_reason_is_kept_exactly_with_usage() -> None:
    usage = {"uncachedInputTokens": 10, "outputTokens": 4, "totalTokens": 14}
    record = run(inline(event("toolUseEvent", {"toolUseId": "t", "name": "x", "stop": True}),
                        event("metadataEvent", {"tokenUsage": usage, "stopReason": "END_TURN"})))
    assert record.finish_reasons == ["END_TURN"]
    assert (record.input_tokens, record.output_tokens, record.cache_read) == (10, 4, None)


# ---------------------------------------------------------------------------------------------------------
# Requests


def gar(body: Any, headers: dict[str, str] | None = None, path: str = "/") -> HttpRequest:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return HttpRequest("POST", path, CIMultiDict(headers or {}), raw)


def test_unreadable_body_is_still_a_streamed_call() -> None:
    request = ADAPTER.parse_request(gar(b"{not json"), capture=False)
    assert request.stream and request.parse_issue


def test_v3_ids_and_agent_mode_become_hints() -> None:
    body = {"conversationState": {"conversationId": "sess_1", "rootConversationId": "sess_0", "currentMessage": {
        "userInputMessage": {"content": "go", "modelId": "gpt-5.6-sol", "origin": "AI_EDITOR"}}},
        "agentMode": "general-task-execution", "additionalModelRequestFields": {"reasoning": {"effort": "high"}}}
    hints = ADAPTER.parse_request(gar(body), capture=False).hints
    assert hints == {"conversation_id": "sess_1", "root_conversation_id": "sess_0", "origin": "AI_EDITOR",
                     "agent_mode": "general-task-execution", "effort": "high", "model_vendor": "openai"}


def test_rest_json_agent_mode_header_is_a_hint() -> None:
    body = {"conversationState": {"conversationId": "c", "currentMessage": {"userInputMessage": {"content": "x"}}}}
    request = gar(body, {"x-amzn-kiro-agent-mode": "vibe"}, "/generateAssistantResponse")
    assert ADAPTER.parse_request(request, capture=False).hints["agent_mode"] == "vibe"


def test_history_without_the_acknowledgement_is_plain_conversation() -> None:
    body = {"conversationState": {"history": [{"userInputMessage": {"content": "first"}},
                                              {"assistantResponseMessage": {"content": "answer"}}],
                                  "currentMessage": {"userInputMessage": {"content": "second"}}}}
    request = ADAPTER.parse_request(gar(body), capture=True)
    assert request.system_instructions is None
    assert [m["role"] for m in request.input_messages or []] == ["user", "assistant", "user"]


@pytest.mark.parametrize(("model", "vendor"), [("claude-opus-4.7", "anthropic"), ("gpt-5.6-sol", "openai"),
                                               ("minimax-m2.5", "minimax"), ("glm-5", "z_ai"),
                                               ("deepseek-3.2", "deepseek"), ("qwen3-coder-next", "alibaba_cloud"),
                                               ("auto", None), ("", None), (None, None)])
def test_model_vendor_from_the_model_id(model: str | None, vendor: str | None) -> None:
    assert model_vendor(model) == vendor


@pytest.mark.parametrize(("headers", "name"), [
    ({"x-amz-target": f"AmazonCodeWhispererStreamingService.{GAR}",
      "user-agent": "aws-sdk-rust/1.3.16 md/appVersion-2.4.1 app/AmazonQ-For-CLI"}, "aws.kiro"),
    ({"x-amz-target": f"KiroRuntimeService.{GAR}", "user-agent": "aws-sdk-js/1.0.0 KiroCLI/2.23.1 KAS/0.66.8"},
     "aws.kiro"),
    ({"x-amz-target": f"AmazonCodeWhispererStreamingService.{GAR}",
      "user-agent": "aws-sdk-rust/1.3.9 md/appVersion-1.19.3 app/AmazonQ-For-CLI"}, "aws.q"),
    ({"x-amz-target": "AmazonQDeveloperStreamingService.SendMessage"}, "aws.q"),
    ({}, "aws.kiro"),
])
def test_provider_name_is_the_aws_service(headers: dict[str, str], name: str) -> None:
    assert ADAPTER.provider_name(gar({}, headers)) == name


def test_recorded_client_is_kiro() -> None:
    assert {ADAPTER.provider_name(http_request(ex)) for _, ex in STREAMS} == {"aws.kiro"}


# ---------------------------------------------------------------------------------------------------------
# Garbage never raises


JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats(allow_nan=False) | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)
KINDS = ["initial-response", "assistantResponseEvent", "reasoningContentEvent", "toolUseEvent", "metadataEvent",
         "contextUsageEvent", "meteringEvent", "messageMetadataEvent", "invalidStateEvent", "codeEvent"]
FIELDS = ["content", "modelId", "text", "redactedContent", "signature", "toolUseId", "name", "input", "stop",
          "tokenUsage", "uncachedInputTokens", "outputTokens", "stopReason", "contextUsagePercentage", "usage",
          "unit", "utteranceId", "reason", "message", "__type"]
PAYLOADS = st.fixed_dictionaries({}, optional={name: JSON | st.dictionaries(st.sampled_from(FIELDS), JSON,
                                                                            max_size=3) for name in FIELDS})
FRAMES = st.one_of(
    st.tuples(st.sampled_from(KINDS), PAYLOADS).map(lambda kp: event(*kp)),
    st.tuples(st.sampled_from(["throttlingError", "error", ""]), st.text(max_size=8)).map(lambda tm: exception(*tm)),
    st.tuples(st.dictionaries(st.sampled_from([":message-type", ":event-type", ":exception-type"]),
                              st.sampled_from(["event", "exception", "error", "toolUseEvent", ""])),
              st.binary(max_size=16)).map(lambda hp: frame(*hp)),
)


@settings(max_examples=100, deadline=None)
@given(body=st.binary(max_size=512) | st.lists(FRAMES, max_size=6).map(b"".join), cut=st.integers(0, 600))
def test_arbitrary_response_bytes_never_raise(body: bytes, cut: int) -> None:
    parser = ADAPTER.response_parser(ChatRequest(), HttpResponseHead(200, CIMultiDict()))
    builder = ExchangeBuilder(ChatRequest(), 200, capture=True)
    builder.add(1, parser.feed(body[:cut]) + parser.feed(body[cut:]) + parser.close())
    assert isinstance(builder.finish(), ChatRecord)


REQUEST_FIELDS = ["conversationState", "history", "currentMessage", "userInputMessage", "assistantResponseMessage",
                  "userInputMessageContext", "tools", "toolSpecification", "inputSchema", "json", "toolResults",
                  "toolUseId", "content", "status", "text", "toolUses", "name", "input", "images", "format",
                  "modelId", "origin", "conversationId", "additionalModelRequestFields", "output_config", "effort",
                  "max_tokens", "reasoningContent", "reasoningText", "agentMode", "rootConversationId"]


def messy(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    """Objects with the request's field names and any values: one level deeper than `inner`."""
    return st.dictionaries(st.sampled_from(REQUEST_FIELDS), inner | st.lists(inner, max_size=2) | JSON, max_size=3)


@settings(max_examples=100, deadline=None)
@given(body=messy(messy(messy(messy(messy(JSON))))), capture=st.booleans())
def test_arbitrary_request_bodies_never_raise(body: dict[str, Any], capture: bool) -> None:
    request = ADAPTER.parse_request(gar(body), capture=capture)
    assert request.stream
