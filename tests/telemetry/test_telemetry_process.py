"""Tracing in its own process: flows cross the pipe intact, and a telemetry process that is interrupted, stalled or
dead never changes a byte of the traffic (the flows it cannot take are relayed untraced, and counted)."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import aiohttp
import orjson
import pytest
from multidict import CIMultiDict, CIMultiDictProxy

from llm_gateway.config import Settings
from llm_gateway.flow import Flow
from llm_gateway.offload import flow_wire, process
from llm_gateway.offload.flow_wire import FlowReplicas
from llm_gateway.offload.frames import frame
from llm_gateway.recordings import Fixture, load
from llm_gateway.routing import Router
from tests.reliability.support import telemetry_health_when
from tests.support import FIXTURES
from tests.support.chat_spans import chat_spans
from tests.support.exchanges import exchange_with, send_recorded

ANTHROPIC = load(FIXTURES / "anthropic/tools-streaming.json")
EXCHANGE = ANTHROPIC.exchanges[0]


def _relayed_flow(error: str | None = None) -> Flow:
    """The recorded exchange as the relay's Flow is at its end."""
    request, response = EXCHANGE.request, EXCHANGE.response
    headers = CIMultiDictProxy(CIMultiDict(request.headers))
    route = Router(Settings(), {}).resolve(request.method, request.path, headers)
    assert route is not None
    flow = Flow(request.method, request.path, _fields(request.headers), request.body, route,
                "https://api.test" + request.path, started_ns=1_000)
    flow.upstream_started_ns, flow.status, flow.response_started_ns = 1_100, response.status, 1_500
    flow.response_headers = CIMultiDictProxy(CIMultiDict(response.headers))
    flow.response_fields = _fields(response.headers)
    flow.ended_ns, flow.error = 9_000, error
    flow.error_message = "the client closed the connection" if error else None
    return flow


