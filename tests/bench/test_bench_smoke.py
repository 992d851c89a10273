"""The benchmark harness's building blocks work: fake upstream, OTLP sink, load generator, a tiny measurement of
direct against the gateway (tracing off), and every server stops. Speed is never asserted here."""

from __future__ import annotations

import dataclasses
import shutil
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

from bench import derive, instructions, loadgen, peers, profile, report, wire, wrk
from bench.client import Exchange, ResponseParser
from bench.proc import LOOPBACK, Managed, free_port, port_open, wait_until
from bench.run import loadgen as run_loadgen
from llm_gateway.proxy.ca import CertificateAuthority


def _start(name: str, module: str, log_dir: Path, *args: str) -> tuple[Managed, int]:
    port = free_port()
    managed = Managed.start(name, [sys.executable, "-m", module, "--port", str(port), *args], log_dir,
                            cwd=str(peers.REPO_ROOT))
    assert wait_until(lambda: port_open(port), 20, managed), managed.log_tail()
    return managed, port


@pytest.fixture
def started(tmp_path: Path) -> Iterator[list[Managed]]:
    """Everything a test starts goes in this list; all of it is stopped at teardown, and must be gone."""
    processes: list[Managed] = []
    yield processes
    for managed in processes:
        managed.stop()
    assert all(not m.alive() for m in processes)


def _spans_export(count: int) -> bytes:
    spans = [Span(trace_id=bytes(16), span_id=bytes([i + 1]) * 8, name=f"s{i}") for i in range(count)]
    export = ExportTraceServiceRequest(resource_spans=[ResourceSpans(scope_spans=[ScopeSpans(spans=spans)])])
    return export.SerializeToString()


def _post(url: str, body: bytes) -> int:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/x-protobuf"})
    with urllib.request.urlopen(request, timeout=5) as response:
        return response.status


def test_sink_accepts_exports_and_counts_spans(started: list[Managed], tmp_path: Path) -> None:
    sink, port = _start("sink", "bench.sink", tmp_path)
    started.append(sink)
    assert _post(f"http://{LOOPBACK}:{port}/v1/traces", _spans_export(3)) == 200
    assert _post(f"http://{LOOPBACK}:{port}/v1/metrics", b"\x00") == 200
    with urllib.request.urlopen(f"http://{LOOPBACK}:{port}/stats", timeout=5) as response:
        stats = orjson.loads(response.read())
    assert stats == {"exports": 2, "bytes": len(_spans_export(3)) + 1, "spans": 3}
    sink.stop()
    assert not port_open(port)


async def test_direct_and_gateway_measurements_produce_numbers_and_servers_stop(
    started: list[Managed], tmp_path: Path
) -> None:
    upstream, up_port = _start("upstream", "bench.upstream", tmp_path)
    started.append(upstream)
    gateway = peers.start_gateway(peers.GATEWAY_OFF, f"http://{LOOPBACK}:{up_port}", None, tmp_path, None)
    assert gateway.process is not None
    started.append(gateway.process)
    assert gateway.wait_ready().ok, gateway.reason
    direct = loadgen.Target(peers.DIRECT, LOOPBACK, up_port, wire.MESSAGES_PATH)
    assert gateway.target is not None
    targets = [direct, gateway.target]

    # The load generator as the harness runs it: its own process, JSON in and out.
    spec = {"op": "sequential", "targets": [dataclasses.asdict(t) for t in targets], "rounds": 3, "pair": True}
    plain = run_loadgen(spec, None, 60)
    for target in targets:
        summary = loadgen.summarize_samples(plain[target.name]["samples"])
        assert plain[target.name]["errors"] == 0
        assert summary["latency_ms"]["n"] == 3
        assert summary["latency_ms"]["p50"] > 0

    streamed = await loadgen.streams(targets, rounds=1, chunks=10, interval_us=1000, seed=1)
    for target in targets:
        samples = streamed[target.name]["samples"]
        assert streamed[target.name]["errors"] == 0
        assert len(samples["ttfb"]) == 1
        assert len(samples["chunk_delay"]) == 9  # one per chunk after the first

    busy = await loadgen.throughput(gateway.target, concurrency=2, duration_s=0.3, warmup_s=0)
    assert busy["requests"] > 0
    assert busy["errors"] == 0

    settings = loadgen.StallSettings(interval_ms=50, ramp_per_s=100, hold_s=0.2, stall_ms=1000)
    held = await loadgen.stalls(gateway.target, [3], settings, rss_pid=gateway.pid, budget_s=20)
    assert held["levels"][0]["streams_ok"] == 3
    assert held["levels"][0]["rss_held_kib"] > 0

    gateway.process.stop()
    upstream.stop()
    assert not port_open(gateway.target.port)
    assert not port_open(up_port)


