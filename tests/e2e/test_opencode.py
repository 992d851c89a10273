"""Real opencode 1.18 (npm, pinned), two prompts of one session (`opencode run`, then `opencode run --continue`),
through the gateway against the scripted Messages upstream (`tests/support/fake_anthropic.py`), spans read back from
the OTLP receiver (issue 14, item 4). Expectations come from what the upstream answered.

What opencode 1.18.33 sends with the anthropic provider's `baseURL` pointed at the gateway: `POST /v1/messages`,
streamed, with `x-session-affinity` and `x-session-id` both set to its session id (`ses_...`), User-Agent
`opencode/1.18.33 ai-sdk/provider-utils/4.0.46 runtime/bun/1.3.14`. A new session's first prompt makes a title call
first: the small model, no tools, a system prompt of its own ("You are a title generator..."), the same session
headers, started before the main loop's first call; then the main loop (its tools: bash, edit, glob, grep, read,
skill, task, todowrite, webfetch, write), `read` taking `filePath`. A continued session makes no title call.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from llm_gateway.server import Gateway
from tests.support.cli_runs import CliRun, run_cli, traced_prompts
from tests.support.fake_anthropic import Answer, FakeAnthropic
from tests.support.npm_clients import OPENCODE, installed
from tests.support.otlp import ReceivedSpan

PROMPTS = (("read notes.txt",), ("--continue", "read it again"))


class Run(CliRun[Answer]):
    __slots__ = ()

    def chat(self, answer: Answer) -> ReceivedSpan:
        (span,) = [s for s in self.named("chat ") if s.attributes.get("gen_ai.response.id") == answer.message_id]
        return span


async def _run(opencode: Path, tmp: Path) -> Run:
    home, work = tmp / "home", tmp / "work"
    (home / ".config" / "opencode").mkdir(parents=True)
    work.mkdir()
    (work / "notes.txt").write_text("the file opencode reads\n")
    fake = FakeAnthropic(read_path="notes.txt", read_tool="read", path_argument="filePath")

    async def prompt(gateway: Gateway, args: tuple[str, ...]) -> None:
        (home / ".config" / "opencode" / "opencode.json").write_text(json.dumps({
            "provider": {"anthropic": {"options": {"baseURL": f"{gateway.url}/v1", "apiKey": "sk-test"}}},
            "model": "anthropic/claude-sonnet-4-5", "small_model": "anthropic/claude-haiku-4-5",
            "autoupdate": False, "share": "disabled",
        }))
        assert (await run_cli([opencode, "run", *args], work, {"HOME": str(home)})).strip().endswith("Done.")

    done = await traced_prompts("anthropic", fake.handle, fake.answers, PROMPTS, prompt)
    assert not fake.other_requests
    return Run(done.spans, done.prompts)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    opencode = installed(OPENCODE, ".bin/opencode")
    return asyncio.run(_run(opencode, tmp_path_factory.mktemp("opencode")))


def _is_title(answer: Answer) -> bool:
    return not answer.request.get("tools")


def test_the_wire_is_as_described(run: Run) -> None:
    first, second = run.prompts
    assert [(_is_title(a), a.stop_reason) for a in first] == [(True, "end_turn"), (False, "tool_use"),
                                                              (False, "end_turn")]
    assert [(_is_title(a), a.stop_reason) for a in second] == [(False, "tool_use"), (False, "end_turn")]
    assert "title generator" in first[0].request["system"][0]["text"]
    sessions = {(a.headers["x-session-affinity"], a.headers["x-session-id"]) for p in run.prompts for a in p}
    assert len(sessions) == 1 and len(set(next(iter(sessions)))) == 1


def test_one_trace_a_turn_per_prompt_and_a_chat_span_per_model_call(run: Run) -> None:
    answers = [a for p in run.prompts for a in p]
    session_id = answers[0].headers["x-session-affinity"]
    (session,) = run.named("session ")
    assert session.name == "session opencode"
    assert {s.trace_id for s in run.spans} == {session.trace_id}
    assert all(s.attributes["session.id"] == session_id for s in run.spans)
    turns = run.named("invoke_agent ")
    assert [t.parent_id for t in turns] == [session.span_id] * len(run.prompts)
    assert len(run.named("chat ")) == len(answers)
    for turn, prompt in zip(turns, run.prompts, strict=True):
        assert [run.chat(a).parent_id for a in prompt] == [turn.span_id] * len(prompt)  # the title call too
        (tool,) = [t for t in run.named("execute_tool ") if t.parent_id == turn.span_id]
        assert tool.attributes["gen_ai.tool.call.id"] == next(a.tool_use_id for a in prompt if a.tool_use_id)
        assert (tool.attributes["llm_gateway.tool.outcome"], tool.attributes["file.path"]) == ("ok", "notes.txt")
    for answer in answers:
        chat = run.chat(answer)
        assert chat.attributes["gen_ai.usage.input_tokens"] == answer.input_tokens + answer.cache_read
        assert chat.attributes["gen_ai.usage.output_tokens"] == answer.output_tokens
    # Priced with the installed table: the session's total is the sum of its calls'.
    costs = [run.chat(a).attributes["gen_ai.usage.cost"] for a in answers]
    assert session.attributes["llm_gateway.usage.cost"] == pytest.approx(sum(costs), rel=1e-12)


def test_the_title_call_is_an_auxiliary_chat_span(run: Run) -> None:
    answers = [a for p in run.prompts for a in p]
    assert [run.chat(a).attributes.get("llm_gateway.call.auxiliary", False) for a in answers] == [
        _is_title(a) for a in answers]
