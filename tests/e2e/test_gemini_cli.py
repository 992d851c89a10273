"""Real Gemini CLI 0.61 (npm, pinned), two prompts of one session (`gemini -p`, then `gemini --resume latest -p`),
through the gateway against the scripted Gemini API upstream (`tests/support/fake_gemini.py`), spans read back from
the OTLP receiver (issue 14, item 4). Expectations come from what the upstream answered.

What Gemini CLI 0.61 sends with an API key and GOOGLE_GEMINI_BASE_URL (settings: auth type `gemini-api-key`, since
the base URL alone selects the `gateway` auth type, which headless mode refuses as "Invalid auth method selected"):
no session id at all (User-Agent `GeminiCLI-tui/0.61.0/<model> (linux; x64; terminal)`, `x-goog-api-key`,
`x-gemini-api-privileged-user-id`: the installation's id), so the gateway keys the session by fingerprint. Each
prompt makes, in order:

1. the model router's classifier: `generateContent` (not streamed) on gemini-3.5-flash-lite, a system prompt of its
   own ("You are a specialized Task Routing AI..."), no tools, the session context and the prompt as two user
   contents, and a `responseJsonSchema` asking for `complexity_reasoning` and `complexity_score`;
2. the main loop on the model the router chose: `streamGenerateContent?alt=sse` with the agent's system prompt and
   its tools (read_file among them), a `functionCall`, then the call carrying the `functionResponse`, then the final
   answer;
3. with `model.skipNextSpeakerCheck: false` (its default is true), after the final answer, the next-speaker check:
   `generateContent` on gemini-3-flash-preview, no system prompt, no tools, the whole conversation plus one user
   text asking who speaks next, and a `responseJsonSchema` asking for `reasoning` and `next_speaker` (user or
   model).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from llm_gateway.server import Gateway
from tests.support.cli_runs import CliRun, run_cli, traced_prompts
from tests.support.fake_gemini import Answer, FakeGemini
from tests.support.npm_clients import GEMINI_CLI, installed
from tests.support.otlp import ReceivedSpan

PROMPTS = (("-p", "read notes.txt"), ("--resume", "latest", "-p", "read it again"))


class Run(CliRun[Answer]):
    __slots__ = ()

    def chat(self, answer: Answer) -> ReceivedSpan:
        (span,) = [s for s in self.named("generate_content ")
                   if s.attributes.get("gen_ai.response.id") == answer.response_id]
        return span


async def _run(gemini: Path, tmp: Path) -> Run:
    home, work = tmp / "home", tmp / "work"
    (home / ".gemini").mkdir(parents=True)
    work.mkdir()
    (work / "notes.txt").write_text("the file Gemini CLI reads\n")
    (home / ".gemini" / "settings.json").write_text(json.dumps({
        "security": {"auth": {"selectedType": "gemini-api-key"}},
        "model": {"skipNextSpeakerCheck": False},
        "privacy": {"usageStatisticsEnabled": False},
    }))
    fake = FakeGemini(read_path="notes.txt")

    async def prompt(gateway: Gateway, args: tuple[str, ...]) -> None:
        env = {"HOME": str(home), "GEMINI_API_KEY": "k-test", "GOOGLE_GEMINI_BASE_URL": gateway.url,
               "GEMINI_CLI_TRUST_WORKSPACE": "true"}
        assert (await run_cli([gemini, *args], work, env)).strip() == "Done."

    done = await traced_prompts("gemini", fake.handle, fake.answers, PROMPTS, prompt)
    assert not fake.other_requests
    return Run(done.spans, done.prompts)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    gemini = installed(GEMINI_CLI, ".bin/gemini")
    return asyncio.run(_run(gemini, tmp_path_factory.mktemp("gemini-cli")))


def _main(answers: list[Answer]) -> list[Answer]:
    return [a for a in answers if a.kind != "json"]


def _side(answers: list[Answer]) -> list[Answer]:
    return [a for a in answers if a.kind == "json"]


def test_the_wire_is_as_described(run: Run) -> None:
    for answers in run.prompts:
        assert [(a.kind, a.streamed) for a in answers] == [("json", False), ("tool", True), ("text", True),
                                                           ("json", False)]
        router, check = _side(answers)
        assert "complexity_score" in router.request["generationConfig"]["responseJsonSchema"]["properties"]
        assert "next_speaker" in check.request["generationConfig"]["responseJsonSchema"]["properties"]
        assert not router.request.get("tools") and not check.request.get("tools")
        assert "systemInstruction" not in check.request
    assert all(a.headers["User-Agent"].startswith("GeminiCLI-tui/0.61.0/") for p in run.prompts for a in p)


def test_every_model_call_is_one_chat_span_with_the_usage_the_upstream_sent(run: Run) -> None:
    answers = [a for p in run.prompts for a in p]
    assert len(run.named("generate_content ")) == len(answers)
    for answer in answers:
        chat = run.chat(answer)
        assert chat.attributes["gen_ai.request.model"] == answer.model
        assert chat.attributes["gen_ai.usage.input_tokens"] == answer.prompt_tokens
        assert chat.attributes["gen_ai.usage.output_tokens"] == answer.output_tokens + answer.thoughts_tokens
        assert chat.attributes.get("gen_ai.usage.reasoning.output_tokens", 0) == answer.thoughts_tokens
    assert [s for s in run.spans if any(k.startswith("gen_ai.usage.") for k in s.attributes)] == [
        s for s in run.spans if s.name.startswith("generate_content ")]


def test_each_prompts_main_loop_is_one_turn_of_one_session_with_its_tool_run(run: Run) -> None:
    turns = []
    for answers in run.prompts:
        (turn_id,) = {run.chat(a).parent_id for a in _main(answers)}
        turns.append(turn_id)
        (tool,) = [t for t in run.named("execute_tool ") if t.parent_id == turn_id]
        assert tool.attributes["gen_ai.tool.name"] == "read_file"
        assert tool.attributes["gen_ai.tool.call.id"] == next(a.call_id for a in answers if a.call_id)
        assert tool.attributes["llm_gateway.tool.outcome"] == "ok"
        assert tool.attributes["file.path"] == "notes.txt"
    by_id = {s.span_id: s for s in run.spans}
    assert len(set(turns)) == 2 and len({by_id[t].parent_id for t in turns}) == 1  # one session span
    assert len({run.chat(a).attributes["session.id"] for p in run.prompts for a in _main(p)}) == 1
    # The second prompt's router call found the session its client's main loop was in, and its turn.
    router = _side(run.prompts[1])[0]
    assert run.chat(router).parent_id == turns[1]
    assert run.chat(router).attributes["llm_gateway.call.auxiliary"] is True


def test_side_calls_are_auxiliary_chat_spans_under_the_turn_they_serve_in_one_trace(run: Run) -> None:
    assert len({s.trace_id for s in run.spans}) == 1
    turns = run.named("invoke_agent ")
    assert [t.attributes["llm_gateway.turn.number"] for t in turns] == [1, 2]
    for turn, answers in zip(turns, run.prompts, strict=True):
        assert [run.chat(a).parent_id for a in answers] == [turn.span_id] * len(answers)
        assert [run.chat(a).attributes.get("llm_gateway.call.auxiliary", False) for a in answers] == [
            a.kind == "json" for a in answers]


def test_the_client_is_named_gemini_cli(run: Run) -> None:
    assert {s.name for s in run.named("session ")} == {"session Gemini CLI"}
