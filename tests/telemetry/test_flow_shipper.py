"""What the relay's shipper puts into the telemetry process's pipe, and when: nothing in front of the upstream call
or of the first byte to the client; the request and the response head go with the first chunk (or message),
always ahead of anything else of that flow, or the whole flow in one message when it ended before any of it was
sent. The whole path through a real telemetry process is in test_telemetry_process.py; here the messages are
read as the telemetry process reads them (`flow_wire.decode`)."""

from __future__ import annotations

import time

from multidict import CIMultiDict, CIMultiDictProxy

from llm_gateway.config import Settings
from llm_gateway.flow import Flow, call_hook, finish, notify_chunk, notify_message
from llm_gateway.offload import flow_wire
from llm_gateway.offload.flow_wire import FlowReplicas
from llm_gateway.offload.shipper import FlowShipper
from llm_gateway.protocols.base import Opcode, SocketMessage
from llm_gateway.recordings import load
from llm_gateway.routing import Router
from tests.support import FIXTURES

EXCHANGE = load(FIXTURES / "anthropic/tools-streaming.json").exchanges[0]


class Pipe:
    """The part of `TelemetryProcess` the shipper uses, keeping what it sends."""

    generation = 1
    destination = "test"

    def __init__(self) -> None:
        self.sent: list[flow_wire.Message] = []

    def open_flow(self) -> int:
        return self.generation

    def end_flow(self, generation: int) -> bool:
        return generation == self.generation

    def send(self, message: tuple) -> None:
        (decoded,) = flow_wire.decode([message])
        self.sent.append(decoded)


def _flow(websocket: bool = False) -> Flow:
    request = EXCHANGE.request
    headers = CIMultiDictProxy(CIMultiDict(request.headers))
    route = Router(Settings(), {}).resolve(request.method, request.path, headers)
    assert route is not None
    return Flow(request.method, request.path, _fields(request.headers), request.body, route,
                "http://127.0.0.1:9" + request.path, started_ns=time.time_ns(), websocket=websocket)


def _fields(headers) -> list[tuple[bytes, bytes]]:
    return [(name.encode(), value.encode()) for name, value in headers]


def _answer(flow: Flow) -> None:
    flow.upstream_started_ns = time.time_ns()
    flow.status, flow.response_started_ns = EXCHANGE.response.status, time.time_ns()
    flow.response_headers = CIMultiDictProxy(CIMultiDict(EXCHANGE.response.headers))
    flow.response_fields = _fields(EXCHANGE.response.headers)


def _kinds(pipe: Pipe) -> list[str]:
    return [type(message).__name__ for message in pipe.sent]


def test_a_stream_goes_into_the_pipe_from_its_first_chunk_on():
    pipe = Pipe()
    shipper, flow = FlowShipper(pipe), _flow()  # type: ignore[arg-type]
    call_hook([shipper], "request", flow)
    _answer(flow)
    call_hook([shipper], "response_headers", flow)
    assert pipe.sent == []  # nothing before the upstream call, nothing before the first byte
    chunks = EXCHANGE.response.chunks
    for chunk in chunks:
        notify_chunk(flow.chunk_observers or (), time.time_ns(), chunk.data)
    flow.ended_ns = time.time_ns()
    finish([shipper], flow)
    assert _kinds(pipe) == ["Opened", "Answered", *["Chunk"] * len(chunks), "Ended"]
    opened, answered = pipe.sent[:2]
    assert isinstance(opened, flow_wire.Opened) and isinstance(answered, flow_wire.Answered)
    assert (opened.request_body, opened.started_ns) == (EXCHANGE.request.body, flow.started_ns)
    assert (answered.status, answered.response_started_ns) == (EXCHANGE.response.status, flow.response_started_ns)
    assert b"".join(m.data for m in pipe.sent if isinstance(m, flow_wire.Chunk)) == EXCHANGE.response.body


