"""Real stdio MCP servers driven by the official `mcp` SDK client through `llm-gateway mcp`: the bytes on both
sides of the wrapper are the same, and each call becomes one span (through a running gateway, or exported by
the wrapper itself when no gateway takes it)."""

from __future__ import annotations

import orjson
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError

from tests.mcp.conftest import McpServers, otel_env
from tests.mcp.helpers import Taps, expected_calls, mcp_spans, messages, tapped
from tests.support.otlp import OTLPReceiver
from tests.support.servers import closed_port_url


async def _filesystem_session(mcp_servers: McpServers, tmp_path, env: dict[str, str]) -> Taps:
    root = tmp_path / "root"
    root.mkdir()
    (root / "notes.txt").write_text("hello from the MCP test\n")
    taps = Taps(tmp_path)
    async with Client(tapped([*mcp_servers.filesystem, str(root)], taps, "fs", env), mode="legacy") as client:
        await client.list_tools()
        ok = await client.call_tool("read_text_file", {"path": "notes.txt"})
        missing = await client.call_tool("read_text_file", {"path": "absent.txt"})
        with pytest.raises(MCPError):
            await client.read_resource("file:///etc/hostname")  # this server has no resources
    assert not ok.is_error and missing.is_error
    return taps


def _assert_one_span_per_call(spans, taps: Taps, server: str) -> list:
    expected = expected_calls(taps.read("server_got"), taps.read("server_sent"))
    got = sorted(mcp_spans(spans), key=lambda s: int(s.attributes["jsonrpc.request.id"]))
    assert [(s.name, s.attributes["jsonrpc.request.id"], s.attributes.get("error.type")) for s in got] == [
        (e.name, e.request_id, e.error_type) for e in expected
    ]
    initialize = next(e for e in expected if e.request["method"] == "initialize")
    version = initialize.response["result"]["protocolVersion"]
    for span, call in zip(got, expected, strict=True):
        assert span.kind == "CLIENT"
        assert span.attributes["mcp.method.name"] == call.request["method"]
        assert span.attributes["mcp.protocol.version"] == version
        assert span.attributes["network.transport"] == "pipe"
        assert span.attributes["llm_gateway.mcp.server"] == server
        assert span.start_ns <= span.end_ns
        assert (span.status_code == 2) == (call.error_type is not None)
        if call.request["method"] == "tools/call":
            assert span.attributes["gen_ai.operation.name"] == "execute_tool"
            assert span.attributes["gen_ai.tool.name"] == call.request["params"]["name"]
    assert len({s.attributes["mcp.session.id"] for s in got}) == 1
    return got


async def test_filesystem_server_through_gateway_bytes_unchanged_one_span_per_call(
    mcp_servers, mcp_gateway, receiver: OTLPReceiver, tmp_path
):
    async with mcp_gateway() as gateway:
        taps = await _filesystem_session(mcp_servers, tmp_path, {"LLM_GATEWAY_URL": gateway.url})
        expected = expected_calls(taps.read("server_got"), taps.read("server_sent"))
        await receiver.wait_for(lambda s: len(mcp_spans(s)) == len(expected))
    assert taps.read("client_sent") == taps.read("server_got")
    assert taps.read("client_got") == taps.read("server_sent")
    got = _assert_one_span_per_call(receiver.spans, taps, "fs")
    assert all("gen_ai.tool.call.arguments" not in s.attributes for s in got)  # content capture is off
    assert {s.resource.get("service.name") for s in got} == {"llm-gateway-test"}  # the gateway exported them


