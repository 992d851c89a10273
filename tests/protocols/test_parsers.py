"""The shared body parsers and the adapters' stream states as state machines: each state named, shown by
`__repr__`, and what a state does not take logged at debug with the state's name. Also the two hooks through which
the Anthropic adapter words broken bodies its own way on the shared parsers."""

from __future__ import annotations

import importlib
import logging

import pytest
from multidict import CIMultiDict

from llm_gateway.protocols import anthropic, bedrock, kiro
from llm_gateway.protocols import events as ev
from llm_gateway.protocols._parsers import ElementParser, EventStreamParser, JsonBodyParser, ReadState, SSEParser
from llm_gateway.protocols.anthropic import AnthropicStreamState
from llm_gateway.protocols.base import HttpResponseHead
from llm_gateway.protocols.exchange import ChatRequest
from llm_gateway.protocols.framing import DEFAULT_MAX_EVENT_SIZE
from llm_gateway.protocols.framing.eventstream import Frame
from llm_gateway.protocols.framing.jsonarray import JsonArrayDecoder
from llm_gateway.protocols.framing.sse import SSEEvent
from tests.support.eventstream_encode import event

OVERSIZED_LINE = b"data: " + b"x" * DEFAULT_MAX_EVENT_SIZE


class Recorder:
    """A handler of every kind that notes what it was given and says `ended` at the end."""

    def __init__(self) -> None:
        self.seen: list[object] = []

    def event(self, frame: SSEEvent) -> list[ev.Event]:
        self.seen.append(frame.data)
        return [ev.TextDelta(frame.data)]

    def frame(self, frame: Frame) -> list[ev.Event]:
        self.seen.append(frame.event_type)
        return [ev.TextDelta(frame.event_type or "")]

    def document(self, raw: bytes | str) -> list[ev.Event]:
        self.seen.append(raw)
        return [ev.TextDelta(str(raw))]

    def end(self, cut_in_frame: bool = False) -> list[ev.Event]:
        return [ev.Truncated("ended")]

    def __repr__(self) -> str:
        return f"<Recorder {len(self.seen)}>"


def debug_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "llm_gateway.protocols" and r.levelno == logging.DEBUG]


# ---------------------------------------------------------------------------------------------------------
# The shared parsers


def test_sse_parser_reads_then_closes() -> None:
    parser = SSEParser(Recorder())
    assert repr(parser) == "<SSEParser READING <Recorder 0>>"
    assert parser.feed(b"data: a\n\ndata: b") == [ev.TextDelta("a")]
    assert parser.close() == [ev.TextDelta("b"), ev.Truncated("ended")]
    assert parser.state is ReadState.CLOSED


def test_sse_parser_skips_the_rest_after_broken_framing_and_logs_it(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, "llm_gateway.protocols")
    handler = Recorder()
    parser = SSEParser(handler)
    assert parser.feed(b"data: a\n\n") == [ev.TextDelta("a")]
    (problem,) = parser.feed(OVERSIZED_LINE)
    assert problem == ev.ParseIssue(f"sse: FramingError: SSE line longer than {DEFAULT_MAX_EVENT_SIZE} bytes")
    assert parser.state is ReadState.SKIPPING and repr(parser).startswith("<SSEParser SKIPPING")
    assert parser.feed(b"\n\ndata: b\n\n") == []
    assert parser.close() == [ev.Truncated("ended")]  # the handler still says how the stream ended
    assert parser.close() == []
    assert handler.seen == ["a"]
    assert debug_lines(caplog) == ["SSEParser: 11 bytes in state SKIPPING", "SSEParser: close in state CLOSED"]


def test_bytes_after_close_are_logged_not_read(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, "llm_gateway.protocols")
    for parser in (SSEParser(Recorder()), EventStreamParser(Recorder()),
                   ElementParser(JsonArrayDecoder(), Recorder()), JsonBodyParser(lambda doc: [])):
        parser.close()
        assert parser.feed(b"data: late\n\n") == []
    assert debug_lines(caplog) == [f"{name}: 12 bytes in state CLOSED"
                                   for name in ("SSEParser", "EventStreamParser", "ElementParser", "JsonBodyParser")]


def test_event_stream_parser_says_nothing_at_the_end_of_a_damaged_body() -> None:
    damaged = bytearray(event("contentBlockDelta", {}))
    damaged[-1] ^= 0xFF
    parser = EventStreamParser(Recorder())
    out = parser.feed(event("messageStart", {}) + bytes(damaged) + event("metadata", {}))
    assert out[0] == ev.TextDelta("messageStart") and isinstance(out[1], ev.ParseIssue) and len(out) == 2
    assert parser.state is ReadState.SKIPPING
    assert parser.close() == []


