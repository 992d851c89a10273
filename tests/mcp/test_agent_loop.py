"""One trace for an agent turn that uses an MCP tool: a model exchange asking for `mcp__fs__read_text_file` is
replayed through the gateway, the client calls that tool through `llm-gateway mcp`, and sends the result back
in the next request. The `tools/call` span sits under the turn's `execute_tool` span."""

from __future__ import annotations

import anthropic
import orjson
from mcp import Client
from mcp.client.stdio import StdioServerParameters

from llm_gateway.recordings import load
from tests.mcp.helpers import wrapper_command
from tests.support import FIXTURES
from tests.support.otlp import OTLPReceiver

FIXTURE = FIXTURES / "mcp/composed-anthropic-mcp-tool-loop.json"


async def test_mcp_tools_call_span_sits_under_the_agents_execute_tool_span(
    mcp_servers, mcp_gateway, receiver: OTLPReceiver, tmp_path
):
    fixture = load(FIXTURE)
    first = orjson.loads(fixture.exchanges[0].request.body)
    asked = next(b for b in orjson.loads(fixture.exchanges[0].response.body)["content"] if b["type"] == "tool_use")
    _, server, tool = asked["name"].split("__")  # Claude Code's mcp__<server>__<tool>
    root = tmp_path / "root"
    root.mkdir()
    (root / asked["input"]["path"]).write_text("remember the milk\n")

    async with mcp_gateway(fixtures=[fixture]) as gateway:
        model = anthropic.AsyncAnthropic(base_url=gateway.url, api_key="k", max_retries=0)
        common = {"model": first["model"], "max_tokens": first["max_tokens"], "system": first["system"],
                  "tools": first["tools"]}
        reply = await model.messages.create(messages=first["messages"], **common)
        (call,) = [b for b in reply.content if b.type == "tool_use"]

        command = wrapper_command([*mcp_servers.filesystem, str(root)], server)
        params = StdioServerParameters(command=command[0], args=command[1:], env={"LLM_GATEWAY_URL": gateway.url})
        async with Client(params, mode="legacy") as mcp:
            result = await mcp.call_tool(tool, call.input)
        assert result.content[0].text == "remember the milk\n"

        history = [*first["messages"],
                   {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in reply.content]},
                   {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id,
                                                 "content": [{"type": "text", "text": result.content[0].text}]}]}]
        await model.messages.create(messages=history, **common)
        spans = await receiver.wait_for(lambda s: any(x.name.startswith("execute_tool ") for x in s)
                                        and any(x.name == f"tools/call {tool}" for x in s))

    (turn,) = [s for s in spans if s.name.startswith("execute_tool ")]
    (mcp_call,) = [s for s in spans if s.name == f"tools/call {tool}"]
    assert turn.attributes["gen_ai.tool.call.id"] == asked["id"]
    assert turn.attributes["gen_ai.tool.name"] == asked["name"]
    assert mcp_call.trace_id == turn.trace_id
    assert mcp_call.parent_id == turn.span_id
    assert turn.start_ns <= mcp_call.start_ns <= mcp_call.end_ns <= turn.end_ns
    assert mcp_call.attributes["gen_ai.tool.name"] == tool
    assert mcp_call.attributes["llm_gateway.mcp.server"] == server
    assert mcp_call.kind == "CLIENT" and mcp_call.attributes["network.transport"] == "pipe"
    assert mcp_call.attributes["session.id"] == turn.attributes["session.id"]  # every span of the session
