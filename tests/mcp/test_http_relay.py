"""`serve --mcp NAME=URL`: the official client talks streamable HTTP to @modelcontextprotocol/server-everything
through `/mcp/NAME` (POST with JSON or SSE answers, the GET stream, DELETE); it gets what a direct session
gets, and each call becomes one span with `network.transport = tcp` and the session's `Mcp-Session-Id`."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import httpx2
import mcp_types as types
import orjson
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.exceptions import MCPError

from tests.mcp.conftest import McpServers
from tests.mcp.helpers import mcp_spans
from tests.support.otlp import OTLPReceiver
from tests.support.servers import closed_port_url

SECRET = "Bearer s3cret-token-never-on-spans"


@asynccontextmanager
async def everything_http(mcp_servers: McpServers) -> AsyncIterator[str]:
    """server-everything's streamable HTTP transport on a free port; yields its /mcp URL."""
    port = closed_port_url().rsplit(":", 1)[1]
    process = await asyncio.create_subprocess_exec(
        *mcp_servers.everything, "streamableHttp", env={**os.environ, "PORT": port},
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(15):
            while b"listening" not in (line := await process.stderr.readline()):
                assert line, "server-everything exited before it listened"
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        process.terminate()
        with contextlib.suppress(ProcessLookupError):
            await process.wait()


@dataclass
class Seen:
    """What went over the client's HTTP connection: responses, the JSON-RPC messages it POSTed, the server's
    requests its callbacks answered."""

    responses: list[httpx2.Response] = field(default_factory=list)
    posted: list[dict] = field(default_factory=list)
    answered: list[str] = field(default_factory=list)

    def client_requests(self) -> list[dict]:
        return [m for m in self.posted if "method" in m and "id" in m]


async def _sampling(context, params) -> types.CreateMessageResult:
    return types.CreateMessageResult(role="assistant", content=types.TextContent(type="text", text="sampled"),
                                     model="test-model")


async def _roots(context) -> types.ListRootsResult:
    return types.ListRootsResult(roots=[types.Root(uri="file:///tmp/mcp-roots", name="roots")])


async def _session(url: str, seen: Seen) -> dict[str, object]:
    """The same calls against `url`; returns what the client got, comparable across sessions."""

    async def keep(response: httpx2.Response) -> None:
        seen.responses.append(response)

    async def posted(request: httpx2.Request) -> None:
        if request.method == "POST":
            doc = orjson.loads(request.content)
            seen.posted += doc if isinstance(doc, list) else [doc]

    async def sampling(context, params):
        seen.answered.append("sampling/createMessage")
        return await _sampling(context, params)

    async def roots(context):
        seen.answered.append("roots/list")
        return await _roots(context)

    http = create_mcp_http_client(headers={"Authorization": SECRET})
    http.event_hooks["response"].append(keep)
    http.event_hooks["request"].append(posted)
    got: dict[str, object] = {}
    async with http, Client(streamable_http_client(url, http_client=http), mode="legacy",
                            sampling_callback=sampling, list_roots_callback=roots) as client:
        await asyncio.sleep(0.5)  # the server asks for roots 350 ms after initialize, on the GET stream
        got["roots"] = (await client.call_tool("get-roots-list", {})).model_dump()
        got["tools"] = sorted(t.name for t in (await client.list_tools()).tools)
        got["echo"] = (await client.call_tool("echo", {"message": "über relay"})).model_dump()
        got["sum"] = (await client.call_tool("get-sum", {"a": 2, "b": 40})).model_dump()
        got["bad_sum"] = (await client.call_tool("get-sum", {"a": 2, "b": "x"})).model_dump()
        got["prompt"] = (await client.get_prompt("simple-prompt")).model_dump()
        got["sampling"] = (await client.call_tool("trigger-sampling-request", {"prompt": "hi"})).model_dump()
        with pytest.raises(MCPError) as missing:
            await client.read_resource("demo://resource/static/document/absent.md")
        got["missing_resource"] = missing.value.error.code
    return got


async def test_everything_over_http_relay_same_answers_and_one_span_per_call(
    mcp_servers, mcp_gateway, receiver: OTLPReceiver
):
    async with everything_http(mcp_servers) as upstream:
        direct = await _session(upstream, Seen())
        async with mcp_gateway(mcp={"everything": upstream}) as gateway:
            seen = Seen()
            relayed = await _session(f"{gateway.url}/mcp/everything", seen)
            await receiver.wait_for(lambda s: any(x.name == "tools/call trigger-sampling-request"
                                                  for x in mcp_spans(s)))
    assert relayed == direct
    methods = {(r.request.method, r.status_code, r.headers.get("content-type", "").split(";")[0])
               for r in seen.responses}
    assert {("POST", 200, "text/event-stream"), ("GET", 200, "text/event-stream")} <= methods
    assert any(r.request.method == "DELETE" and r.status_code == 200 for r in seen.responses)
    session_ids = {r.headers["mcp-session-id"] for r in seen.responses if "mcp-session-id" in r.headers}
    assert len(session_ids) == 1  # the upstream's own id, passed through

    spans = mcp_spans(receiver.spans)
    by_name = {s.name: s for s in spans}
    requests = seen.client_requests()
    # a tool's or prompt's name in the span name, never a resource URI (issue 14)
    targets = [(m.get("params") or {}).get("name") if m["method"] in ("tools/call", "prompts/get") else None
               for m in requests]
    expected = [f"{m['method']} {t}" if t else m["method"] for m, t in zip(requests, targets, strict=True)]
    # One span per request the client POSTed, and per request of the server that the client answered; all are
    # CLIENT spans (issue 14), their direction an attribute.
    assert {s.kind for s in spans} == {"CLIENT"}
    sent = [s for s in spans if s.attributes["llm_gateway.mcp.direction"] == "client_to_server"]
    asked = [s for s in spans if s.attributes["llm_gateway.mcp.direction"] == "server_to_client"]
    assert sorted(s.name for s in sent) == sorted(expected)
    assert sorted(s.name for s in asked) == sorted(seen.answered)
    assert sorted(s.attributes["jsonrpc.request.id"] for s in sent) == sorted(str(m["id"]) for m in requests)
    assert {s.attributes["mcp.session.id"] for s in spans} == session_ids
    assert all(s.attributes["network.transport"] == "tcp" for s in spans)
    assert all(s.attributes["llm_gateway.mcp.server"] == "everything" for s in spans)
    assert not any(SECRET in str(v) or "s3cret" in str(v) for s in receiver.spans for v in s.attributes.values())
    tool_names = [s.attributes.get("gen_ai.tool.name") for s in spans if s.name.startswith("tools/call ")]
    assert sorted(tool_names) == sorted(["get-roots-list", "echo", "get-sum", "get-sum", "trigger-sampling-request"])
    sums = [s for s in spans if s.name == "tools/call get-sum"]
    assert sorted(str(s.attributes.get("error.type")) for s in sums) == ["None", "tool_error"]
    (resource,) = [s for s in spans if s.attributes.get("mcp.resource.uri") == "demo://resource/static/document/absent.md"]
    assert resource.name == "resources/read"
    assert resource.attributes["error.type"] == str(relayed["missing_resource"])
    assert resource.status_code == 2
    sampling = by_name["sampling/createMessage"]
    caller = by_name["tools/call trigger-sampling-request"]
    assert sampling.attributes["llm_gateway.mcp.direction"] == "server_to_client"
    assert caller.start_ns <= sampling.start_ns <= sampling.end_ns <= caller.end_ns  # asked while the call ran
    roots = by_name["roots/list"]  # asked by the server on its GET stream, answered on a POST
    assert roots.attributes["llm_gateway.mcp.direction"] == "server_to_client" and "error.type" not in roots.attributes
    assert "file:///tmp/mcp-roots" in str(relayed["roots"])
    versions = {s.attributes.get("mcp.protocol.version") for s in spans}
    assert len(versions) == 1 and None not in versions


async def test_http_relay_unknown_mcp_name_is_not_relayed(mcp_gateway):
    async with mcp_gateway(mcp={"known": closed_port_url() + "/mcp"}) as gateway, httpx2.AsyncClient() as http:
        response = await http.post(f"{gateway.url}/mcp/unknown", json={"jsonrpc": "2.0", "id": 1, "method": "ping"})
    assert response.status_code == 404


async def test_http_relay_upstream_down_call_span_marks_the_failure(mcp_gateway, receiver: OTLPReceiver):
    async with mcp_gateway(mcp={"down": closed_port_url() + "/mcp"}) as gateway, httpx2.AsyncClient() as http:
        response = await http.post(f"{gateway.url}/mcp/down",
                                   json={"jsonrpc": "2.0", "id": 7, "method": "tools/call",
                                         "params": {"name": "echo", "arguments": {}}})
        (span,) = mcp_spans(await receiver.wait_for(lambda s: bool(mcp_spans(s))))
    assert response.status_code == 502
    assert span.name == "tools/call echo"
    assert span.attributes["error.type"] == response.json()["error"]["type"]
    assert span.attributes["jsonrpc.request.id"] == "7"
