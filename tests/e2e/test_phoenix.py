"""End to end on a real backend: a two-turn tool-loop session with a title side call, made by the anthropic SDK
through the gateway against the scripted upstream (`tests/support/fake_anthropic.py`), spans exported over
OTLP/HTTP to Arize Phoenix and read back through Phoenix's own APIs (issue 14's done-when).

Phoenix must show the shape (session > an `invoke_agent` per turn > the turn's chat and `execute_tool` spans, the
side call an auxiliary chat span in the turn it served) and, on its sessions page, the session's token total equal
to the sum over its chat spans and to what the upstream reported: with one trace per session (the default) and
with one trace per turn (`LLM_GATEWAY_TRACE_PER=turn`), where Phoenix ties the traces together by `session.id`."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import anthropic
import pytest

from llm_gateway.config import Settings
from llm_gateway.server import Gateway
from tests.e2e.phoenix import Phoenix
from tests.support.fake_anthropic import FakeAnthropic
from tests.support.servers import LOOPBACK, running_upstream

MODEL = "claude-sonnet-4-5"
TOOLS = [{"name": "Read", "description": "Read a file",
          "input_schema": {"type": "object", "properties": {"file_path": {"type": "string"}}}}]
PROMPTS = ("read notes.txt", "read it again")


@pytest.fixture(scope="module")
def phoenix(tmp_path_factory):
    server = Phoenix(tmp_path_factory.mktemp("phoenix")).start()
    yield server
    server.stop()


async def _agent(client: anthropic.AsyncAnthropic) -> None:
    """Two prompts, each a Read tool loop; a title call (no tools) once the first prompt's first call answered."""
    messages: list[dict[str, Any]] = []
    for prompt in PROMPTS:
        messages.append({"role": "user", "content": prompt})
        while True:
            async with client.messages.stream(model=MODEL, max_tokens=256, messages=messages,
                                              tools=TOOLS) as stream:
                reply = await stream.get_final_message()
            messages.append({"role": "assistant", "content": [b.model_dump() for b in reply.content]})
            if len(messages) == 2:
                await client.messages.create(model="claude-haiku-4-5", max_tokens=32,
                                             system="Write a title for this chat.",
                                             messages=[{"role": "user", "content": PROMPTS[0]}])
            uses = [b for b in reply.content if b.type == "tool_use"]
            if not uses:
                break
            messages.append({"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": u.id, "content": "the notes"} for u in uses]})


