"""The gateway's side of MCP tracing: settings and routes for `--mcp NAME=URL`, the `/_gateway/mcp/calls`
endpoint, JSON answers over the HTTP relay (the npm server answers with SSE), and where spans are parented."""

from __future__ import annotations

import dataclasses

import httpx2
import orjson
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from llm_gateway.cli import _parser
from llm_gateway.config import ConfigError, Settings, load_settings
from llm_gateway.mcp.jsonrpc import CallStarted, Direction, McpCall
from llm_gateway.mcp.report import CALLS_PATH, PIPE, CallReport, from_json, to_json
from llm_gateway.routing import MCP_PROTOCOL, Router
from llm_gateway.telemetry.mcp_spans import McpSpans
from llm_gateway.telemetry.spans import SpanMaker
from tests.mcp.helpers import mcp_spans
from tests.support.otlp import OTLPReceiver
from tests.support.servers import RecordingUpstream, running_gateway, running_upstream

# --- settings, routes, command line ----------------------------------------------------------------------


def test_mcp_servers_from_environment_and_flags_flags_win():
    settings = load_settings({"LLM_GATEWAY_MCP_GITHUB": "https://env.example/mcp",
                              "LLM_GATEWAY_MCP_DOCS": "http://127.0.0.1:9000/mcp/"},
                             mcp_flags=["github=https://flag.example/mcp"])
    assert settings.mcp_upstreams == {"github": "https://flag.example/mcp", "docs": "http://127.0.0.1:9000/mcp"}
    assert settings.upstreams == {}  # LLM_GATEWAY_MCP_* never names a model upstream


@pytest.mark.parametrize("flag", ["github", "github=ftp://x", "=http://x", "github=http://x/mcp?key=1"])
def test_bad_mcp_flag_names_the_flag(flag):
    with pytest.raises(ConfigError, match="--mcp"):
        load_settings({}, mcp_flags=[flag])


@pytest.mark.parametrize(("path", "upstream"), [
    ("/mcp/github", "https://api.example/v1/mcp"),
    ("/mcp/GitHub/", "https://api.example/v1/mcp/"),
    ("/mcp/github?session=1", "https://api.example/v1/mcp?session=1"),
    ("/mcp/github/messages/x", "https://api.example/v1/mcp/messages/x"),
])
def test_mcp_path_routes_to_the_named_server_with_the_rest_of_the_path(path, upstream):
    route = Router(Settings(mcp_upstreams={"github": "https://api.example/v1/mcp"}), {}).resolve("POST", path, {})
    assert route.protocol.name == MCP_PROTOCOL and route.protocol.upstream == "github"
    assert route.upstream_url(path) == upstream


@pytest.mark.parametrize("path", ["/mcp/gitlab", "/mcp/githubx", "/mcpx/github"])
def test_other_paths_are_not_mcp_routes(path):
    router = Router(Settings(mcp_upstreams={"github": "https://api.example/mcp"}, catch_all="http://other"), {})
    assert router.resolve("POST", path, {}).protocol is None  # the catch-all


def test_serve_and_mcp_command_lines():
    args = _parser().parse_args(["serve", "--mcp", "a=http://x", "--mcp", "b=http://y"])
    assert args.mcp == ["a=http://x", "b=http://y"]
    args = _parser().parse_args(["mcp", "--name", "fs", "--", "npx", "-y", "server", "--name", "z"])
    assert (args.name, args.server_command) == ("fs", ["--", "npx", "-y", "server", "--name", "z"])


async def test_startup_lines_name_each_mcp_relay():
    settings = Settings(mcp_upstreams={"docs": "http://127.0.0.1:9/mcp"})
    async with running_gateway(settings) as gateway:
        assert f"{gateway.url}/mcp/docs" in gateway.describe()


# --- /_gateway/mcp/calls ---------------------------------------------------------------------------------

CALL = McpCall("tools/call", 3, Direction.CLIENT_TO_SERVER, 1_000, 2_000, target="echo", arguments={"m": "é"},
               protocol_version="2025-11-25", error_code=-32602, error_message="bad")
STARTED = CallStarted("tools/call", "a-1", Direction.SERVER_TO_CLIENT, 5, "echo", {"x": [1]})


def test_reports_round_trip_through_json():
    reports = [CallReport(CALL, "fs", PIPE, "sid"), CallReport(STARTED, None, PIPE)]
    assert from_json(to_json(reports)) == reports


@pytest.mark.parametrize("body", [b"nope", b"[1]", b'{"call": {"method": "x"}}', b'{"call": {"method": 1, '
                                  b'"request_id": 1, "direction": "client_to_server", "started_ns": 1, '
                                  b'"ended_ns": 2}}', b'{"call": {"method": "x", "request_id": [1], '
                                  b'"direction": "client_to_server", "started_ns": 1, "ended_ns": 2}}'])
def test_malformed_reports_are_refused_with_a_reason(body):
    with pytest.raises(ValueError, match=r"\w"):
        from_json(body)


