"""EVENT_ONLY / SPAN_AND_EVENT content capture (issue 14): each model call also gives a
`gen_ai.client.inference.operation.details` event (an OTLP log record) in its chat span's context, with the span's
attributes and the content as structured values; the span carries content only in the modes that name spans."""

from __future__ import annotations

import orjson
import pytest

from llm_gateway.recordings import Fixture, load
from llm_gateway.telemetry.content import CAPTURE_CONTENT_ENV, ContentCapture, content_capture
from tests.support import FIXTURES
from tests.support.chat_spans import CONTENT_ATTRIBUTES, chat_spans
from tests.support.exchanges import send_recorded
from tests.support.otlp import OTLPReceiver

EVENT = "gen_ai.client.inference.operation.details"


@pytest.mark.parametrize(
    ("value", "spans", "events"),
    [("", False, False), ("false", False, False), ("NO_CONTENT", False, False), ("true", True, False),
     ("SPAN_ONLY", True, False), ("EVENT_ONLY", False, True), ("span_and_event", True, True),
     ("bogus", False, False)],
)
def test_capture_modes(value: str, spans: bool, events: bool) -> None:
    mode = content_capture({CAPTURE_CONTENT_ENV: value})
    assert (mode.on_spans, mode.on_events, mode.captured) == (spans, events, spans or events)
    assert mode.captured is (mode is not ContentCapture.NO_CONTENT)


async def _one_call(traced_gateway, receiver: OTLPReceiver, mode: str):
    exchange = load(FIXTURES / "anthropic/tools-streaming.json").exchanges[0]
    env = {CAPTURE_CONTENT_ENV: mode, "OTEL_BLRP_SCHEDULE_DELAY": "50"}
    async with traced_gateway([Fixture([exchange], name="events")], extra_env=env) as (gateway, _):
        await send_recorded(gateway.url, exchange)
    (span,) = chat_spans(receiver.spans)  # gateway.stop() flushed spans and events
    return exchange, span


@pytest.mark.parametrize("mode", ["EVENT_ONLY", "SPAN_AND_EVENT"])
async def test_event_modes_emit_the_inference_details_event(traced_gateway, receiver: OTLPReceiver,
                                                            mode: str) -> None:
    exchange, span = await _one_call(traced_gateway, receiver, mode)
    (event,) = [log for log in receiver.logs if log.event_name == EVENT]
    assert (event.trace_id, event.span_id) == (span.trace_id, span.span_id)
    assert event.severity_number == 5  # DEBUG, as the conventions ask
    attrs = event.attributes
    for key in ("gen_ai.operation.name", "gen_ai.provider.name", "gen_ai.request.model", "gen_ai.response.id",
                "gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens", "gen_ai.response.finish_reasons"):
        assert attrs[key] == span.attributes[key], key
    request = orjson.loads(exchange.request.body)
    assert [m["role"] for m in attrs["gen_ai.input.messages"]] == [m["role"] for m in request["messages"]]
    assert [d["name"] for d in attrs["gen_ai.tool.definitions"]] == [t["name"] for t in request["tools"]]
    (output,) = attrs["gen_ai.output.messages"]  # structured, not JSON text
    assert output["role"] == "assistant" and output["finish_reason"] == "tool_call"
    on_span = set(CONTENT_ATTRIBUTES) & set(span.attributes)
    if mode == "EVENT_ONLY":
        assert not on_span
    else:
        assert orjson.loads(span.attributes["gen_ai.output.messages"]) == [output]


@pytest.mark.parametrize("mode", ["true", "SPAN_ONLY", ""])
async def test_span_modes_emit_no_event(traced_gateway, receiver: OTLPReceiver, mode: str) -> None:
    await _one_call(traced_gateway, receiver, mode)
    assert receiver.logs == []
