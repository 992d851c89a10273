"""Agent sessions end to end: real SDK clients run a recorded tool loop through the gateway; the trace read back
from a real OTLP receiver is session > invoke_agent > chat / execute_tool, with ids from the recording."""

from __future__ import annotations

import anthropic
import openai
import orjson
import pytest

from llm_gateway.recordings import load
from llm_gateway.telemetry.ids import session_trace_id
from tests.support import FIXTURES


def _by_name(spans, prefix):
    return [s for s in spans if s.name.startswith(prefix)]


async def _run_anthropic_loop(gateway, fixture, headers=None):
    client = anthropic.AsyncAnthropic(base_url=gateway.url, api_key="k", max_retries=0,
                                      default_headers=headers or {})
    for exchange in fixture.exchanges:
        body = orjson.loads(exchange.request.body)
        async with client.beta.messages.stream(model=body["model"], max_tokens=body["max_tokens"],
                                               messages=body["messages"], tools=body["tools"]) as stream:
            await stream.get_final_message()


async def test_anthropic_tool_loop_is_one_trace_with_tool_span_between_the_calls(traced_gateway, receiver):
    fixture = load(FIXTURES / "anthropic/tool-runner-loop.json")
    first, second = fixture.exchanges
    recorded_call = next(
        orjson.loads(line[5:])["content_block"] for line in first.response.body.splitlines()
        if line.startswith(b"data:") and b'"tool_use"' in line and b"content_block_start" in line
    )
    recorded_result = next(
        block for m in orjson.loads(second.request.body)["messages"] if isinstance(m["content"], list)
        for block in m["content"] if block.get("type") == "tool_result"
    )
    assert recorded_result["tool_use_id"] == recorded_call["id"]  # the recording itself pairs them

    async with traced_gateway([fixture]) as (gateway, _):
        await _run_anthropic_loop(gateway, fixture)
    spans = await receiver.wait_for(lambda s: bool(_by_name(s, "session ")))

    (session,) = _by_name(spans, "session ")
    (agent,) = _by_name(spans, "invoke_agent ")
    chats = sorted(_by_name(spans, "chat "), key=lambda s: s.start_ns)
    (tool,) = _by_name(spans, "execute_tool ")
    assert len({s.trace_id for s in spans}) == 1
    assert int(session.trace_id, 16) == session_trace_id(session.attributes["llm_gateway.session.key"])
    assert session.parent_id is None and agent.parent_id == session.span_id
    assert [c.parent_id for c in chats] == [agent.span_id, agent.span_id]
    assert tool.parent_id == agent.span_id
    assert tool.name == f"execute_tool {recorded_call['name']}"
    assert tool.attributes["gen_ai.tool.call.id"] == recorded_call["id"]
    assert tool.attributes["gen_ai.tool.name"] == recorded_call["name"]
    assert tool.attributes["llm_gateway.tool.outcome"] == "ok"
    events = [orjson.loads(line[5:]) for line in first.response.body.splitlines() if line.startswith(b"data:")]
    arguments = "".join(e["delta"]["partial_json"] for e in events
                        if e["type"] == "content_block_delta" and e["delta"]["type"] == "input_json_delta")
    assert tool.attributes["llm_gateway.tool.argument_keys"] == sorted(orjson.loads(arguments))
    assert "gen_ai.tool.call.arguments" not in tool.attributes  # content capture is off
    assert chats[0].end_ns == tool.start_ns and tool.end_ns == chats[1].start_ns
    assert agent.attributes["gen_ai.operation.name"] == "invoke_agent"
    total_in = sum(c.attributes["gen_ai.usage.input_tokens"] for c in chats)
    # Totals under llm_gateway.usage.*: only model-call spans carry gen_ai.usage.* (no triple counting, issue 14)
    assert session.attributes["llm_gateway.usage.input_tokens"] == total_in
    assert agent.attributes["llm_gateway.usage.input_tokens"] == total_in
    assert not any(k.startswith("gen_ai.usage.") or k == "gen_ai.request.model"
                   for s in (session, agent, tool) for k in s.attributes)
    assert session.start_ns == chats[0].start_ns and session.end_ns == chats[1].end_ns