async def test_calls_endpoint_answers(mcp_gateway, receiver: OTLPReceiver):
    async with mcp_gateway() as gateway, httpx2.AsyncClient(base_url=gateway.url) as http:
        accepted = await http.post(CALLS_PATH, content=to_json([CallReport(CALL, "fs", PIPE, "sid")]))
        refused = await http.post(CALLS_PATH, content=b"{not json")
        wrong_method = await http.get(CALLS_PATH)
        health = await http.get("/_gateway/health")
        (span,) = await receiver.wait_for(lambda s: bool(mcp_spans(s)))
    assert (accepted.status_code, refused.status_code, wrong_method.status_code) == (202, 400, 405)
    assert health.status_code == 200
    assert (span.name, span.start_ns, span.end_ns, span.parent_id) == ("tools/call echo", 1_000, 2_000, None)
    assert span.attributes["error.type"] == span.attributes["rpc.response.status_code"] == "-32602"
    assert span.status_message == "bad"


async def test_calls_endpoint_without_tracing_says_so():
    async with running_gateway() as gateway, httpx2.AsyncClient() as http:
        response = await http.post(gateway.url + CALLS_PATH, content=to_json([CallReport(CALL, "fs", PIPE)]))
    assert response.status_code == 503 and "OTEL" in response.json()["error"]


# --- JSON answers over the HTTP relay --------------------------------------------------------------------


async def test_http_relay_json_answers_and_error_statuses_become_spans(mcp_gateway, receiver: OTLPReceiver):
    batch_answer = [{"jsonrpc": "2.0", "id": 1, "result": {"tools": []}},
                    {"jsonrpc": "2.0", "id": 2, "result": {"content": [], "isError": True}}]
    ok = RecordingUpstream(headers=[("Content-Type", "application/json"), ("Mcp-Session-Id", "s-42")],
                           body=orjson.dumps(batch_answer))
    gone = RecordingUpstream(status=404, headers=[("Content-Type", "text/plain")], body=b"session expired")
    batch = [{"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
             {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "t", "arguments": {}}}]
    async with running_upstream(ok.handle) as ok_url, running_upstream(gone.handle) as gone_url:
        mcp = {"ok": ok_url + "/mcp", "gone": gone_url + "/mcp"}
        async with mcp_gateway(mcp=mcp) as gateway, httpx2.AsyncClient(base_url=gateway.url) as http:
            answer = await http.post("/mcp/ok", content=orjson.dumps(batch),
                                     headers={"Mcp-Session-Id": "s-42", "MCP-Protocol-Version": "2025-06-18"})
            expired = await http.post("/mcp/gone", json={"jsonrpc": "2.0", "id": 9, "method": "ping"},
                                      headers={"Mcp-Session-Id": "old"})
            spans = await receiver.wait_for(lambda s: len(mcp_spans(s)) == 3)
    assert orjson.loads(answer.content) == batch_answer and expired.status_code == 404
    assert ok.arrived[0].raw_path == "/mcp" and orjson.loads(ok.arrived[0].body) == batch
    by_name = {s.name: s for s in mcp_spans(spans)}
    assert by_name["tools/list"].attributes["mcp.session.id"] == "s-42"
    assert by_name["tools/list"].attributes["mcp.protocol.version"] == "2025-06-18"
    assert by_name["tools/call t"].attributes["error.type"] == "tool_error"
    assert by_name["ping"].attributes["error.type"] == "404"
    assert by_name["ping"].attributes["llm_gateway.mcp.server"] == "gone"


# --- where MCP spans are parented ------------------------------------------------------------------------


class _Sessions:
    """Stands in for SessionSpans: an execute_tool span that is open at first, then closed."""

    def __init__(self, spans: SpanMaker) -> None:
        self.tool_span = spans.start("execute_tool read_text_file", trace.SpanKind.INTERNAL, 1, {})
        self.open = True
        self.asked: list[tuple] = []

    def pending_tool_context(self, tool_name, arguments=None):
        self.asked.append((tool_name, arguments))
        return (self.tool_span.context, {"session.id": "s-1"}) if self.open else None


