"""The Responses-over-WebSocket reader (issue 17): the recorded Codex 0.169 socket, and edge cases made up here."""

from __future__ import annotations

import orjson
import pytest

from llm_gateway.protocols import openai_responses
from llm_gateway.protocols.base import HttpRequest, HttpResponseHead, Opcode, SocketMessage
from llm_gateway.protocols.responses_socket import (
    KEPT_CONVERSATIONS,
    CallBody,
    CallEnd,
    CallRequest,
    CallResponse,
    ResponsesSocket,
    SocketEvent,
)
from llm_gateway.protocols.run import ExchangeRun
from llm_gateway.recordings import load
from tests.support import FIXTURES

CODEX = load(FIXTURES / "websocket/codex-0.169-session.json").exchanges[0]
UPGRADE = HttpRequest("GET", CODEX.request.path, dict(CODEX.request.headers), b"", "https://api.openai.com")


def _read(messages: list[SocketMessage], end: tuple[str | None, str | None] | None = None) -> list[SocketEvent]:
    socket = ResponsesSocket(UPGRADE)
    events = [e for m in messages for e in socket.message(m)]
    return events + (socket.close(*end) if end is not None else [])


def _recorded() -> list[SocketMessage]:
    return [SocketMessage(m.from_client, Opcode(m.opcode), m.data) for m in CODEX.messages or ()]


def _client(body: dict) -> SocketMessage:
    return SocketMessage(True, Opcode.TEXT, orjson.dumps({"type": "response.create", **body}))


def _server(event: dict) -> SocketMessage:
    return SocketMessage(False, Opcode.TEXT, orjson.dumps(event))


def _records(events: list[SocketEvent], capture: bool = True) -> list:
    """Each call's record, as the Responses adapter reads the exchange the reader made of it."""
    runs: dict[int, ExchangeRun] = {}
    records = []
    for t, event in enumerate(events):
        match event:
            case CallRequest(call=n, request=request):
                runs[n] = ExchangeRun(openai_responses.ADAPTER, request, capture=capture)
            case CallResponse(call=n, head=head):
                runs[n].response_head(head)
            case CallBody(call=n, data=data):
                runs[n].body(t, data)
            case CallEnd(call=n):
                records.append(runs.pop(n).finish(t))
    return records


def test_codex_warm_up_makes_no_call_and_each_chained_call_carries_the_whole_conversation() -> None:
    events = _read(_recorded())
    requests = [e.request for e in events if isinstance(e, CallRequest)]
    assert len(requests) == 2  # three response.create, the first a warm-up (generate: false)
    sent = [orjson.loads(m.data) for m in CODEX.messages or () if m.from_client]
    assert sent[0]["generate"] is False and all("previous_response_id" in s for s in sent[1:])
    bodies = [orjson.loads(r.body) for r in requests]
    assert all("previous_response_id" not in b for b in bodies)
    # the warm-up's input, then the new items; then all that, the call it output, and its result
    assert bodies[0]["input"] == sent[0]["input"] + sent[1]["input"]
    function_call = next(orjson.loads(m.data)["item"] for m in CODEX.messages or ()
                         if not m.from_client and b'"response.output_item.done"' in m.data)
    assert bodies[1]["input"] == bodies[0]["input"] + [function_call] + sent[2]["input"]
    assert [r.method for r in requests] == ["POST", "POST"] and requests[0].path == CODEX.request.path


def test_codex_calls_read_as_a_post_of_the_same_call_reads() -> None:
    first, second = _records(_read(_recorded()))
    assert [r.status for r in (first, second)] == [200, 200]
    assert [c.name for c in first.tool_calls] == ["exec_command"]
    # the same prompt for both (Codex's environment context is a user message too): one turn, named across restarts
    assert first.request.prompt_ordinal == second.request.prompt_ordinal == 2
    assert not first.request.continues_tool_loop
    assert second.request.continues_tool_loop and second.request.tool_results[0].name == "exec_command"
    assert second.request.input_messages[-2]["parts"][0]["type"] == "tool_call"  # the history follows the chain
    assert (first.input_tokens, second.output_tokens, second.finish_reasons) == (1200, 12, ["completed"])
    assert first.request.stream and first.first_chunk_ns is not None
    assert "previous_response_id" not in first.request.hints