def _fields(headers: list[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    return [(name.encode(), value.encode()) for name, value in headers]


@pytest.mark.parametrize("error", [None, "client_gone"])
def test_a_flow_replica_gets_every_field_and_the_hooks_in_order(error: str | None) -> None:
    flow = _relayed_flow(error)
    chunks = [(2_000 + i, c.data) for i, c in enumerate(EXCHANGE.response.chunks)]
    messages = flow_wire.decode([flow_wire.opened(7, flow), flow_wire.answered(7, flow),
                                 *(flow_wire.chunk(7, at, data) for at, data in chunks), flow_wire.ended(7, flow)])
    replicas = FlowReplicas()
    calls = [(hook, replica, args, replica.request_body) for m in messages
             for hook, replica, args in replicas.apply(m)]

    assert [hook for hook, _, _, _ in calls] == ["request", "response_headers", *["chunk"] * len(chunks),
                                                 (error and "error") or "done"]
    assert [args for hook, _, args, _ in calls if hook == "chunk"] == chunks
    # The request body is there for every hook up to the first chunk's, then let go: an agent's whole conversation
    # is not held for the whole stream
    assert [body for _, _, _, body in calls] == [flow.request_body] * 3 + [b""] * (len(chunks) - 1 + 1)
    replica = calls[-1][1]
    fields = ("method", "raw_path", "route", "upstream_url", "started_ns", "upstream_started_ns",
              "status", "response_started_ns", "ended_ns", "error", "error_message")
    assert {f: getattr(replica, f) for f in fields} == {f: getattr(flow, f) for f in fields}
    assert list(replica.request_headers.items()) == list(flow.request_headers.items())
    assert list(replica.response_headers.items()) == list(flow.response_headers.items())
    assert len(replicas) == 0  # nothing kept once the flow ended


def test_messages_of_a_flow_that_was_never_opened_are_ignored() -> None:
    replicas = FlowReplicas()
    flow = _relayed_flow()
    for message in flow_wire.decode([flow_wire.answered(3, flow), flow_wire.chunk(3, 1, b"x"),
                                     flow_wire.ended(3, flow)]):
        assert list(replicas.apply(message)) == []


async def _flushed() -> None:
    """Messages gather for up to FLUSH_INTERVAL_S before they are written."""
    await asyncio.sleep(process.FLUSH_INTERVAL_S * 5)


async def _health(gateway) -> dict:
    async with aiohttp.ClientSession() as client, client.get(gateway.url + "/_gateway/health") as response:
        return (await response.json())["telemetry"]


async def _priority_settles(pid: int, within_s: float = 5.0) -> tuple[int, int | None]:
    """(nice, scheduling policy) of the child, which lowers its priority as its first statements, a moment after
    it was started; the policy is None where the OS has none to tell."""
    deadline = time.monotonic() + within_s
    idle = getattr(os, "SCHED_IDLE", None)
    while True:
        nice = os.getpriority(os.PRIO_PROCESS, pid)
        policy = os.sched_getscheduler(pid) if idle is not None else None
        if (nice != 0 and policy in (idle, None)) or time.monotonic() > deadline:
            return nice, policy
        await asyncio.sleep(0.01)


async def test_the_telemetry_process_runs_last_in_line_and_survives_an_interrupt(traced_gateway, receiver):
    env = {"OTEL_EXPORTER_OTLP_HEADERS": "x-tenant=acme"}
    async with traced_gateway([Fixture([EXCHANGE, EXCHANGE])], extra_env=env) as (gateway, _):
        child = gateway.telemetry_process._child
        # A shared core goes to the relay first: on Linux the child runs only when the core is otherwise idle.
        assert await _priority_settles(child.pid) == (19, getattr(os, "SCHED_IDLE", None))
        # Out of the terminal's process group (Ctrl-C), but in the gateway's session: where the kernel splits CPU
        # between sessions first (autogroups), a session of its own would make the priority moot.
        assert os.getpgid(child.pid) == child.pid and os.getsid(child.pid) == os.getsid(0)
        assert await send_recorded(gateway.url, EXCHANGE) == (EXCHANGE.response.status, EXCHANGE.response.body)
        os.kill(child.pid, signal.SIGINT)  # a Ctrl-C reaches the whole process group
        assert await send_recorded(gateway.url, EXCHANGE) == (EXCHANGE.response.status, EXCHANGE.response.body)
        # (once the process has said that the two calls' spans are out)
        health = await telemetry_health_when(gateway.url, lambda h: h["unacknowledged_flows"] == 0)
        assert health == {"destination": f"otlp {receiver.endpoint}/v1/traces",
                                          "process_running": True, "backlog_bytes": 0, "unacknowledged_flows": 0,
                                          "untraced_requests": 0,
                                          "spans_lost": {"queue_full": 0, "export_failed": 0, "spool_dropped": 0},
                                          "spool": {"spans_waiting": 0, "bytes_waiting": 0, "spans_delivered": 0}}
    assert child.returncode == 0  # it ended when the gateway closed its pipe, after flushing
    assert len(chat_spans(receiver.spans)) == 2
    assert {h.get("x-tenant") for h in receiver.trace_headers} == {"acme"}  # OTEL_* of the gateway's env


async def test_with_spooling_off_spans_go_out_by_the_exporters_own_client_and_settings(traced_gateway, receiver):
    # The gateway encodes the spans; the OTLP exporter's HTTP client posts them, with its OTEL_EXPORTER_OTLP_*.
    env = {"LLM_GATEWAY_SPOOL_BYTES": "0", "OTEL_EXPORTER_OTLP_HEADERS": "x-tenant=acme",
           "OTEL_EXPORTER_OTLP_COMPRESSION": "gzip"}
    async with traced_gateway([Fixture([EXCHANGE])], extra_env=env) as (gateway, _):
        assert await send_recorded(gateway.url, EXCHANGE) == (EXCHANGE.response.status, EXCHANGE.response.body)
        health = await telemetry_health_when(gateway.url, lambda h: h["unacknowledged_flows"] == 0)
        assert health["spans_lost"] == {"queue_full": 0, "export_failed": 0, "spool_dropped": 0}
    (span,) = chat_spans(receiver.spans)
    assert span.attributes["gen_ai.request.model"] == orjson.loads(EXCHANGE.request.body)["model"]
    assert {(h.get("x-tenant"), h.get("Content-Encoding")) for h in receiver.trace_headers} == {("acme", "gzip")}


async def test_a_stalled_telemetry_process_sheds_new_flows_never_traffic(traced_gateway, receiver, monkeypatch):
    monkeypatch.setattr(process, "MAX_BACKLOG_BYTES", 1)
    # A request larger than a pipe holds: while the child is stopped, its message stays in the backlog.
    big = exchange_with("/v1/messages", {"model": "m", "max_tokens": 1, "messages": [
        {"role": "user", "content": "x" * 300_000}]}, EXCHANGE.response.body, "text/event-stream")
    async with traced_gateway([Fixture([big, EXCHANGE, EXCHANGE])]) as (gateway, _):
        child = gateway.telemetry_process._child
        os.kill(child.pid, signal.SIGSTOP)
        try:
            assert await send_recorded(gateway.url, big) == (200, EXCHANGE.response.body)
            await _flushed()
            for _ in range(2):
                assert await send_recorded(gateway.url, EXCHANGE) == (200, EXCHANGE.response.body)
            health = await _health(gateway)
            assert health["untraced_requests"] == 2 and health["backlog_bytes"] > 0
        finally:
            os.kill(child.pid, signal.SIGCONT)
    assert [s.attributes["gen_ai.request.model"] for s in chat_spans(receiver.spans)] == ["m"]


async def test_a_telemetry_process_that_fell_behind_gets_what_waits_compressed_and_traces_it_all(
        traced_gateway, receiver, monkeypatch):
    monkeypatch.setattr(process, "COMPRESS_ABOVE_BYTES", 1)
    bodies = [{"model": f"m{i}", "max_tokens": 1, "messages": [{"role": "user", "content": "x" * 300_000}]}
              for i in range(4)]
    calls = [exchange_with("/v1/messages", body, EXCHANGE.response.body, "text/event-stream") for body in bodies]
    async with traced_gateway([Fixture(calls)]) as (gateway, _):
        child = gateway.telemetry_process._child
        os.kill(child.pid, signal.SIGSTOP)
        try:
            for call in calls:  # the first fills the pipe and waits; the next three wait behind it, compressed
                assert await send_recorded(gateway.url, call) == (200, EXCHANGE.response.body)
                await _flushed()
            health = await _health(gateway)
            assert 0 < health["backlog_bytes"] < len(calls[0].request.body) + 3 * 10_000
        finally:
            os.kill(child.pid, signal.SIGCONT)
        health = await telemetry_health_when(gateway.url, lambda h: h["unacknowledged_flows"] == 0)
        assert (health["untraced_requests"], health["backlog_bytes"]) == (0, 0)
    assert sorted(s.attributes["gen_ai.request.model"] for s in chat_spans(receiver.spans)) == [
        body["model"] for body in bodies]


async def test_a_dead_telemetry_process_leaves_traffic_untouched_and_is_started_again(
    traced_gateway, receiver, monkeypatch
):
    async with traced_gateway([Fixture([EXCHANGE] * 3)]) as (gateway, _):
        first = gateway.telemetry_process._child
        first.kill()
        first.wait()
        for _ in range(2):
            assert await send_recorded(gateway.url, EXCHANGE) == (EXCHANGE.response.status, EXCHANGE.response.body)
            await _flushed()  # the first write into the dead pipe tells the gateway
        health = await _health(gateway)
        assert health["process_running"] is False and health["untraced_requests"] >= 1
        assert chat_spans(receiver.spans) == []

        monkeypatch.setattr(process, "RESTART_AFTER_S", 0.0)  # instead of waiting 5 s
        assert await send_recorded(gateway.url, EXCHANGE) == (EXCHANGE.response.status, EXCHANGE.response.body)
        assert gateway.telemetry_process._child is not first
        assert (await _health(gateway))["process_running"] is True
    assert len(chat_spans(receiver.spans)) == 1  # the request after the restart


def test_a_flow_crosses_the_pipe_as_marshal_data() -> None:
    # marshal writes plain builtin types only, twice as fast as pickle: a named tuple or aiohttp's `istr` header
    # names (a str subclass) in a message would send the whole batch as a pickle (the frame's second bit)
    flow = _relayed_flow()
    batch = [flow_wire.opened(1, flow), flow_wire.answered(1, flow), flow_wire.chunk(1, 2_000, b"x"),
             flow_wire.ended(1, flow), flow_wire.exchanged(2, flow, (2_000, b"x"))]
    length = int.from_bytes(frame(batch)[:4], "big")
    assert not length & (1 << 30)