def _spans() -> tuple[SpanMaker, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    return SpanMaker(TracerProvider(), SimpleSpanProcessor(exporter), InstrumentationScope("test")), exporter


def test_parent_found_when_the_call_started_holds_after_the_tool_span_closed():
    maker, exporter = _spans()
    sessions = _Sessions(maker)
    spans = McpSpans(maker, {}, sessions)
    started = CallStarted("tools/call", 1, Direction.CLIENT_TO_SERVER, 10, "read_text_file", {"path": "a"})
    spans.record(CallReport(started, "fs", PIPE, "sid"))
    sessions.open = False  # the agent's next model request closed the execute_tool span before the report
    finished = McpCall("tools/call", 1, Direction.CLIENT_TO_SERVER, 10, 20, "read_text_file", {"path": "a"})
    spans.record(CallReport(finished, "fs", PIPE, "sid"))
    (span,) = exporter.get_finished_spans()
    assert span.parent.span_id == sessions.tool_span.context.span_id
    assert sessions.asked == [("read_text_file", {"path": "a"})]
    # the tool run is the execute_tool span above it: this one is its MCP leg, not a second run (issue 14)
    assert "gen_ai.operation.name" not in span.attributes
    assert span.attributes["gen_ai.tool.name"] == "read_text_file"


def test_only_tool_calls_look_for_a_parent_and_server_requests_are_client_spans_too():
    maker, exporter = _spans()
    sessions = _Sessions(maker)
    spans = McpSpans(maker, {}, sessions)
    prompt = McpCall("prompts/get", 1, Direction.CLIENT_TO_SERVER, 1, 2, target="read_text_file")
    sampling = McpCall("sampling/createMessage", 0, Direction.SERVER_TO_CLIENT, 1, 2, failure="connection_closed")
    spans.record(CallReport(prompt, "fs", PIPE))
    spans.record(CallReport(sampling, "fs", PIPE))
    by_name = {s.name: s for s in exporter.get_finished_spans()}
    assert by_name["prompts/get read_text_file"].parent is None and sessions.asked == []
    # the gateway records what it saw, a CLIENT span whichever side asked (issue 14)
    assert by_name["sampling/createMessage"].kind is trace.SpanKind.CLIENT
    assert by_name["sampling/createMessage"].attributes["llm_gateway.mcp.direction"] == "server_to_client"
    assert by_name["prompts/get read_text_file"].attributes["llm_gateway.mcp.direction"] == "client_to_server"
    assert by_name["sampling/createMessage"].attributes["error.type"] == "connection_closed"


def test_a_broken_report_never_raises():
    maker, _ = _spans()
    broken = dataclasses.replace(CALL, started_ns="soon")  # what a bad client could send past validation
    McpSpans(maker, {}).record(CallReport(broken, "fs", PIPE))


def test_the_tracing_addons_include_the_mcp_observer():
    """They run in the telemetry process, on the flows the relay sends there (tests/mcp/test_http_relay.py)."""
    from llm_gateway.addons import default_addons
    from llm_gateway.mcp.observer import McpObserver
    from llm_gateway.telemetry import configure

    telemetry = configure({}, local=True)
    assert telemetry is not None
    assert any(isinstance(a, McpObserver) for a in default_addons({}, tracing=telemetry, relaying=False))


def test_observer_frees_the_chunks_it_has_read_unless_an_addon_keeps_them():
    """A long-lived MCP GET stream must not hold every byte it ever relayed."""
    from llm_gateway.flow import Flow
    from llm_gateway.mcp.observer import McpObserver, _Exchange
    from llm_gateway.protocols.framing.sse import SSEDecoder

    for keep in (False, True):
        observer = McpObserver(lambda *a, **k: None, capture=False)
        flow = Flow.__new__(Flow)
        flow.chunks = [(1, b"event: message\ndata: {}\n\n"), (2, b": ping\n\n")]
        flow.keep_chunks = keep
        exchange = _Exchange.__new__(_Exchange)
        exchange.read, exchange.decoder, exchange.key = 0, SSEDecoder(), ("s", None)
        exchange.tracker = observer._tracker(exchange.key)
        observer._drain(flow, exchange)
        assert len(flow.chunks) == (2 if keep else 0)


def test_a_tool_call_with_no_tool_run_above_it_is_the_tool_execution():
    maker, exporter = _spans()
    call = McpCall("tools/call", 1, Direction.CLIENT_TO_SERVER, 10, 20, "read_text_file", {"path": "a"})
    McpSpans(maker, {}).record(CallReport(call, "fs", PIPE, "sid"))
    (span,) = exporter.get_finished_spans()
    assert span.parent is None and span.attributes["gen_ai.operation.name"] == "execute_tool"


def test_resource_uri_is_an_attribute_never_part_of_the_name():
    maker, exporter = _spans()
    read = McpCall("resources/read", 3, Direction.CLIENT_TO_SERVER, 1, 2, target="file:///home/u/notes.md")
    McpSpans(maker, {}).record(CallReport(read, "fs", PIPE, "sid"))
    (span,) = exporter.get_finished_spans()
    assert span.name == "resources/read"
    assert span.attributes["mcp.resource.uri"] == "file:///home/u/notes.md"


@pytest.mark.parametrize(("version", "has_session"), [("2025-06-18", True), ("2025-11-25", True), (None, True),
                                                      ("2026-07-28", False), ("2027-01-01", False)])
def test_session_id_only_on_revisions_that_have_sessions(version, has_session):
    """The 2026-07-28 revision removed MCP sessions: the conventions say mcp.session.id MUST NOT be set there."""
    maker, exporter = _spans()
    call = McpCall("tools/list", 4, Direction.CLIENT_TO_SERVER, 1, 2, protocol_version=version)
    McpSpans(maker, {}).record(CallReport(call, "fs", PIPE, "sid-1"))
    (span,) = exporter.get_finished_spans()
    assert ("mcp.session.id" in span.attributes) is has_session
