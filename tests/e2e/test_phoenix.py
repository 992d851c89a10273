"""End to end on a real backend: a replayed multi-turn session through the gateway with a real SDK client,
spans exported over OTLP/HTTP to Arize Phoenix and read back through its REST API."""

from __future__ import annotations

import asyncio
import json
import urllib.request

import anthropic
import orjson
import pytest

from llm_gateway.config import Settings
from llm_gateway.recordings import load
from llm_gateway.recordings.replay import ReplayUpstream
from llm_gateway.routing import UPSTREAM_NAMES
from llm_gateway.server import Gateway
from tests.e2e.phoenix import Phoenix
from tests.support import FIXTURES

PROJECT = "llm-gateway-e2e"


@pytest.fixture(scope="module")
def phoenix(tmp_path_factory):
    server = Phoenix(tmp_path_factory.mktemp("phoenix")).start()
    yield server
    server.stop()


def _spans(phoenix: Phoenix) -> list[dict]:
    url = f"{phoenix.url}/v1/projects/{PROJECT}/spans?limit=100"
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return json.loads(response.read())["data"]
    except OSError:
        return []


async def test_session_trace_reads_back_from_phoenix(phoenix, monkeypatch):
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "50")
    fixture = load(FIXTURES / "anthropic/tool-runner-loop.json")
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": phoenix.url, "OTEL_SERVICE_NAME": "llm-gateway-e2e",
           "OTEL_METRICS_EXPORTER": "none",  # Phoenix takes traces only
           "OTEL_RESOURCE_ATTRIBUTES": f"openinference.project.name={PROJECT}"}
    async with ReplayUpstream([fixture]) as upstream:
        gateway = await Gateway.start(Settings(port=0, upstreams=dict.fromkeys(UPSTREAM_NAMES, upstream.url)), env)
        try:
            client = anthropic.AsyncAnthropic(base_url=gateway.url, api_key="k", max_retries=0,
                                              default_headers={"X-Claude-Code-Session-Id": "phoenix-e2e"})
            for exchange in fixture.exchanges:
                body = orjson.loads(exchange.request.body)
                async with client.beta.messages.stream(model=body["model"], max_tokens=body["max_tokens"],
                                                       messages=body["messages"], tools=body["tools"]) as stream:
                    await stream.get_final_message()
        finally:
            await gateway.stop()

    spans: list[dict] = []
    for _ in range(100):  # Phoenix ingests asynchronously
        spans = _spans(phoenix)
        if any(s["name"].startswith("session ") for s in spans):
            break
        await asyncio.sleep(0.2)
    by_name = {}
    for span in spans:
        by_name.setdefault(span["name"].split(" ")[0], []).append(span)
    (session,) = by_name["session"]
    (agent,) = by_name["invoke_agent"]
    chats = by_name["chat"]
    (tool,) = by_name["execute_tool"]
    assert len(chats) == 2
    ids = {s["context"]["trace_id"] for s in spans}
    assert len(ids) == 1
    assert agent["parent_id"] == session["context"]["span_id"]
    assert {c["parent_id"] for c in chats} == {agent["context"]["span_id"]}
    assert tool["parent_id"] == agent["context"]["span_id"]
    for chat, exchange in zip(sorted(chats, key=lambda s: s["start_time"]), fixture.exchanges, strict=True):
        events = [orjson.loads(x[5:]) for x in exchange.response.body.splitlines() if x.startswith(b"data:")]
        start = next(e for e in events if e["type"] == "message_start")["message"]
        last = [e for e in events if e["type"] == "message_delta"][-1]
        assert chat["attributes"]["gen_ai.usage.output_tokens"] == last["usage"]["output_tokens"]
        assert chat["attributes"]["gen_ai.response.id"] == start["id"]
        assert chat["attributes"]["gen_ai.conversation.id"] == "phoenix-e2e"
    assert session["attributes"]["gen_ai.conversation.id"] == "phoenix-e2e"
