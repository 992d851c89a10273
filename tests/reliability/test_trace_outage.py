"""Issue 20, item 3: the trace backend down for a while, then back. The spans made meanwhile are spooled to disk
(LLM_GATEWAY_STATE_DIR, at most LLM_GATEWAY_SPOOL_BYTES, the oldest dropped and counted beyond it) and delivered
after it; a gateway stopped during the outage delivers them at its next start; the relay is never slowed. A real
gateway process, anthropic SDK clients, and the OTLP receiver stopped and started again on its port.

LLM_GATEWAY_TEST_OUTAGE_S sets how long the backend is down (the issue's 2 minutes: 120; CI runs it shorter)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import time
from pathlib import Path
from statistics import median

import anthropic

from tests.reliability.support import AnthropicUpstream, ask, clean_env, cli_process, telemetry_health_when
from tests.reliability.traffic import SteadyTraffic, children, percentile
from tests.support.chat_spans import chat_spans
from tests.support.otlp import OTLPReceiver
from tests.support.servers import running_upstream

OUTAGE_S = float(os.environ.get("LLM_GATEWAY_TEST_OUTAGE_S", "15"))
# After the backend is back: the spool's next attempt (RETRY_S, plus the exporter's own retries within its timeout)
DELIVERED_WITHIN_S = 30.0
CALLS = 300


def _gateway_env(receiver: OTLPReceiver, state: Path, **extra: str) -> dict[str, str]:
    """The exporter's timeout (3 s, with its retries in it) is how long the first export of an outage takes."""
    return clean_env(OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint, OTEL_BSP_SCHEDULE_DELAY="100",
                     OTEL_EXPORTER_OTLP_HEADERS="x-tenant=acme", OTEL_EXPORTER_OTLP_TIMEOUT="3",
                     LLM_GATEWAY_STATE_DIR=str(state), **extra)


def _response_ids(receiver: OTLPReceiver) -> list[str]:
    return [s.attributes["gen_ai.response.id"] for s in chat_spans(receiver.spans)]


async def _all_arrive(receiver: OTLPReceiver, ids: set[str]) -> None:
    await receiver.wait_for(lambda spans: ids <= set(_response_ids(receiver)), DELIVERED_WITHIN_S)


