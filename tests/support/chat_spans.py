"""Helpers shared by the `test_chat_spans_*` end-to-end tests (no tests here): replaying a recording's turns with
a client through the traced gateway, reading recorded bodies the simple way (SSE `data:` JSON, AWS event-stream
frames, NDJSON lines), picking chat spans out of what the OTLP receiver got, and the assertions every chat span
gets."""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable, Iterable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import orjson
from botocore.eventstream import EventStreamBuffer

from llm_gateway.recordings import Exchange, Fixture
from llm_gateway.server import Gateway
from tests.support.otlp import OTLPReceiver, ReceivedSpan

#: `gen_ai.operation.name` of a model call span (other spans carry invoke_agent / execute_tool)
CALL_OPERATIONS = frozenset({"chat", "generate_content", "text_completion"})
#: the content attributes that only content capture may put on a span
CONTENT_ATTRIBUTES = ("gen_ai.input.messages", "gen_ai.output.messages", "gen_ai.system_instructions",
                      "gen_ai.tool.definitions", "gen_ai.tool.call.arguments", "gen_ai.tool.call.result")


# ------------------------------------------------------------------------------------------ replaying turns


@dataclass(frozen=True, slots=True)
class Replayed:
    """What replaying a recording's turns gave: the client's result per turn and every span exported."""

    upstream_url: str
    results: list[Any]
    spans: list[ReceivedSpan]

    @property
    def chats(self) -> list[ReceivedSpan]:
        return chat_spans(self.spans)


async def replay_turns(
    traced_gateway: Callable[..., Any],
    receiver: OTLPReceiver,
    fixture: Fixture,
    client_for: Callable[[Gateway], Any],
    turn: Callable[[Any, Exchange], Awaitable[Any]],
    *,
    capture: bool = False,
    turns: int | None = None,
) -> Replayed:
    """Send the first `turns` (default: all) recorded requests, one `turn(client, exchange)` each, through a traced
    gateway replaying `fixture`; returns once the session span (exported last, at gateway stop) arrived. A client
    that is an async context manager is closed before the gateway stops."""
    async with traced_gateway([fixture], capture=capture) as (gateway, upstream), AsyncExitStack() as stack:
        client = client_for(gateway)
        if hasattr(client, "__aenter__"):
            client = await stack.enter_async_context(client)
        results = [await turn(client, exchange) for exchange in fixture.exchanges[:turns]]
    spans = await receiver.wait_for(lambda s: bool(spans_named(s, "session ")))
    return Replayed(upstream.url, results, spans)


# ------------------------------------------------------------------------------------------ recorded bodies


def sse_json(body: bytes) -> list[dict[str, Any]]:
    """The JSON payloads of an SSE body's `data:` lines, `[DONE]` left out."""
    payloads = [line[5:].strip() for line in body.splitlines() if line.startswith(b"data:")]
    return [orjson.loads(p) for p in payloads if p != b"[DONE]"]


def ndjson(body: bytes) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in body.splitlines() if line.strip()]


def event_frames(body: bytes) -> list[tuple[str, dict[str, Any]]]:
    """(`:event-type`, JSON payload) of each AWS event-stream frame, decoded by botocore."""
    buffer = EventStreamBuffer()
    buffer.add_data(body)
    return [(str(m.headers[":event-type"]), orjson.loads(m.payload)) for m in buffer]


def invoke_chunks(body: bytes) -> list[dict[str, Any]]:
    """The native model JSON inside InvokeModel stream `chunk` frames (`{"bytes": base64}`)."""
    return [orjson.loads(base64.b64decode(p["bytes"])) for kind, p in event_frames(body) if kind == "chunk"]


def anthropic_usage(events: Iterable[dict[str, Any]]) -> dict[str, int]:
    """message_start usage overlaid by each message_delta's non-null fields (they are cumulative)."""
    usage: dict[str, int] = {}
    for e in events:
        if e["type"] == "message_start":
            usage.update(e["message"]["usage"])
        elif e["type"] == "message_delta":
            usage.update({k: v for k, v in e["usage"].items() if v is not None})
    return usage


# ------------------------------------------------------------------------------------------ spans


def chat_spans(spans: Iterable[ReceivedSpan]) -> list[ReceivedSpan]:
    """The model call spans, in start order."""
    calls = [s for s in spans if s.attributes.get("gen_ai.operation.name") in CALL_OPERATIONS]
    return sorted(calls, key=lambda s: s.start_ns)


def spans_named(spans: Iterable[ReceivedSpan], prefix: str) -> list[ReceivedSpan]:
    return sorted((s for s in spans if s.name.startswith(prefix)), key=lambda s: s.start_ns)


def assert_call_span(span: ReceivedSpan, *, upstream_url: str, expected: dict[str, Any]) -> None:
    """The attributes every chat span has, and `expected` (attribute -> value; None means absent)."""
    parts = urlsplit(upstream_url)
    attrs = span.attributes
    assert span.kind == "CLIENT"
    assert span.name == f"{attrs['gen_ai.operation.name']} {attrs['gen_ai.request.model']}"
    assert attrs["server.address"] == parts.hostname
    assert attrs["server.port"] == parts.port
    assert "error.type" not in attrs and "llm_gateway.parse_error" not in attrs and span.status_code == 0
    if attrs["gen_ai.request.stream"]:
        assert 0 < attrs["gen_ai.response.time_to_first_chunk"] <= span.duration_s
    else:  # a whole answer has no first chunk (issue 14)
        assert "gen_ai.response.time_to_first_chunk" not in attrs
    assert {key: attrs.get(key) for key in expected} == expected


def assert_no_content_nor_secret(spans: Iterable[ReceivedSpan], *secrets: str) -> None:
    """Capture off: no content attribute on any span, and the credentials the client sent nowhere."""
    for span in spans:
        assert not set(CONTENT_ATTRIBUTES) & set(span.attributes), span.name
        values = [str(v) for v in (*span.attributes.values(), *span.resource.values())]
        assert not [s for s in secrets if any(s in v for v in values)], span.name


def assert_loop_trace(spans: list[ReceivedSpan], calls: list[tuple[str | None, str]], answered: set[str],
                      *secrets: str) -> None:
    """A tool loop with capture off: one trace, session > invoke_agent > chats and tools, no content and no
    credential anywhere, and one execute_tool span per recorded (call id, name): "ok" when a later recorded request
    answered it (by id; by name for id-less calls), else "no_result" (the session ended first)."""
    (agent,) = spans_named(spans, "invoke_agent ")
    assert len({s.trace_id for s in spans}) == 1
    tools = spans_named(spans, "execute_tool ")
    for span in chat_spans(spans) + tools:
        assert span.parent_id == agent.span_id, span.name
    assert_no_content_nor_secret(spans, *secrets)
    got = [(t.attributes.get("gen_ai.tool.call.id"), t.attributes["gen_ai.tool.name"],
            t.attributes["llm_gateway.tool.outcome"]) for t in tools]
    want = [(call_id, name, "ok" if (call_id or name) in answered else "no_result") for call_id, name in calls]
    got.sort(key=str)
    want.sort(key=str)
    assert got == want
    assert all(t.name == f"execute_tool {t.attributes['gen_ai.tool.name']}" for t in tools)


def json_attribute(span: ReceivedSpan, key: str) -> Any:
    return orjson.loads(span.attributes[key])
