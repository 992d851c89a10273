"""`llm-gateway run -- claude -p ...`: real Claude Code, given no endpoint setting of its own, traced through the
gateway `run` started for it, against the scripted local Messages upstream (issue 16). The session is a child of
the span TRACEPARENT names and is at the OTLP receiver when `run` returns."""

from __future__ import annotations

from pathlib import Path

from tests.run.support import run, run_env, traceparent
from tests.support.fake_anthropic import FakeAnthropic
from tests.support.npm_clients import CLAUDE_CODE, installed
from tests.support.otlp import OTLPReceiver
from tests.support.servers import running_upstream


async def test_claude_code_inside_run_is_one_session_under_the_callers_span(tmp_path: Path) -> None:
    claude = installed(CLAUDE_CODE, ".bin/claude")
    home = tmp_path / "home"
    home.mkdir()
    (home / "notes.txt").write_text("the file Claude Code reads\n")
    fake = FakeAnthropic(read_path=str(home / "notes.txt"))
    parent, trace_id, span_id = traceparent()
    receiver = await OTLPReceiver().start()
    try:
        async with running_upstream(fake.handle) as upstream:
            env = run_env(tmp_path, HOME=str(home), ANTHROPIC_API_KEY="sk-test",
                          CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC="1",
                          OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint, TRACEPARENT=parent)
            ran = await run(["--upstream", f"anthropic={upstream}", "--",
                             str(claude), "-p", "read notes.txt", "--allowedTools", "Read"], env,
                            timeout=180, cwd=home)
    finally:
        await receiver.stop()

    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.strip() == "Done."
    assert fake.answers and any(a.tool_use_id for a in fake.answers)
    spans = receiver.spans
    (session,) = [s for s in spans if s.name.startswith("session ")]
    assert session.parent_id == span_id
    assert {s.trace_id for s in spans} == {trace_id}
    assert len([s for s in spans if s.name.startswith("chat ")]) == len(fake.answers)
    assert [s.name for s in spans if s.name.startswith("execute_tool ")] == ["execute_tool Read"]
    assert f"trace {trace_id}" in ran.last_line