def test_json_body_over_the_limit_is_counted_not_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(JsonBodyParser, "MAX_BYTES", 10)
    parser = JsonBodyParser(lambda doc: [ev.TextDelta("read")])
    parser.feed(b'{"a": "012')
    assert parser.state is ReadState.READING
    parser.feed(b'3456789"}')
    assert parser.state is ReadState.SKIPPING and parser._parts == []
    assert parser.close() == [ev.ParseIssue("JSON body of 19 bytes is larger than 10; not read")]


@pytest.mark.parametrize(("body", "expected"), [
    (b'{"a": 1}  \n', [ev.TextDelta("read")]),
    (b'{"a": [1, ', [ev.Truncated("the JSON body ended before the document did")]),
    (b"", [ev.Truncated("the JSON body ended before the document did")]),
    (b"[1]", [ev.ParseIssue("body: ValueError: expected a JSON object, got list")]),
])
def test_json_body_read_at_the_end(body: bytes, expected: list[ev.Event]) -> None:
    parser = JsonBodyParser(lambda doc: [ev.TextDelta("read")])
    parser.feed(body)
    assert parser.close() == expected


# ---------------------------------------------------------------------------------------------------------
# Anthropic on the shared parsers: its own words for broken bodies


def anthropic_parser(content_type: str) -> SSEParser | JsonBodyParser:
    head = HttpResponseHead(200, CIMultiDict({"content-type": content_type}))
    parser = anthropic.ADAPTER.response_parser(ChatRequest(), head)
    assert isinstance(parser, SSEParser | JsonBodyParser)
    return parser


def test_anthropic_sse_after_broken_framing_leaves_the_end_unsaid() -> None:
    parser = anthropic_parser("text/event-stream")
    assert parser.feed(OVERSIZED_LINE) == [ev.ParseIssue(f"SSE framing: SSE line longer than "
                                                         f"{DEFAULT_MAX_EVENT_SIZE} bytes")]
    assert parser.close() == []  # no Truncated: whether message_stop came is unknown


@pytest.mark.parametrize(("body", "issue"), [
    (b'{"type": "message", "content": [', "message body is not JSON"),  # cut: not a truncation here
    (b"", "message body is not JSON"),
    (b"[]", "message body is not a JSON object"),
])
def test_anthropic_unreadable_message_body_is_a_parse_issue(body: bytes, issue: str) -> None:
    parser = anthropic_parser("application/json")
    parser.feed(body)
    assert parser.close() == [ev.ParseIssue(issue)]


def test_anthropic_message_body_over_the_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(JsonBodyParser, "MAX_BYTES", 10)
    parser = anthropic_parser("application/json")
    parser.feed(b'{"type": "message"}')
    assert parser.close() == [ev.ParseIssue("message body larger than 10 bytes: not read")]


@pytest.mark.parametrize(("data", "issue"), [
    (b"{", "SSE event 'message_start': data is not JSON"),
    (b"[1]", "SSE event 'message_start': data is not a JSON object"),
])
def test_anthropic_sse_event_that_is_not_an_object_is_a_parse_issue(data: bytes, issue: str) -> None:
    parser = anthropic_parser("text/event-stream")
    assert parser.feed(b"event: message_start\ndata: " + data + b"\n\n") == [ev.ParseIssue(issue)]


# ---------------------------------------------------------------------------------------------------------
# Stream states


def test_anthropic_stream_state_moves_to_stopped() -> None:
    state = AnthropicStreamState()
    assert repr(state).startswith("<AnthropicStreamState STREAMING")
    state.events({"type": "message_start", "message": {"id": "m"}})
    assert not state.ended
    state.events({"type": "message_stop"})
    assert state.ended and state.saw_message_stop and repr(state).startswith("<AnthropicStreamState STOPPED")
    assert state.end() == []


def test_anthropic_error_then_message_stop_ends_stopped() -> None:
    state = AnthropicStreamState()
    error = {"type": "error", "error": {"type": "overloaded_error", "message": "busy"}}
    assert state.events(error) == [ev.ProviderError("overloaded_error", "busy")]
    assert state.ended and not state.saw_message_stop and repr(state).startswith("<AnthropicStreamState FAILED")
    state.events({"type": "message_stop"})
    assert state.saw_message_stop


