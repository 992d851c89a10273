"""`llm-gateway run` around a Python agent that uses the anthropic and openai SDKs with no base URL in its code
(issue 16): its calls are traced into the trace TRACEPARENT names, every session a child of that span; every span
is at the OTLP receiver when `run` returns; the command's exit status, output and signals are its own."""

from __future__ import annotations

import asyncio
import signal
import sys
from contextlib import AsyncExitStack
from pathlib import Path

import pytest

from tests.run.support import SDK_AGENT, finish, openai_upstream, python_command, run, run_env, start_run, traceparent
from tests.support.fake_anthropic import FakeAnthropic
from tests.support.otlp import OTLPReceiver, ReceivedSpan
from tests.support.servers import running_upstream

AGENT = (sys.executable, str(SDK_AGENT))


def _named(spans: list[ReceivedSpan], prefix: str) -> list[ReceivedSpan]:
    return [s for s in spans if s.name.startswith(prefix)]


@pytest.fixture
async def upstreams(servers: AsyncExitStack) -> tuple[FakeAnthropic, list[str]]:
    """The fake Anthropic upstream and the `--upstream` options that send both SDKs' calls to local fakes."""
    fake = FakeAnthropic(final_text="Hello from Anthropic.")
    anthropic_url = await servers.enter_async_context(running_upstream(fake.handle))
    openai_url = await servers.enter_async_context(running_upstream(openai_upstream))
    return fake, ["--upstream", f"anthropic={anthropic_url}", "--upstream", f"openai={openai_url}"]


@pytest.fixture
async def receiver() -> OTLPReceiver:
    receiver = await OTLPReceiver().start()
    yield receiver
    await receiver.stop()


async def test_an_sdk_agents_sessions_are_children_of_traceparent_and_exported_before_run_returns(
    tmp_path: Path, upstreams: tuple[FakeAnthropic, list[str]], receiver: OTLPReceiver
) -> None:
    fake, options = upstreams
    parent, trace_id, span_id = traceparent()
    env = run_env(tmp_path, OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint, TRACEPARENT=parent,
                  TRACESTATE="vendor=ci", LLM_GATEWAY_PRINT="tree")
    ran = await run([*options, "--", *AGENT, "3"], env)

    assert ran.returncode == 3, ran.stderr
    assert ran.stdout == "anthropic: Hello from Anthropic.\nopenai: Hello from OpenAI.\n"  # the command's own
    spans = list(receiver.spans)  # no waiting: everything was exported before run exited
    sessions = _named(spans, "session ")
    chats = _named(spans, "chat ")
    assert sessions and len(chats) == 2
    assert {c.attributes["gen_ai.provider.name"] for c in chats} == {"anthropic", "openai"}
    assert len(fake.answers) == 1
    assert {s.trace_id for s in spans} == {trace_id}
    assert {s.parent_id for s in sessions} == {span_id}
    exported = {s.span_id for s in spans} | {span_id}
    assert all(s.parent_id in exported for s in spans)
    # The trees print after the command's output, and the last line names the trace.
    lines = ran.stderr.splitlines()
    assert any(line.startswith("[session]") for line in lines), ran.stderr
    assert ran.last_line.startswith(f"llm-gateway run: {Path(sys.executable).name} exited with status 3;")
    assert f"trace {trace_id}" in ran.last_line and receiver.endpoint in ran.last_line


async def test_without_traceparent_each_session_has_a_trace_of_its_own_named_last(
    tmp_path: Path, upstreams: tuple[FakeAnthropic, list[str]], receiver: OTLPReceiver
) -> None:
    _, options = upstreams
    env = run_env(tmp_path, OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint)
    ran = await run([*options, "--", *AGENT, "0"], env)

    assert ran.returncode == 0, ran.stderr
    sessions = _named(receiver.spans, "session ")
    assert sessions and all(s.parent_id is None for s in sessions)
    assert {s.trace_id for s in receiver.spans} == {s.trace_id for s in sessions}
    assert all(s.trace_id in ran.last_line for s in sessions), ran.last_line


async def test_a_base_url_the_user_set_is_where_the_calls_go_and_they_are_traced(
    tmp_path: Path, servers: AsyncExitStack, receiver: OTLPReceiver
) -> None:
    fake = FakeAnthropic(final_text="Hello from Anthropic.")
    anthropic_url = await servers.enter_async_context(running_upstream(fake.handle))
    openai_url = await servers.enter_async_context(running_upstream(openai_upstream))
    env = run_env(tmp_path, OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint, ANTHROPIC_BASE_URL=anthropic_url,
                  OPENAI_BASE_URL=openai_url + "/v1")
    ran = await run(["--", *AGENT, "0"], env)

    assert ran.returncode == 0, ran.stderr
    assert len(fake.answers) == 1
    assert len(_named(receiver.spans, "chat ")) == 2


@pytest.mark.parametrize(("sig", "agent_args", "status"), [
    (signal.SIGTERM, [], 128 + signal.SIGTERM),  # the agent dies of it
    (signal.SIGINT, [], 128 + signal.SIGINT),  # KeyboardInterrupt: Python exits by the signal
    (signal.SIGTERM, ["--on-term", "7"], 7),  # the agent handles it: run only passed it on
], ids=["sigterm", "sigint", "sigterm-handled"])
async def test_a_signal_to_run_is_passed_to_the_command_and_its_sessions_end_at_once(
    tmp_path: Path, upstreams: tuple[FakeAnthropic, list[str]], receiver: OTLPReceiver, sig: signal.Signals,
    agent_args: list[str], status: int
) -> None:
    _, options = upstreams
    called = tmp_path / "called"
    parent, trace_id, span_id = traceparent()
    env = run_env(tmp_path, OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint, TRACEPARENT=parent,
                  LLM_GATEWAY_SESSION_IDLE_SECONDS="3600")
    process = await start_run([*options, "--", *AGENT, "0", "--wait", str(called), *agent_args],
                              env)
    for _ in range(1200):
        if called.exists() or process.returncode is not None:
            break
        await asyncio.sleep(0.05)
    assert called.exists()
    process.send_signal(sig)
    ran = await finish(process, 30)

    assert ran.returncode == status, ran.stderr
    sessions = _named(receiver.spans, "session ")  # ended when the command did, not after an idle hour
    assert sessions and {s.parent_id for s in sessions} == {span_id}
    assert len(_named(receiver.spans, "chat ")) == 2
    assert f"trace {trace_id}" in ran.last_line


async def test_a_command_that_makes_no_model_call_keeps_its_status_and_leaves_no_spans(
    tmp_path: Path, receiver: OTLPReceiver
) -> None:
    env = run_env(tmp_path, OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint, TRACEPARENT=traceparent()[0])
    ran = await run(["--", *python_command("import sys; print('no model here'); sys.exit(5)")], env)

    assert ran.returncode == 5, ran.stderr
    assert ran.stdout == "no model here\n"
    assert receiver.spans == []
    assert ran.last_line.endswith("exited with status 5; no model call, no trace"), ran.last_line