async def test_https_paths_tls_direct_and_the_gateway_as_a_forward_proxy(started: list[Managed], tmp_path: Path
                                                                        ) -> None:
    ca_dir, stranger_dir = tmp_path / "ca", tmp_path / "stranger"
    CertificateAuthority.load_or_create(ca_dir)
    CertificateAuthority.load_or_create(stranger_dir)
    upstream, up_port = _start("upstream", "bench.upstream", tmp_path)
    started.append(upstream)
    tls_upstream, tls_port = _start("upstream-tls", "bench.upstream", tmp_path, "--tls-ca-dir", str(ca_dir))
    started.append(tls_upstream)
    gateway = peers.start_gateway(peers.GATEWAY_PROXY, f"http://{LOOPBACK}:{up_port}", None, tmp_path, None,
                                  proxy_ca_dir=ca_dir)
    assert gateway.process is not None
    started.append(gateway.process)
    assert gateway.wait_ready().ok, gateway.reason
    tls_direct = peers.tls_direct(tls_port, ca_dir).target
    assert tls_direct is not None and gateway.target is not None
    assert gateway.target.url.startswith(f"https://{wire.TLS_SERVER_NAME}/v1/messages via the proxy ")
    targets = [tls_direct, gateway.target]

    streamed = await loadgen.streams(targets, rounds=1, chunks=10, interval_us=1000, seed=1)
    for target in targets:
        assert streamed[target.name]["errors"] == 0, streamed[target.name]["first_error"]
        assert len(streamed[target.name]["samples"]["chunk_delay"]) == 9
    busy = await loadgen.throughput(gateway.target, concurrency=2, duration_s=0.3, warmup_s=0)
    assert busy["requests"] > 0 and busy["errors"] == 0, busy["first_error"]
    held = await loadgen.stalls(gateway.target, [3], loadgen.StallSettings(50, 100, 0.2, 1000), None, budget_s=20)
    assert held["levels"][0]["streams_ok"] == 3

    # The certificates are checked: a client that trusts another CA is refused on both paths.
    for target in targets:
        assert target.tls is not None
        untrusting = dataclasses.replace(target, tls=dataclasses.replace(target.tls, ca_file=str(
            stranger_dir / "ca.pem"))).client()
        exchange = await untrusting.send(wire.request_body(stream=False))
        untrusting.close()
        assert exchange.error is not None and "CERTIFICATE_VERIFY_FAILED" in exchange.error, exchange.error


def _chunked_sse(chunks: int) -> bytes:
    head = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
    body = b""
    for index in range(chunks):
        data = wire.stream_chunk(index, chunks, 1_000_000 + index)
        body += f"{len(data):x}\r\n".encode() + data + b"\r\n"
    return head + body + b"0\r\n\r\n"


@pytest.mark.parametrize("step", [1, 7, 10_000])
def test_response_parser_split_anywhere_finds_every_event(step: int) -> None:
    raw = _chunked_sse(4)
    exchange = Exchange()
    parser = ResponseParser(exchange, sse=True)
    for offset in range(0, len(raw), step):
        parser.feed(raw[offset:offset + step], now=offset)
    assert parser.done
    assert [sent for _, sent in exchange.events] == [1_000_000, 1_000_001, 1_000_002, 1_000_003]
    assert exchange.status == 200


def test_wrk_output_parses_into_numbers() -> None:
    output = """Running 1s test @ http://127.0.0.1:1/v1/messages
  1 threads and 32 connections
  Latency Distribution
     50%    1.04ms
     75%    1.07ms
     90%  950.00us
     99%    1.55ms
  153113 requests in 5.00s, 177.42MB read
  Non-2xx or 3xx responses: 2
Requests/sec:  30616.21
"""
    parsed = wrk.parse(output)
    assert parsed["rps"] == 30616.21
    assert parsed["requests"] == 153113
    assert parsed["errors"] == 2
    assert parsed["latency_ms"]["p90"] == pytest.approx(0.95)
    assert wrk.script(wire.request_body(stream=False)).startswith('wrk.method = "POST"')


def test_report_names_a_peer_that_could_not_be_installed() -> None:
    summary = {"latency_ms": {"n": 1, "p50": 1.0, "p99": 2.0}, "errors": 0, "first_error": None}
    results = {
        "paths": {
            "direct": {"status": "ok"},
            "gateway-on": {"status": "ok"},
            "litellm": {"status": "not_installed", "reason": "pip install litellm[proxy] failed (1): no network"},
        },
        "measurements": {"warm": {"direct": summary, "gateway-on": {**summary, "direct_same_blocks": summary}}},
    }
    results["derived"] = derive.derive(results)
    text = report.markdown(results)
    assert "**not_installed**" in text
    assert "pip install litellm[proxy] failed" in text
    assert results["derived"]["added_vs_direct"]["gateway-on"]["warm_p50_ms"] == 0.0


def test_profile_summary_leaves_out_waiting_threads_and_names_owners() -> None:
    main = "thread (1): MainThread;run (/x/llm_gateway/server.py:1);Runner.run (/x/asyncio/runners.py:2)"
    lines = [
        f"{main};Relay._call (/x/llm_gateway/relay.py:3);ChatSpans.request (/x/llm_gateway/telemetry/c.py:4) 3",
        f"{main};StreamWriter._write (/x/aiohttp/http_writer.py:5) 1",
        "thread (2): OtelBatchSpanRecordProcessor;BatchProcessor.worker (/x/opentelemetry/sdk/b.py:6);"
        "Condition.wait (/x/threading.py:7) 50",
    ]
    summary = profile.summarize_stacks(lines)
    assert summary["samples"] == 4
    assert summary["idle_samples_left_out"] == 50
    owners = {o["what"]: o["samples"] for o in summary["owners"]}
    assert owners == {"ChatSpans.request (parse request, start span, session)": 3,
                      "aiohttp shared (streams, writer, helpers)": 1}
    assert (
        "MainThread;run (llm_gateway/server.py);Runner.run (asyncio/runners.py);Relay._call (llm_gateway/relay.py);"
        "ChatSpans.request (telemetry/c.py) 3"
    ) in profile.compact(lines)


@pytest.mark.skipif(shutil.which("valgrind") is None, reason="bench.instructions runs the relay under valgrind")
def test_instructions_are_counted_per_request_without_the_start_or_the_warm_up(tmp_path: Path) -> None:
    # The counters are zeroed after start-up and warm-up: what is left is per request, the same for 100 requests
    # as for 300 (this is what makes it a figure to tell changes apart with, where seconds move by 30%)
    few, more = (instructions.measure("gateway-off", requests, 2, 0, tmp_path / str(requests))
                 for requests in (100, 300))
    assert few > 0 and abs(few - more) / more < 0.05, (few, more)