def test_anthropic_event_after_message_stop_is_read_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, "llm_gateway.protocols")
    state = AnthropicStreamState()
    state.events({"type": "message_stop"})
    late = {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "late"}}
    assert state.events(late) == [ev.TextDelta("late")]
    assert state.events({"type": "error", "error": {"type": "x"}}) == [ev.ProviderError("x", None)]
    assert state.saw_message_stop  # an error after message_stop changes nothing
    assert debug_lines(caplog) == ["AnthropicStreamState: 'content_block_delta' event in state STOPPED",
                                   "AnthropicStreamState: 'error' event in state STOPPED"]


def test_bedrock_stream_is_done_once_its_anthropic_chunks_end() -> None:
    state = bedrock._StreamState()
    assert repr(state).startswith("<bedrock._StreamState STREAMING")
    chunk = event("chunk", {"bytes": "eyJ0eXBlIjoibWVzc2FnZV9zdG9wIn0="})  # {"type":"message_stop"}
    parser = EventStreamParser(state)
    assert parser.feed(chunk) == []
    assert repr(state).startswith("<bedrock._StreamState DONE <AnthropicStreamState STOPPED")
    assert parser.close() == []


OPENAI_CHUNK = b'data: {"id":"c","model":"m","choices":[{"index":0,"delta":{"content":"hi"}}]}\n\n'
RESPONSES_DONE = b'data: {"type":"response.completed","response":{"id":"r","model":"m"}}\n\n'
RESPONSES_DELTA = b'data: {"type":"response.output_text.delta","delta":"late"}\n\n'


@pytest.mark.parametrize(("adapter", "content_type", "body", "state", "logged"), [
    ("openai_chat", "text/event-stream", OPENAI_CHUNK, "_ChatStream STREAMING", []),
    ("openai_chat", "text/event-stream", OPENAI_CHUNK + b"data: [DONE]\n\n" + OPENAI_CHUNK, "_ChatStream DONE",
     ["_ChatStream: a chunk in state DONE"]),
    ("openai_chat", "text/event-stream", b'data: {"error":{"message":"x"}}\n\ndata: [DONE]\n\n',
     "_ChatStream DONE", []),
    ("openai_responses", "text/event-stream", RESPONSES_DONE + RESPONSES_DELTA, "_ResponsesStream ENDED",
     ["_ResponsesStream: 'response.output_text.delta' event in state ENDED"]),
    ("openai_responses", "text/event-stream", b'data: {"type":"error","message":"x"}\n\n',
     "_ResponsesStream FAILED", []),
    ("ollama", "application/x-ndjson", b'{"model":"m","done":true}\n{"model":"m","response":"late"}\n',
     "_OllamaStream DONE", ["_OllamaStream: an object in state DONE"]),
    ("ollama", "application/x-ndjson", b'{"error":"boom"}\n', "_OllamaStream FAILED", []),
    ("gemini", "text/event-stream", b'data: {"candidates":[{"finishReason":"STOP"}]}\n\n',
     "_GeminiStream FINISHED", []),
    ("gemini", "application/json", b'[{"error":{"code":429}}]', "_GeminiStream ENDED", []),
])
def test_adapter_stream_states(caplog: pytest.LogCaptureFixture, adapter: str, content_type: str, body: bytes,
                               state: str, logged: list[str]) -> None:
    caplog.set_level(logging.DEBUG, "llm_gateway.protocols")
    module = importlib.import_module(f"llm_gateway.protocols.{adapter}")
    head = HttpResponseHead(200, CIMultiDict({"content-type": content_type}))
    parser = module.ADAPTER.response_parser(ChatRequest(stream=True), head)
    events = parser.feed(body) + parser.close()
    assert f"CLOSED <{state}" in repr(parser)
    truncated = any(isinstance(e, ev.Truncated) for e in events)
    assert truncated is state.endswith("STREAMING")
    assert debug_lines(caplog) == logged


@pytest.mark.parametrize(("frames", "state", "truncated"), [
    ([("assistantResponseEvent", {"content": "hi"})], "STREAMING", True),
    ([("assistantResponseEvent", {"content": "hi"}), ("meteringEvent", {"usage": 0.1})], "TAIL", False),
    ([("invalidStateEvent", {"reason": "x"}), ("meteringEvent", {"usage": 0.1})], "ERRORED", False),
])
def test_kiro_stream_states(frames: list[tuple[str, dict[str, object]]], state: str, truncated: bool) -> None:
    parser = kiro.ADAPTER.response_parser(ChatRequest(stream=True), HttpResponseHead(200, CIMultiDict()))
    events = parser.feed(b"".join(event(name, body) for name, body in frames)) + parser.close()
    assert f"<kiro._StreamState {state}" in repr(parser)
    assert any(isinstance(e, ev.Truncated) for e in events) is truncated