async def _ended(pid: int, within_s: float = 30.0) -> None:
    """Waits for a process that is not this one's child to end (or be a zombie nobody reaps)."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                return
        except FileNotFoundError:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"process {pid} still runs after {within_s} s")


def _spooled_bytes(state: Path) -> int:
    """What the spool holds now (the gateway adds and removes files meanwhile)."""
    total = 0
    for file in state.rglob("*.otlp"):
        with contextlib.suppress(FileNotFoundError):
            total += file.stat().st_size
    return total


async def test_spans_made_during_a_backend_outage_are_delivered_after_it_and_the_relay_never_slows(tmp_path: Path):
    upstream = AnthropicUpstream()
    receiver = await OTLPReceiver().start()
    state = tmp_path / "state"
    try:
        async with running_upstream(upstream.handle) as upstream_url, cli_process(
            "serve", "--port", "0", "--upstream", f"anthropic={upstream_url}", env=_gateway_env(receiver, state),
            log=tmp_path / "gateway.log",
        ) as gateway:
            # At most some 40 calls a second: the first export that fails holds the SDK's export thread for the
            # exporter's timeout, while its queue (OTEL_BSP_MAX_QUEUE_SIZE, 2048 spans) fills.
            async with SteadyTraffic(gateway.url, clients=2, pause_s=0.05) as traffic:
                await asyncio.sleep(3.0)
                await receiver.stop()
                down_at = time.monotonic()
                await asyncio.sleep(OUTAGE_S)
                spooled = _spooled_bytes(state)
                # /_gateway/health tells what waits in the spool (as of the telemetry process's last count).
                waiting = (await telemetry_health_when(gateway.url, lambda h: h["spool"]["spans_waiting"] > 0))["spool"]
                await receiver.start(receiver.port)
                up_at = time.monotonic()
                await asyncio.sleep(1.0)
            await _all_arrive(receiver, {f"msg_{i + 1}" for i in range(len(upstream.answers))})
            delivered_after_s = time.monotonic() - up_at
            health = await telemetry_health_when(gateway.url, lambda h: h["spool"]["spans_waiting"] == 0)
            assert await gateway.stop() == 0
            stderr = gateway.stderr()
    finally:
        await receiver.stop()

    calls = traffic.calls
    assert [c for c in calls if c.answer is None] == []
    assert sorted(c.answer for c in calls) == sorted(upstream.answers)
    during = [c for c in calls if c.started > down_at and c.ended < up_at]
    before = [c.seconds for c in calls if c.ended < down_at and c.started > calls[0].started + 1.0]
    print(f"{len(calls)} calls, {len(during)} during a {OUTAGE_S:.0f} s outage, {spooled} bytes spooled, all "
          f"delivered {delivered_after_s:.1f} s after it; call p50/p99 before {median(before) * 1e3:.1f}/"
          f"{percentile(before, 0.99) * 1e3:.1f} ms, during {median(c.seconds for c in during) * 1e3:.1f}/"
          f"{percentile([c.seconds for c in during], 0.99) * 1e3:.1f} ms")
    assert len(during) > 10 * OUTAGE_S and spooled > 0
    # The relay is never slowed: the outage is the telemetry process's business.
    assert median(c.seconds for c in during) < 1.5 * median(before) + 0.02
    assert percentile([c.seconds for c in during], 0.99) < 2 * percentile(before, 0.99) + 0.05
    # Each span once, with the exporter's settings (OTEL_EXPORTER_OTLP_HEADERS) on the late deliveries too.
    assert len(_response_ids(receiver)) == len(set(_response_ids(receiver)))
    assert {h.get("x-tenant") for h in receiver.trace_headers} == {"acme"}
    assert _spooled_bytes(state) == 0
    assert "cannot take spans; they are spooled to" in stderr
    (sent,) = re.findall(r"took the (\d+) spans spooled while it was down", stderr)
    assert waiting["bytes_waiting"] > 0 and 0 < waiting["spans_waiting"] <= int(sent)
    assert health["spool"] == {"spans_waiting": 0, "bytes_waiting": 0, "spans_delivered": int(sent)}
    assert health["spans_lost"] == {"queue_full": 0, "export_failed": 0, "spool_dropped": 0}
    assert "Traceback" not in stderr


async def test_a_gateway_stopped_during_an_outage_delivers_the_spooled_spans_at_its_next_start(tmp_path: Path):
    upstream = AnthropicUpstream()
    receiver = await OTLPReceiver().start()
    state = tmp_path / "state"
    async with running_upstream(upstream.handle) as upstream_url:
        serve = ("serve", "--port", "0", "--upstream", f"anthropic={upstream_url}")
        async with cli_process(*serve, env=_gateway_env(receiver, state), log=tmp_path / "first.log") as gateway:
            await receiver.stop()
            for i in range(20):
                await ask(gateway.url, f"question {i}", "session-a")
            (telemetry,) = children(gateway.process.pid)
            assert await gateway.stop() == 0
            # `serve` waits 3 s for the telemetry process, which may then finish alone: its first failed export
            # takes the exporter's timeout, then it spools.
            await _ended(telemetry)
        assert re.search(r"\d+ spans wait in .* for the trace backend; they are sent at the next start",
                         gateway.stderr()), gateway.stderr()
        assert _spooled_bytes(state) > 0
        assert receiver.spans == []

        await receiver.start(receiver.port)
        try:
            async with cli_process(*serve, env=_gateway_env(receiver, state), log=tmp_path / "second.log") as again:
                await _all_arrive(receiver, {f"msg_{i + 1}" for i in range(20)})  # with no traffic at all
                assert await again.stop() == 0
        finally:
            await receiver.stop()
    assert "by an earlier run" in again.stderr()
    assert _spooled_bytes(state) == 0
    assert len(_response_ids(receiver)) == 20
    sessions = [s for s in receiver.spans if s.attributes.get("session.id") == "session-a" and s.parent_id is None]
    assert sessions  # the session's root, ended at the shutdown, came along


async def test_past_the_spool_bound_the_oldest_spans_are_dropped_and_counted(tmp_path: Path):
    upstream = AnthropicUpstream()
    receiver = await OTLPReceiver().start()
    state = tmp_path / "state"
    bound = 256 * 1024  # the turn spans, exported a moment after their calls, and the last calls' spans
    env = _gateway_env(receiver, state, LLM_GATEWAY_SPOOL_BYTES=str(bound))
    async with running_upstream(upstream.handle) as upstream_url, cli_process(
        "serve", "--port", "0", "--upstream", f"anthropic={upstream_url}", env=env, log=tmp_path / "gateway.log",
    ) as gateway:
        await receiver.stop()
        most = 0
        async with anthropic.AsyncAnthropic(base_url=gateway.url, api_key="sk-ant-test", max_retries=0) as client:
            for i in range(CALLS):
                async with client.messages.stream(model="claude-sonnet-4-5", max_tokens=1024, messages=[
                        {"role": "user", "content": f"question {i}"}], extra_headers={"x-session-id": f"{i}"}) as call:
                    await call.get_final_text()
                most = max(most, _spooled_bytes(state))
                while i == 0 and not _spooled_bytes(state):  # the first failed export takes the exporter's timeout
                    await asyncio.sleep(0.1)
        await asyncio.sleep(1.0)
        most = max(most, _spooled_bytes(state))
        await receiver.start(receiver.port)
        try:
            deadline = time.monotonic() + DELIVERED_WITHIN_S
            while "spooled while it was down" not in gateway.stderr() and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            health = await telemetry_health_when(gateway.url, lambda h: h["spool"]["spans_waiting"] == 0)
            assert await gateway.stop() == 0
        finally:
            await receiver.stop()
    assert 0 < most <= bound
    # The spool keeps the batches exported last. That is nearly, not exactly, the calls made last: the SDK
    # exports from two threads, and a batch taken from its queue may be exported after a younger one.
    received = {int(i.removeprefix("msg_")) for i in _response_ids(receiver)}
    assert len(received) == len(_response_ids(receiver))  # each once
    assert set(range(CALLS - 10, CALLS + 1)) <= received  # the newest arrived ...
    missing = CALLS - len(received)
    assert missing > CALLS / 2  # ... the oldest were dropped ...
    (dropped,) = re.findall(r"took the \d+ spans spooled while it was down; (\d+) older ones were dropped",
                            gateway.stderr())
    assert int(dropped) >= 2 * missing  # ... and counted (a chat span and its HTTP span at least, per call)
    assert health["spans_lost"]["spool_dropped"] == int(dropped)  # ... in /_gateway/health too
    assert "is full (262144 bytes, LLM_GATEWAY_SPOOL_BYTES): dropped the oldest" in gateway.stderr()
