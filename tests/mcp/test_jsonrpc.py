"""The sans-IO MCP observer: newline framing at any split point, pairing in both directions, and never raising
on what arrives. Transcripts are written in the two envelope orders real SDKs use (Python writes
`{"jsonrpc","id",...}` first, TypeScript last); expected values are read from the lines themselves."""

from __future__ import annotations

import json

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from llm_gateway.mcp.jsonrpc import (
    CallStarted,
    CallTracker,
    Direction,
    LineFramer,
    LineState,
    McpCall,
    Oversized,
    Request,
    Response,
    StreamObserver,
    parse,
)

C2S, S2C = Direction.CLIENT_TO_SERVER, Direction.SERVER_TO_CLIENT

CLIENT_SENT = b"".join([
    b'{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{}}}\n',
    b'{"jsonrpc":"2.0","method":"notifications/initialized"}\n',
    b'{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"read_text_file","arguments":{"path":"a.txt"}}}\n',
    b'{"jsonrpc":"2.0","id":0,"result":{"roots":[]}}\r\n',
    b'{"jsonrpc":"2.0","id":"r-3","method":"resources/read","params":{"uri":"file:///x"}}\n',
    b'{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"write_file","arguments":{"path":"\xc3\xa9"}}}\n',
])
SERVER_SENT = b"".join([
    b'{"result":{"protocolVersion":"2025-06-18","serverInfo":{"name":"fs-server","version":"1"}},'
    b'"jsonrpc":"2.0","id":1}\n',
    b'{"method":"notifications/tools/list_changed","jsonrpc":"2.0"}\n',
    b'{"method":"roots/list","jsonrpc":"2.0","id":0}\n',
    b'{"result":{"content":[{"type":"text","text":"hello"}]},"jsonrpc":"2.0","id":2}\n',
    b'not json: a log line the server should not have printed\n',
    b'{"jsonrpc":"2.0","id":"r-3","error":{"code":-32002,"message":"Resource not found"}}\n',
    b'{"result":{"content":[{"type":"text","text":"denied"}],"isError":true},"jsonrpc":"2.0","id":4}\n',
])


def _lines(data: bytes) -> list[dict]:
    return [orjson.loads(line) for line in data.splitlines() if line.startswith((b"{", b"["))]


def _run(client_chunks: list[bytes], server_chunks: list[bytes], capture: bool = False) -> list:
    """Feeds the client's messages first, each direction in the given chunks (times: chunk index)."""
    observer = StreamObserver(capture=capture)
    events = []
    for i, chunk in enumerate(client_chunks):
        events += observer.feed(C2S, chunk, i)
    for i, chunk in enumerate(server_chunks):
        events += observer.feed(S2C, chunk, 100 + i)
    return events + observer.close("connection_closed", 1000)


def _summary(events: list) -> list[tuple]:
    return [(type(e).__name__, e.method, e.request_id, e.direction, getattr(e, "error_type", None),
             getattr(e, "protocol_version", None)) for e in events]


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


def test_transcript_whole_pairs_every_request_with_its_response():
    events = _run([CLIENT_SENT], [SERVER_SENT])
    calls = [e for e in events if isinstance(e, McpCall)]
    client = {m["id"]: m for m in _lines(CLIENT_SENT) if "method" in m and "id" in m}
    server = {m["id"]: m for m in _lines(SERVER_SENT) if "method" in m and "id" in m}
    assert sorted(str(c.request_id) for c in calls) == sorted(map(str, [*client, *server]))
    for call in calls:
        request = (client if call.direction is C2S else server)[call.request_id]
        assert call.method == request["method"]
    by_id = {c.request_id: c for c in calls}
    negotiated = _lines(SERVER_SENT)[0]["result"]["protocolVersion"]
    assert {c.protocol_version for c in calls} == {negotiated}
    error = next(m for m in _lines(SERVER_SENT) if "error" in m)
    assert by_id[error["id"]].error_type == str(error["error"]["code"])
    assert by_id[error["id"]].target == client[error["id"]]["params"]["uri"]
    assert by_id[4].error_type == "tool_error" and by_id[2].error_type is None
    assert by_id[0].direction is S2C and by_id[0].method == "roots/list"
    assert [e.request_id for e in events if isinstance(e, CallStarted)] == [2, 4]  # tools/call only


def test_transcript_byte_by_byte_gives_the_same_calls():
    whole = _summary(_run([CLIENT_SENT], [SERVER_SENT]))
    assert _summary(_run(_split(CLIENT_SENT, list(range(len(CLIENT_SENT)))),
                         _split(SERVER_SENT, list(range(len(SERVER_SENT)))))) == whole


@settings(max_examples=80, deadline=None)
@given(st.lists(st.integers(min_value=0), max_size=12), st.lists(st.integers(min_value=0), max_size=12))
def test_transcript_random_cuts_give_the_same_calls(client_cuts, server_cuts):
    whole = _summary(_run([CLIENT_SENT], [SERVER_SENT]))
    assert _summary(_run(_split(CLIENT_SENT, client_cuts), _split(SERVER_SENT, server_cuts))) == whole


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.binary(max_size=300)), max_size=20))
def test_arbitrary_bytes_never_raise(chunks):
    observer = StreamObserver(max_line=64)
    for to_server, data in chunks:
        observer.feed(C2S if to_server else S2C, data, 1)
    observer.close("connection_closed", 2)


@settings(max_examples=100, deadline=None)
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
                        st.sampled_from(["id", "method", "params", "result", "error", "jsonrpc", "x"]), inner,
                        max_size=4), max_leaves=10))
def test_any_json_value_never_raises(value):
    tracker = CallTracker(capture=True)
    for message in parse(json.dumps(value).encode()):
        tracker.feed(C2S, message, 1)
        tracker.feed(S2C, message, 2)
    tracker.close("connection_closed", 3)