async def _until(read: Callable[[], Any], ready: Callable[[Any], bool], timeout: float = 20.0) -> Any:
    """Phoenix ingests asynchronously: read until `ready`."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = read()
        if ready(value) or asyncio.get_running_loop().time() > deadline:
            return value
        await asyncio.sleep(0.2)


def _named(spans: list[dict], prefix: str) -> list[dict]:
    return sorted((s for s in spans if s["name"].startswith(prefix)), key=lambda s: s["start_time"])


@pytest.mark.parametrize("trace_per", ["session", "turn"])
async def test_phoenix_shows_the_turns_and_the_session_token_total_of_its_chat_spans(
    phoenix: Phoenix, trace_per: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "50")
    project, session_id = f"llm-gateway-e2e-{trace_per}", f"phoenix-e2e-{trace_per}"
    fake = FakeAnthropic(read_path="notes.txt")
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": phoenix.url, "OTEL_SERVICE_NAME": "llm-gateway-e2e",
           "OTEL_METRICS_EXPORTER": "none",  # Phoenix takes traces only
           "OTEL_RESOURCE_ATTRIBUTES": f"openinference.project.name={project}",
           "LLM_GATEWAY_TRACE_PER": trace_per}
    async with running_upstream(fake.handle) as upstream:
        gateway = await Gateway.start(Settings(host=LOOPBACK, port=0, upstreams={"anthropic": upstream}), env)
        try:
            await _agent(anthropic.AsyncAnthropic(base_url=gateway.url, api_key="k", max_retries=0,
                                                  default_headers={"X-Claude-Code-Session-Id": session_id}))
        finally:
            await gateway.stop()  # the session ends: everything is exported

    turn_count = 2
    roots = 1 if trace_per == "session" else turn_count
    spans = await _until(lambda: phoenix.spans(project), lambda s: len(
        [x for x in s if x["parent_id"] is None]) == roots and len(_named(s, "chat ")) == len(fake.answers))
    chats, turns = _named(spans, "chat "), _named(spans, "invoke_agent ")
    tools, sessions = _named(spans, "execute_tool "), _named(spans, "session ")

    # Shape: one chat span per call the upstream answered, under the turn it served; a tool span per Read.
    assert len(fake.answers) == 1 + 2 * turn_count
    assert len(chats) == len(fake.answers)
    assert len(turns) == turn_count and len(tools) == turn_count
    assert {s["span_kind"] for s in chats} == {"LLM"} and {s["span_kind"] for s in turns} == {"AGENT"}
    assert all(s["attributes"]["session.id"] == session_id for s in spans)
    traces = {s["context"]["trace_id"] for s in spans}
    if trace_per == "session":
        (session,) = sessions
        assert len(traces) == 1
        assert [t["parent_id"] for t in turns] == [session["context"]["span_id"]] * turn_count
    else:
        assert not sessions
        assert len(traces) == turn_count and [t["parent_id"] for t in turns] == [None] * turn_count
        assert len({t["context"]["trace_id"] for t in turns}) == turn_count
    turn_of = {t["context"]["span_id"]: n for n, t in enumerate(turns)}
    assert [turn_of[c["parent_id"]] for c in chats] == [0, 0, 0, 1, 1]  # the title call is turn 1's
    assert [turn_of[t["parent_id"]] for t in tools] == [0, 1]
    auxiliary = [c["attributes"].get("llm_gateway.call.auxiliary", False) for c in chats]
    assert auxiliary == [False, True, False, False, False]
    assert [t["attributes"]["gen_ai.tool.call.id"] for t in tools] == [a.tool_use_id for a in fake.answers
                                                                        if a.tool_use_id]
    assert [t["attributes"]["llm_gateway.turn.calls"] for t in turns] == [3, 2]

    # Tokens: each chat span has what the upstream reported (input counts the cache); only chat spans carry them.
    for chat, answer in zip(chats, fake.answers, strict=True):
        assert chat["attributes"]["gen_ai.usage.input_tokens"] == answer.input_tokens + answer.cache_read
        assert chat["attributes"]["gen_ai.usage.output_tokens"] == answer.output_tokens
    assert _named([s for s in spans if any(k.startswith("gen_ai.usage.") for k in s["attributes"])], "") == chats
    prompt = sum(c["attributes"]["gen_ai.usage.input_tokens"] for c in chats)
    completion = sum(c["attributes"]["gen_ai.usage.output_tokens"] for c in chats)
    assert prompt == sum(a.input_tokens + a.cache_read for a in fake.answers)
    assert sum(t["attributes"]["llm_gateway.usage.input_tokens"] for t in turns) == prompt
    if trace_per == "session":
        assert sessions[0]["attributes"]["llm_gateway.usage.output_tokens"] == completion

    # What Phoenix shows for the session: its sessions page (GraphQL) and its REST session list.
    shown = await _until(lambda: phoenix.session(session_id),
                         lambda s: s is not None and s["tokenUsage"]["total"] == prompt + completion)
    assert shown is not None
    assert shown["numTraces"] == len(traces)
    assert shown["tokenUsage"] == {"prompt": prompt, "completion": completion, "total": prompt + completion}
    (listed,) = phoenix.sessions(project)
    assert listed["session_id"] == session_id
    assert {t["trace_id"] for t in listed["traces"]} == traces
    assert (listed["token_count_prompt"], listed["token_count_completion"], listed["token_count_total"]) == (
        prompt, completion, prompt + completion)