def test_a_flow_without_chunks_goes_at_its_end_and_without_an_answer_when_none_came():
    pipe = Pipe()
    shipper, answered, unanswered = FlowShipper(pipe), _flow(), _flow()  # type: ignore[arg-type]
    for flow in (answered, unanswered):
        call_hook([shipper], "request", flow)
    _answer(answered)
    call_hook([shipper], "response_headers", answered)
    unanswered.upstream_started_ns = time.time_ns()
    unanswered.ended_ns, unanswered.error = time.time_ns(), "upstream_unreachable"
    finish([shipper], unanswered)
    answered.ended_ns = time.time_ns()
    finish([shipper], answered)
    assert _kinds(pipe) == ["Exchanged", "Exchanged"]
    failed, whole = pipe.sent
    assert (failed.error, failed.response_started_ns, failed.chunk_at_ns) == ("upstream_unreachable", None, None)
    assert (whole.status, whole.chunk_at_ns, whole.error) == (EXCHANGE.response.status, None, None)


def test_an_answer_that_came_whole_goes_as_one_message_with_its_chunk():
    pipe = Pipe()
    shipper, flow = FlowShipper(pipe), _flow()  # type: ignore[arg-type]
    call_hook([shipper], "request", flow)
    _answer(flow)
    flow.ended_ns = time.time_ns()  # the relay wrote the answer in one go, then hands it to the observers
    notify_chunk(flow.chunk_observers or (), flow.ended_ns, EXCHANGE.response.body)
    finish([shipper], flow)
    assert _kinds(pipe) == ["Exchanged"]
    assert (pipe.sent[0].chunk_at_ns, pipe.sent[0].chunk_data) == (flow.ended_ns, EXCHANGE.response.body)


def test_an_exchanged_flow_is_replayed_as_its_four_messages_are():
    flow = _flow()
    _answer(flow)
    flow.ended_ns = time.time_ns()
    chunk = (flow.ended_ns, EXCHANGE.response.body)
    whole = flow_wire.decode([flow_wire.exchanged(5, flow, chunk)])
    apart = flow_wire.decode([flow_wire.opened(5, flow), flow_wire.answered(5, flow), flow_wire.chunk(5, *chunk),
                              flow_wire.ended(5, flow)])

    def replayed(messages: list) -> list[tuple]:
        replicas = FlowReplicas()
        return [(hook, args, replica.method, replica.raw_path, list(replica.request_headers.items()),
                 replica.request_body, replica.route, replica.upstream_url, replica.started_ns,
                 replica.upstream_started_ns, replica.status, replica.response_fields, replica.response_started_ns,
                 replica.ended_ns, replica.error)
                for message in messages for hook, replica, args in replicas.apply(message)]

    assert [hook for hook, *_ in replayed(whole)] == ["request", "response_headers", "chunk", "done"]
    assert replayed(whole) == replayed(apart)


def test_a_websocket_goes_into_the_pipe_with_its_first_message():
    pipe = Pipe()
    shipper, flow = FlowShipper(pipe), _flow(websocket=True)  # type: ignore[arg-type]
    call_hook([shipper], "request", flow)
    _answer(flow)
    call_hook([shipper], "response_headers", flow)
    assert pipe.sent == []
    notify_message(flow.message_observers or (), time.time_ns(), SocketMessage(True, Opcode.TEXT, b"{}"))
    assert _kinds(pipe) == ["Opened", "Answered", "Relayed"]


def test_a_flow_admitted_before_its_telemetry_process_was_lost_is_not_opened_in_the_next_one():
    pipe = Pipe()
    shipper, flow = FlowShipper(pipe), _flow()  # type: ignore[arg-type]
    call_hook([shipper], "request", flow)
    _answer(flow)
    pipe.generation = 2  # lost and started again between the request and its first byte
    notify_chunk(flow.chunk_observers or (), time.time_ns(), EXCHANGE.response.chunks[0].data)
    flow.ended_ns = time.time_ns()
    finish([shipper], flow)
    assert "Opened" not in _kinds(pipe) and "Ended" not in _kinds(pipe)  # no replica left open in the new process
