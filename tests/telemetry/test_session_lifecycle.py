"""Session lifecycle end to end: an SDK that runs the tool loop itself, subagents, idle close, the tree."""

from __future__ import annotations

import asyncio
import json

import anthropic
import orjson
from anthropic import beta_async_tool

from llm_gateway.recordings import load
from tests.support import FIXTURES


def _by_name(spans, prefix):
    return [s for s in spans if s.name.startswith(prefix)]


async def test_sdk_tool_runner_loop_sends_a_real_tool_result_that_closes_the_tool_span(traced_gateway, receiver):
    """The anthropic SDK's own tool runner calls our Python tool and sends its result back: the recording was
    made by this very runner, so the replayed model asks for the same call."""
    fixture = load(FIXTURES / "anthropic/tool-runner-loop.json")
    first_body = orjson.loads(fixture.exchanges[0].request.body)
    calls: list[dict] = []

    @beta_async_tool
    async def get_weather(location: str, units: str) -> str:
        """Lookup the weather for a given city in either celsius or fahrenheit

        Args:
            location: The city and state, e.g. San Francisco, CA
            units: Unit for the output, either 'c' for celsius or 'f' for fahrenheit
        """
        calls.append({"location": location, "units": units})
        return json.dumps({"location": location, "temperature": "68°F", "condition": "Sunny"})

    async with traced_gateway([fixture]) as (gateway, upstream):
        client = anthropic.AsyncAnthropic(base_url=gateway.url, api_key="k", max_retries=0)
        runner = client.beta.messages.tool_runner(model=first_body["model"], max_tokens=first_body["max_tokens"],
                                                  messages=first_body["messages"], tools=[get_weather], stream=True)
        async for stream in runner:
            await stream.get_final_message()
    sent = orjson.loads(upstream.requests[1].body)
    result_block = sent["messages"][-1]["content"][0]
    assert result_block["type"] == "tool_result" and calls  # our tool ran and its result was sent
    spans = await receiver.wait_for(lambda s: bool(_by_name(s, "session ")))
    (tool,) = _by_name(spans, "execute_tool ")
    assert tool.attributes["gen_ai.tool.call.id"] == result_block["tool_use_id"]
    assert tool.attributes["llm_gateway.tool.outcome"] == "ok"
    chats = sorted(_by_name(spans, "chat "), key=lambda s: s.start_ns)
    assert chats[0].end_ns <= tool.start_ns <= tool.end_ns <= chats[1].start_ns


async def test_subagent_with_claude_code_headers_nests_under_its_parent(traced_gateway, receiver):
    fixture = load(FIXTURES / "anthropic/tool-runner-loop.json")
    body = orjson.loads(fixture.exchanges[0].request.body)
    async with traced_gateway([fixture]) as (gateway, _):
        for headers in ({"X-Claude-Code-Session-Id": "cc-1", "User-Agent": "claude-cli/2.1.331 (external, cli)"},
                        {"X-Claude-Code-Session-Id": "cc-1", "User-Agent": "claude-cli/2.1.331 (external, cli)",
                         "x-claude-code-agent-id": "explore-1", "x-claude-code-parent-agent-id": "main"}):
            client = anthropic.AsyncAnthropic(base_url=gateway.url, api_key="k", max_retries=0,
                                              default_headers=headers)
            async with client.beta.messages.stream(model=body["model"], max_tokens=body["max_tokens"],
                                                   messages=body["messages"], tools=body["tools"]) as stream:
                await stream.get_final_message()
    spans = await receiver.wait_for(lambda s: bool(_by_name(s, "session ")))
    (session,) = _by_name(spans, "session ")
    agents = _by_name(spans, "invoke_agent ")
    main = next(a for a in agents if a.attributes["gen_ai.agent.id"] != "explore-1")
    sub = next(a for a in agents if a.attributes["gen_ai.agent.id"] == "explore-1")
    assert session.name == "session Claude Code" and main.name == "invoke_agent Claude Code"
    # The first call asked for a tool, and the subagent came while it waited: the subagent's turn nests under it.
    (started_it,) = _by_name(spans, "execute_tool ")
    assert main.parent_id == session.span_id and started_it.parent_id == main.span_id
    assert sub.parent_id == started_it.span_id
    chats = {c.parent_id for c in _by_name(spans, "chat ")}
    assert chats == {main.span_id, sub.span_id}