def test_notifications_and_unknown_ids_are_not_calls():
    events = _run([b'{"jsonrpc":"2.0","method":"notifications/progress","params":{"progress":1}}\n'],
                  [b'{"jsonrpc":"2.0","id":99,"result":{}}\n{"jsonrpc":"2.0","id":null,"error":{"code":-32700}}\n'])
    assert events == []


def test_capture_off_keeps_tool_arguments_for_matching_but_no_content():
    (call,) = [e for e in _run([CLIENT_SENT], [SERVER_SENT]) if isinstance(e, McpCall) and e.request_id == 2]
    arguments = _lines(CLIENT_SENT)[2]["params"]["arguments"]
    assert call.arguments == arguments
    assert call.params is None and call.result is None
    (captured,) = [e for e in _run([CLIENT_SENT], [SERVER_SENT], capture=True)
                   if isinstance(e, McpCall) and e.request_id == 2]
    assert captured.result == _lines(SERVER_SENT)[3]["result"]
    assert captured.params == _lines(CLIENT_SENT)[2]["params"]


def test_same_id_in_both_directions_pairs_separately():
    events = _run([b'{"jsonrpc":"2.0","id":1,"method":"ping"}\n{"jsonrpc":"2.0","id":1,"result":{"roots":[]}}\n'],
                  [b'{"jsonrpc":"2.0","id":1,"method":"roots/list"}\n{"jsonrpc":"2.0","id":1,"result":{}}\n'])
    assert sorted((e.method, e.direction.value) for e in events) == [
        ("ping", "client_to_server"), ("roots/list", "server_to_client")]


def test_out_of_order_response_seen_before_its_request_pairs_with_both_times():
    tracker = CallTracker(out_of_order=True)
    (response,) = parse(b'{"jsonrpc":"2.0","id":5,"result":{}}')
    (request,) = parse(b'{"jsonrpc":"2.0","id":5,"method":"sampling/createMessage","params":{}}')
    assert tracker.feed(C2S, response, 20) == []  # the client's answer, on a POST, before the stream was read
    (call,) = tracker.feed(S2C, request, 10)
    assert (call.method, call.direction, call.started_ns, call.ended_ns) == ("sampling/createMessage", S2C, 10, 20)


def test_on_a_pipe_a_stray_response_never_pairs_with_a_later_request():
    events = _run([b'{"jsonrpc":"2.0","id":1,"method":"ping"}\n'], [b'{"jsonrpc":"2.0","id":1,"result":{}}\n'])
    stray_first = StreamObserver()
    assert stray_first.feed(S2C, b'{"jsonrpc":"2.0","id":1,"result":{}}\n', 1) == []
    assert stray_first.feed(C2S, b'{"jsonrpc":"2.0","id":1,"method":"ping"}\n', 2) == []
    (late,) = stray_first.close("connection_closed", 3)
    assert late.error_type == "connection_closed"
    assert [e.error_type for e in events] == [None]


def test_cancelled_request_fails_as_cancelled_and_close_fails_the_rest():
    events = _run([b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"slow"}}\n'
                   b'{"jsonrpc":"2.0","id":2,"method":"tools/list"}\n'
                   b'{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":1}}\n'], [])
    calls = {e.request_id: e for e in events if isinstance(e, McpCall)}
    assert calls[1].error_type == "cancelled" and calls[1].ended_ns == 0
    assert calls[2].error_type == "connection_closed" and calls[2].ended_ns == 1000


def test_pending_requests_are_bounded():
    tracker = CallTracker(max_pending=3)
    for i in range(10):
        tracker.feed(C2S, Request(i, "ping"), i)
    assert tracker.pending == 3
    assert [c.request_id for c in tracker.close("connection_closed", 99)] == [7, 8, 9]


def test_batch_gives_each_message():
    messages = parse(b'[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","method":"x"},7]')
    assert [type(m).__name__ for m in messages] == ["Request", "Notification"]


def test_oversized_lines_are_paired_by_their_envelope_in_either_order():
    big = "x" * 5000
    python_request = orjson.dumps({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
                                   "params": {"name": "write_file", "arguments": {"content": big}}})
    ts_response = orjson.dumps({"result": {"content": [{"type": "text", "text": big}]}, "jsonrpc": "2.0", "id": 7})
    observer = StreamObserver(max_line=1000)
    started = observer.feed(C2S, python_request[:3000], 1) + observer.feed(C2S, python_request[3000:] + b"\n", 2)
    (call,) = observer.feed(S2C, ts_response + b"\n", 3)
    assert [(s.method, s.target) for s in started] == [("tools/call", "write_file")]
    assert (call.method, call.request_id, call.target, call.started_ns, call.ended_ns) == (
        "tools/call", 7, "write_file", 2, 3)


def test_framer_keeps_memory_bounded_and_reports_the_size():
    framer = LineFramer(max_line=100, keep=10)
    out = framer.feed(b"a" * 50) + framer.feed(b"b" * 500)
    assert framer.state is LineState.OVERSIZED and repr(framer) == "LineFramer(OVERSIZED, 550 bytes)"
    out += framer.feed(b"c\nnext\n")
    assert out == [Oversized(b"a" * 10, b"b" * 9 + b"c", 551), b"next"]
    assert framer.state is LineState.BUFFERING and repr(framer) == "LineFramer(BUFFERING, 0 bytes buffered)"
    assert parse(Oversized(b"garbage", b"garbage", 9)) == []
    assert parse(Oversized(b'{"jsonrpc":"2.0","id":"a\\"b","result":', b"}", 9)) == [Response('a"b', partial=True)]