def test_client_metadata_entries_are_the_calls_headers() -> None:
    events = _read(_recorded())
    request = next(e.request for e in events if isinstance(e, CallRequest))
    create = orjson.loads([m.data for m in CODEX.messages or () if m.from_client][1])  # after the warm-up
    turn = create["client_metadata"]["x-codex-turn-metadata"]
    upgrade = dict(CODEX.request.headers)["x-codex-turn-metadata"]
    assert orjson.loads(upgrade)["request_kind"] == "prewarm"
    assert request.headers["x-codex-turn-metadata"] == turn and orjson.loads(turn)["request_kind"] == "turn"
    assert request.headers["session-id"] == dict(CODEX.request.headers)["session-id"]


def test_socket_closed_mid_response_ends_the_call_with_who_closed_it() -> None:
    messages = [_client({"model": "m", "input": "hi"}), _server({"type": "response.created", "response": {"id": "r1"}}),
                SocketMessage(False, Opcode.CLOSE, (1011).to_bytes(2, "big") + b"overloaded")]
    *_, end = _read(messages, (None, None))
    assert end == CallEnd(1, "upstream_stream_cut", "the upstream closed the WebSocket (1011 overloaded) before the "
                                                     "response ended")
    (record,) = _records(_read(messages, ("client_gone", "the client went away")))
    assert record.error_type == "stream_truncated"  # the stream itself: cut before response.completed


def test_error_event_with_a_status_is_the_calls_status_and_error_body() -> None:
    error = {"type": "error", "status": 429, "error": {"type": "usage_limit_reached", "message": "limit"}}
    events = _read([_client({"model": "m", "input": "hi"}), _server(error)])
    assert events[1] == CallResponse(1, HttpResponseHead(429, {"content-type": "application/json"}))
    (record,) = _records(events)
    assert (record.status, record.error_type, record.error_message) == (429, "usage_limit_reached", "limit")


@pytest.mark.parametrize("payload", [b'{"type":"response.completed","response":{"id":"r1"}}',
                                     b'{\r\n "type": "response.completed",\n "response": {"id": "r1"}\r}'])
def test_each_server_event_is_one_sse_event_whatever_its_line_ends(payload: bytes) -> None:
    events = _read([_client({"model": "m", "input": "hi"}), SocketMessage(False, Opcode.TEXT, payload)])
    (record,) = _records(events)
    assert (record.response_id, record.parse_issues, record.error_type) == ("r1", [], None)


def test_unknown_previous_response_keeps_the_body_and_its_hint() -> None:
    message = _client({"model": "m", "previous_response_id": "resp_elsewhere", "input": [
        {"type": "function_call_output", "call_id": "c1", "output": "x"}]})
    (request,) = [e.request for e in _read([message]) if isinstance(e, CallRequest)]
    assert request.body == message.payload
    assert ExchangeRun(openai_responses.ADAPTER, request).request.hints["previous_response_id"] == "resp_elsewhere"


def test_events_between_calls_and_other_messages_belong_to_no_call() -> None:
    messages = [_server({"type": "codex.rate_limits"}), SocketMessage(True, Opcode.TEXT, b"not json"),
                SocketMessage(True, Opcode.TEXT, b'{"type":"response.processed","response_id":"r0"}'),
                SocketMessage(True, Opcode.BINARY, b"\x00"), SocketMessage(False, Opcode.PING, b"")]
    assert _read(messages, (None, None)) == []


def test_only_the_latest_conversations_are_kept() -> None:
    socket = ResponsesSocket(UPGRADE)
    for n in range(KEPT_CONVERSATIONS + 1):
        socket.message(_client({"model": "m", "input": f"q{n}"}))
        socket.message(_server({"type": "response.completed", "response": {"id": f"r{n}", "output": []}}))
    oldest = socket.message(_client({"model": "m", "previous_response_id": "r0", "input": "again"}))
    newest = socket.message(_client({"model": "m", "previous_response_id": f"r{KEPT_CONVERSATIONS}", "input": "x"}))
    assert b"previous_response_id" in oldest[0].request.body
    assert orjson.loads(newest[0].request.body)["input"][0]["content"] == f"q{KEPT_CONVERSATIONS}"
