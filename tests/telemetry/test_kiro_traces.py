"""Kiro sessions end to end: recorded Kiro CLI traffic played through the gateway by a client that speaks
Kiro's protocol (aiohttp, real sockets); the trace read back from a real OTLP receiver. Expected values are
read from the recorded requests and event-stream frames."""

from __future__ import annotations

import io

import orjson
from botocore.eventstream import EventStreamBuffer

from llm_gateway.demo import play
from llm_gateway.recordings import header, load
from tests.support import FIXTURES


def _by_name(spans, prefix):
    return [s for s in spans if s.name.startswith(prefix)]


def _frames(body: bytes) -> list[tuple[str, dict]]:
    buffer = EventStreamBuffer()
    buffer.add_data(body)
    return [(m.headers.get(":event-type"), orjson.loads(m.payload) if m.payload else {}) for m in buffer]


def _gar_exchanges(fixture):
    return [e for e in fixture.exchanges
            if (header(e.request.headers, "x-amz-target") or "").endswith("GenerateAssistantResponse")]


async def test_kiro_tool_loop_is_one_session_with_tool_spans_outcomes_and_paths(traced_gateway, receiver):
    fixture = load(FIXTURES / "kiro/composed-fs-tool-loop.json")
    async with traced_gateway([fixture]) as (gateway, _):
        await play(gateway.url, fixture, io.StringIO())
    spans = await receiver.wait_for(lambda s: bool(_by_name(s, "session ")))

    requests = [orjson.loads(e.request.body)["conversationState"] for e in fixture.exchanges]
    calls = {p["toolUseId"]: p["name"] for e in fixture.exchanges for kind, p in _frames(e.response.body)
             if kind == "toolUseEvent" and "name" in p}
    results = {r["toolUseId"]: r["status"] for cs in requests
               for r in cs["currentMessage"]["userInputMessage"].get("userInputMessageContext", {})
               .get("toolResults", [])}
    (session,) = _by_name(spans, "session ")
    (agent,) = _by_name(spans, "invoke_agent ")
    chats = _by_name(spans, "chat ")
    tools = {t.attributes["gen_ai.tool.call.id"]: t for t in _by_name(spans, "execute_tool ")}
    assert session.name == "session Kiro Agent" and agent.name == "invoke_agent Kiro Agent"
    assert session.attributes["gen_ai.conversation.id"] == requests[0]["conversationId"]
    assert {c.name for c in chats} == {f"chat {cs['currentMessage']['userInputMessage']['modelId']}"
                                       for cs in requests}
    assert {c.attributes["gen_ai.provider.name"] for c in chats} == {"aws.kiro"}
    assert set(tools) == set(calls)
    for call_id, span in tools.items():
        assert span.attributes["gen_ai.tool.name"] == calls[call_id]
        assert span.parent_id == agent.span_id
        expected = {"success": "ok", "error": "error"}.get(results.get(call_id), "no_result")
        assert span.attributes["llm_gateway.tool.outcome"] == expected
    file_tools = [t for t in tools.values() if t.attributes["gen_ai.tool.name"] in ("fs_read", "fs_write")]
    assert file_tools and all(t.attributes["file.path"].startswith("/") for t in file_tools)
    for chat, exchange in zip(sorted(chats, key=lambda s: s.start_ns), fixture.exchanges, strict=True):
        usage = next(p["tokenUsage"] for kind, p in _frames(exchange.response.body)
                     if kind == "metadataEvent" and "tokenUsage" in p)
        assert chat.attributes["gen_ai.usage.input_tokens"] == (usage["uncachedInputTokens"]
                                                                + usage.get("cacheReadInputTokens", 0)
                                                                + usage.get("cacheWriteInputTokens", 0))
        assert chat.attributes["gen_ai.usage.output_tokens"] == usage["outputTokens"]


async def test_real_kiro_cli_session_groups_turns_and_marks_the_checkpoint_call(traced_gateway, receiver):
    fixture = load(FIXTURES / "kiro/cli-2.4.1-session.json")
    async with traced_gateway([fixture]) as (gateway, _):
        await play(gateway.url, fixture, io.StringIO())
    spans = await receiver.wait_for(lambda s: bool(_by_name(s, "session ")))
    turns = _gar_exchanges(fixture)
    conversation_ids = {orjson.loads(e.request.body)["conversationState"]["conversationId"] for e in turns}
    assert len(conversation_ids) == 1  # one chat in the recording
    (session,) = _by_name(spans, "session ")
    chats = sorted(_by_name(spans, "chat "), key=lambda s: s.start_ns)
    assert session.attributes["gen_ai.conversation.id"] == conversation_ids.pop()
    assert len(chats) == len(turns)
    # One turn per prompt the user typed: a call with history whose current message carries no tool results
    # (the checkpoint call, without history, is a side call of the turn it serves).
    prompts = [e for e in turns if orjson.loads(e.request.body)["conversationState"].get("history")
               and not orjson.loads(e.request.body)["conversationState"]["currentMessage"]["userInputMessage"]
               .get("userInputMessageContext", {}).get("toolResults")]
    assert len(_by_name(spans, "invoke_agent ")) == len(prompts)
    for chat, exchange in zip(chats, turns, strict=True):
        frames = _frames(exchange.response.body)
        context = next(p["contextUsagePercentage"] for kind, p in frames if kind == "contextUsageEvent")
        assert chat.attributes["llm_gateway.kiro.context_usage_percentage"] == context
        assert "gen_ai.usage.input_tokens" not in chat.attributes  # Kiro 2.4.1 reports none: none invented
        no_history = not orjson.loads(exchange.request.body)["conversationState"].get("history")
        assert chat.attributes.get("llm_gateway.call.auxiliary", False) == no_history  # the checkpoint call
