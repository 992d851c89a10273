"""Output messages' finish reasons in the conventions' words (issue 14): every message has one, from the schema's
values, whatever the provider said; `gen_ai.response.finish_reasons` keeps the provider's words."""

from __future__ import annotations

import pytest

from llm_gateway.protocols import events as ev
from llm_gateway.protocols.exchange import ChatRequest, ExchangeBuilder
from llm_gateway.protocols.finish import message_finish_reason

SCHEMA_VALUES = {"stop", "length", "content_filter", "tool_call", "error"}


@pytest.mark.parametrize(
    ("reported", "tool_calls", "expected"),
    [
        ("stop", False, "stop"), ("tool_calls", True, "tool_call"), ("length", False, "length"),
        ("content_filter", False, "content_filter"), ("error", False, "error"),  # OpenAI Chat, OpenRouter
        ("end_turn", False, "stop"), ("tool_use", True, "tool_call"), ("max_tokens", False, "length"),
        ("refusal", False, "content_filter"), ("pause_turn", False, "stop"),  # Anthropic
        ("guardrail_intervened", False, "content_filter"), ("malformed_tool_use", False, "error"),  # Converse
        ("STOP", True, "tool_call"), ("MAX_TOKENS", False, "length"), ("SAFETY", False, "content_filter"),
        ("MALFORMED_FUNCTION_CALL", False, "error"), ("OTHER", False, "error"),  # Gemini
        ("completed", True, "tool_call"), ("max_output_tokens", False, "length"), ("failed", False, "error"),
        ("FINISH", False, "stop"),  # Titan on Bedrock
        ("load", False, "stop"),  # a reason the table does not know, on a call that went well
    ],
)
def test_reported_reason_maps_to_the_schemas(reported: str, tool_calls: bool, expected: str) -> None:
    assert message_finish_reason(reported, tool_calls=tool_calls, failed=False) == expected
    assert expected in SCHEMA_VALUES


@pytest.mark.parametrize(("tool_calls", "failed", "expected"),
                         [(False, False, "stop"), (True, False, "tool_call"), (True, True, "error")])
def test_no_reported_reason_still_gives_one(tool_calls: bool, failed: bool, expected: str) -> None:
    assert message_finish_reason(None, tool_calls=tool_calls, failed=failed) == expected


def test_every_output_message_carries_a_finish_reason() -> None:
    """Two choices: one finished with Gemini's SAFETY, one cut off before its reason came (a truncated stream)."""
    builder = ExchangeBuilder(ChatRequest(), 200, capture=True)
    builder.add(1, [ev.TextDelta("a", choice=0), ev.TextDelta("b", choice=1), ev.Finish("SAFETY", choice=0),
                    ev.Truncated("cut")])
    record = builder.finish(1)
    assert [m["finish_reason"] for m in record.output_messages or []] == ["content_filter", "error"]
    assert record.finish_reasons == ["SAFETY"]  # the provider's own words stay on the span