async def test_idle_session_is_exported_before_shutdown_and_ends_at_its_last_activity(traced_gateway, receiver):
    fixture = load(FIXTURES / "anthropic/tools-streaming.json")
    body = orjson.loads(fixture.exchanges[0].request.body)
    async with traced_gateway([fixture], extra_env={"LLM_GATEWAY_SESSION_IDLE_SECONDS": "0.5"}) as (gateway, _):
        client = anthropic.AsyncAnthropic(base_url=gateway.url, api_key="k", max_retries=0)
        async with client.messages.stream(model=body["model"], max_tokens=body["max_tokens"],
                                          messages=body["messages"], tools=body["tools"]) as stream:
            await stream.get_final_message()
        spans = await receiver.wait_for(lambda s: bool(_by_name(s, "session ")), timeout=5)  # gateway still up
        (session,) = _by_name(spans, "session ")
        (chat,) = _by_name(spans, "chat ")
        assert session.end_ns == chat.end_ns  # the last activity, not when the timer fired
        tools = _by_name(spans, "execute_tool ")  # two tool calls whose results never came
        assert len(tools) == 2 and {t.attributes["llm_gateway.tool.outcome"] for t in tools} == {"no_result"}
        # A result never seen is no error (issue 14): the status stays unset, the outcome says what happened.
        assert all("error.type" not in t.attributes and t.status_code == 0 for t in tools)


async def test_print_tree_renders_the_finished_session(traced_gateway, receiver, capfd):
    """The tree is printed by the telemetry process, on the stderr it shares with the gateway (hence capfd)."""
    fixture = load(FIXTURES / "anthropic/tool-runner-loop.json")
    async with traced_gateway([fixture], extra_env={"LLM_GATEWAY_PRINT": "tree"}) as (gateway, _):
        client = anthropic.AsyncAnthropic(base_url=gateway.url, api_key="k", max_retries=0)
        for exchange in fixture.exchanges:
            body = orjson.loads(exchange.request.body)
            async with client.beta.messages.stream(model=body["model"], max_tokens=body["max_tokens"],
                                                   messages=body["messages"], tools=body["tools"]) as stream:
                await stream.get_final_message()
    await asyncio.sleep(0)
    tree = capfd.readouterr().err
    lines = [line.strip() for line in tree.splitlines()]
    assert lines[0].startswith("[session] Anthropic SDK session")
    assert lines[1].startswith("[invoke_agent] Anthropic SDK")
    kinds = [line.split("]")[0] + "]" for line in lines[2:]]
    assert kinds == ["[chat]", "[execute_tool]", "[chat]"]
    assert "execute_tool] get_weather" in tree and "finish=tool_use" in tree and "finish=end_turn" in tree


async def test_two_interleaved_sessions_become_two_traces(traced_gateway, receiver):
    first = load(FIXTURES / "anthropic/tool-runner-loop.json")
    second = load(FIXTURES / "anthropic/tool-runner-loop.json")
    async with traced_gateway([first, second]) as (gateway, _):
        clients = {key: anthropic.AsyncAnthropic(base_url=gateway.url, api_key="k", max_retries=0,
                                                 default_headers={"X-Session-Id": key}) for key in ("a", "b")}
        for turn in range(2):  # a1, b1, a2, b2
            body = orjson.loads(first.exchanges[turn].request.body)
            for key in ("a", "b"):
                async with clients[key].beta.messages.stream(
                    model=body["model"], max_tokens=body["max_tokens"], messages=body["messages"], tools=body["tools"]
                ) as stream:
                    await stream.get_final_message()
    spans = await receiver.wait_for(lambda s: len(_by_name(s, "session ")) == 2)
    for key in ("a", "b"):
        (session,) = [s for s in _by_name(spans, "session ") if s.attributes["gen_ai.conversation.id"] == key]
        in_trace = [s for s in spans if s.trace_id == session.trace_id]
        assert len(_by_name(in_trace, "chat ")) == 2
        (tool,) = _by_name(in_trace, "execute_tool ")
        assert tool.attributes["llm_gateway.tool.outcome"] == "ok"
        assert {c.attributes["gen_ai.conversation.id"] for c in _by_name(in_trace, "chat ")} == {key}
