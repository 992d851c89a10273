"""Trace context from outside (issue 16): TRACEPARENT in the gateway's environment parents every session; a
`traceparent` header on a model request is followed per LLM_GATEWAY_INCOMING_TRACEPARENT, and relayed unchanged."""

from __future__ import annotations

import anthropic
import orjson
import pytest

from llm_gateway.recordings import load
from tests.support import FIXTURES

CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"
TRACEPARENT = f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"
FIXTURE = load(FIXTURES / "anthropic/tool-runner-loop.json")


async def _one_call(gateway, headers=None) -> None:
    body = orjson.loads(FIXTURE.exchanges[0].request.body)
    client = anthropic.AsyncAnthropic(base_url=gateway.url, api_key="k", max_retries=0,
                                      default_headers=headers or {})
    async with client.beta.messages.stream(model=body["model"], max_tokens=body["max_tokens"],
                                           messages=body["messages"], tools=body["tools"]) as stream:
        await stream.get_final_message()


def _named(spans, prefix):
    return [s for s in spans if s.name.startswith(prefix)]


async def test_traceparent_in_the_environment_parents_every_session(traced_gateway, receiver):
    env = {"TRACEPARENT": TRACEPARENT, "TRACESTATE": "ci=1"}
    async with traced_gateway([FIXTURE], extra_env=env) as (gateway, _):
        await _one_call(gateway)
    spans = await receiver.wait_for(lambda s: bool(_named(s, "session ")))
    (session,) = _named(spans, "session ")
    assert session.parent_id == CALLER_SPAN
    assert {s.trace_id for s in spans} == {CALLER_TRACE}


async def test_traceparent_in_the_environment_parents_each_turn_when_traces_are_per_turn(traced_gateway, receiver):
    env = {"TRACEPARENT": TRACEPARENT, "LLM_GATEWAY_TRACE_PER": "turn"}
    async with traced_gateway([FIXTURE], extra_env=env) as (gateway, _):
        await _one_call(gateway)
    spans = await receiver.wait_for(lambda s: bool(_named(s, "invoke_agent ")))
    (turn,) = _named(spans, "invoke_agent ")
    assert turn.parent_id == CALLER_SPAN and {s.trace_id for s in spans} == {CALLER_TRACE}


@pytest.mark.parametrize("mode", ["child", "link", "ignore", None])
async def test_traceparent_header_on_a_model_request(traced_gateway, receiver, mode):
    env = {"LLM_GATEWAY_INCOMING_TRACEPARENT": mode} if mode else {}
    async with traced_gateway([FIXTURE], extra_env=env) as (gateway, _):
        await _one_call(gateway, {"traceparent": TRACEPARENT})
    spans = await receiver.wait_for(lambda s: bool(_named(s, "session ")))
    (chat,) = _named(spans, "chat ")
    (turn,) = _named(spans, "invoke_agent ")
    (session,) = _named(spans, "session ")
    assert session.trace_id != CALLER_TRACE and turn.parent_id == session.span_id  # the session keeps its trace
    if mode in ("child", None):  # the default
        assert (chat.trace_id, chat.parent_id) == (CALLER_TRACE, CALLER_SPAN)
        assert chat.links == [(turn.trace_id, turn.span_id)]
        (http,) = [s for s in spans if s.parent_id == chat.span_id]
        assert http.trace_id == CALLER_TRACE
    elif mode == "link":
        assert (chat.trace_id, chat.parent_id) == (turn.trace_id, turn.span_id)
        assert chat.links == [(CALLER_TRACE, CALLER_SPAN)]
    else:
        assert (chat.trace_id, chat.parent_id, chat.links) == (turn.trace_id, turn.span_id, [])