async def test_same_session_lands_in_the_same_trace_across_gateway_restarts(traced_gateway, receiver):
    fixture = load(FIXTURES / "anthropic/tool-runner-loop.json")
    for _ in range(2):  # two gateway lifetimes, one conversation (explicit Claude Code session id)
        async with traced_gateway([fixture]) as (gateway, _):
            await _run_anthropic_loop(gateway, fixture, {"X-Claude-Code-Session-Id": "restart-test"})
    spans = await receiver.wait_for(lambda s: len(_by_name(s, "session ")) == 2)
    assert {s.trace_id for s in spans} == {format(session_trace_id("restart-test"), "032x")}
    assert {s.attributes["gen_ai.conversation.id"] for s in _by_name(spans, "chat ")} == {"restart-test"}


async def test_openai_chat_parallel_tool_results_pair_by_call_id(traced_gateway, receiver):
    fixture = load(FIXTURES / "openai_chat/tool-loop.json")
    first, second = fixture.exchanges
    recorded_calls = orjson.loads(first.response.body)["choices"][0]["message"]["tool_calls"]
    async with traced_gateway([fixture]) as (gateway, _):
        client = openai.AsyncOpenAI(base_url=gateway.url + "/v1", api_key="k", max_retries=0)
        for exchange in (first, second):
            body = orjson.loads(exchange.request.body)
            await client.chat.completions.create(model=body["model"], messages=body["messages"],
                                                 tools=body.get("tools"))
    spans = await receiver.wait_for(lambda s: bool(_by_name(s, "session ")))
    tools = _by_name(spans, "execute_tool ")
    assert sorted(t.attributes["gen_ai.tool.call.id"] for t in tools) == sorted(c["id"] for c in recorded_calls)
    assert {t.attributes["gen_ai.tool.name"] for t in tools} == {c["function"]["name"] for c in recorded_calls}
    assert {t.attributes["llm_gateway.tool.outcome"] for t in tools} == {"ok"}


async def test_trace_per_turn_roots_each_turn_and_ties_them_by_session_id(traced_gateway, receiver):
    fixture = load(FIXTURES / "anthropic/tool-runner-loop.json")
    headers = {"X-Claude-Code-Session-Id": "per-turn"}
    async with traced_gateway([fixture], extra_env={"LLM_GATEWAY_TRACE_PER": "turn"}) as (gateway, _):
        await _run_anthropic_loop(gateway, fixture, headers)
    spans = await receiver.wait_for(lambda s: bool(_by_name(s, "invoke_agent ")))
    assert _by_name(spans, "session ") == []  # no session span: the turns are the roots
    (turn,) = _by_name(spans, "invoke_agent ")
    assert turn.parent_id is None and turn.trace_id != format(session_trace_id("per-turn"), "032x")
    assert {s.trace_id for s in spans} == {turn.trace_id}
    assert {s.attributes.get("session.id") for s in spans} == {"per-turn"}
    assert {c.parent_id for c in _by_name(spans, "chat ")} == {turn.span_id}


async def test_turn_and_session_cost_totals_are_the_sum_of_their_calls(traced_gateway, receiver):
    fixture = load(FIXTURES / "anthropic/tool-runner-loop.json")
    async with traced_gateway([fixture]) as (gateway, _):
        await _run_anthropic_loop(gateway, fixture)
    spans = await receiver.wait_for(lambda s: bool(_by_name(s, "session ")))
    (session,) = _by_name(spans, "session ")
    (turn,) = _by_name(spans, "invoke_agent ")
    costs = [c.attributes["gen_ai.usage.cost"] for c in _by_name(spans, "chat ")]
    assert len(costs) == len(fixture.exchanges) and all(cost > 0 for cost in costs)
    assert session.attributes["llm_gateway.usage.cost"] == pytest.approx(sum(costs))
    assert turn.attributes["llm_gateway.usage.cost"] == pytest.approx(sum(costs))
    assert "gen_ai.usage.cost" not in session.attributes and "gen_ai.usage.cost" not in turn.attributes