async def test_filesystem_server_with_capture_records_arguments_and_results(
    mcp_servers, mcp_gateway, receiver: OTLPReceiver, tmp_path
):
    async with mcp_gateway(capture=True) as gateway:
        env = {"LLM_GATEWAY_URL": gateway.url, "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "true"}
        taps = await _filesystem_session(mcp_servers, tmp_path, env)
        tool_calls = [e for e in expected_calls(taps.read("server_got"), taps.read("server_sent"))
                      if e.request["method"] == "tools/call"]
        spans = await receiver.wait_for(lambda s: len([x for x in s if x.name.startswith("tools/call")]) == 2)
    by_id = {s.attributes["jsonrpc.request.id"]: s for s in mcp_spans(spans)}
    for call in tool_calls:
        span = by_id[call.request_id]
        assert orjson.loads(span.attributes["gen_ai.tool.call.arguments"]) == call.request["params"]["arguments"]
        assert orjson.loads(span.attributes["gen_ai.tool.call.result"]) == call.response["result"]


async def test_no_gateway_wrapper_exports_root_spans_itself(mcp_servers, receiver: OTLPReceiver, tmp_path):
    env = {"LLM_GATEWAY_URL": closed_port_url(), **otel_env(receiver)}
    env["OTEL_SERVICE_NAME"] = "wrapper-itself"
    taps = await _filesystem_session(mcp_servers, tmp_path, env)
    expected = expected_calls(taps.read("server_got"), taps.read("server_sent"))
    await receiver.wait_for(lambda s: len(mcp_spans(s)) == len(expected))
    got = _assert_one_span_per_call(receiver.spans, taps, "fs")
    assert all(s.parent_id is None and s.attributes["mcp.session.id"] for s in got)
    assert {s.resource.get("service.name") for s in got} == {"wrapper-itself"}
    assert taps.read("client_got") == taps.read("server_sent")


async def test_gateway_without_tracing_wrapper_exports_itself(mcp_servers, receiver: OTLPReceiver, tmp_path):
    from tests.support.servers import running_gateway

    async with running_gateway() as gateway:  # no OTEL_* in its environment: it answers 503
        env = {"LLM_GATEWAY_URL": gateway.url, **otel_env(receiver)}
        taps = await _filesystem_session(mcp_servers, tmp_path, env)
    expected = expected_calls(taps.read("server_got"), taps.read("server_sent"))
    await receiver.wait_for(lambda s: len(mcp_spans(s)) == len(expected))
    _assert_one_span_per_call(receiver.spans, taps, "fs")


async def test_everything_server_stdio_server_to_client_requests_are_paired(
    mcp_servers, mcp_gateway, receiver: OTLPReceiver, tmp_path
):
    import mcp_types as types

    async def sampling(context, params):
        return types.CreateMessageResult(role="assistant", content=types.TextContent(type="text", text="sampled"),
                                         model="test-model")

    async def roots(context):
        return types.ListRootsResult(roots=[types.Root(uri=f"file://{tmp_path}", name="tmp")])

    taps = Taps(tmp_path)
    async with mcp_gateway() as gateway:
        params = tapped([*mcp_servers.everything, "stdio"], taps, None, {"LLM_GATEWAY_URL": gateway.url})
        async with Client(params, mode="legacy", sampling_callback=sampling, list_roots_callback=roots) as client:
            result = await client.call_tool("trigger-sampling-request", {"prompt": "hi", "maxTokens": 5})
            await client.call_tool("echo", {"message": "x" * 200_000})  # a large message, both ways
        assert "sampled" in str(result.content)
        from_client = expected_calls(taps.read("server_got"), taps.read("server_sent"))
        from_server = expected_calls(taps.read("server_sent"), taps.read("server_got"))
        # The server may ask something the closing client never answers: that call fails at the wrapper's exit.
        answered = {e.request_id for e in from_server}
        unanswered = [m for m in messages(taps.read("server_sent")) if "method" in m and "id" in m
                      and str(m["id"]) not in answered]
        total = len(from_client) + len(from_server) + len(unanswered)
        await receiver.wait_for(lambda s: len(mcp_spans(s)) == total)
    assert taps.read("client_got") == taps.read("server_sent")
    assert taps.read("client_sent") == taps.read("server_got")
    assert {e.request["method"] for e in from_server} >= {"sampling/createMessage"}
    spans = mcp_spans(receiver.spans)
    assert {s.kind for s in spans} == {"CLIENT"}  # whichever side asked (issue 14)
    served = sorted((s.name, s.attributes["jsonrpc.request.id"], s.attributes.get("error.type"))
                    for s in spans if s.attributes["llm_gateway.mcp.direction"] == "server_to_client")
    assert served == sorted([(e.name, e.request_id, e.error_type) for e in from_server]
                            + [(m["method"], str(m["id"]), "connection_closed") for m in unanswered])
    initialize = next(m for m in messages(taps.read("server_sent")) if "serverInfo" in (m.get("result") or {}))
    assert {s.attributes["llm_gateway.mcp.server"] for s in spans} == {initialize["result"]["serverInfo"]["name"]}
