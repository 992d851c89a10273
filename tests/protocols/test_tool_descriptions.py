"""Offered tools' descriptions are kept whether or not content is captured (issue 14: execute_tool spans carry
`gen_ai.tool.description`), cut to `MAX_TOOL_DESCRIPTION` characters."""

from __future__ import annotations

from collections import Counter

import pytest

from llm_gateway.protocols.base import Adapter
from llm_gateway.protocols.exchange import MAX_TOOL_DESCRIPTION, tool_descriptions
from llm_gateway.protocols.run import ExchangeRun
from llm_gateway.recordings import Exchange
from tests.protocols.test_every_adapter import EXCHANGES
from tests.support.records import http_request


def _described(adapter: Adapter, exchange: Exchange) -> tuple[dict[str, str], dict[str, str]]:
    """(descriptions without capture, descriptions the captured tool definitions give)."""
    plain = ExchangeRun(adapter, http_request(exchange)).request
    captured = ExchangeRun(adapter, http_request(exchange), capture=True).request
    expected = {d["name"]: d["description"][:MAX_TOOL_DESCRIPTION] for d in captured.tool_definitions or []
                if d.get("description")}
    return plain.tool_descriptions, expected


@pytest.mark.parametrize(("adapter", "exchange"), EXCHANGES)
def test_recorded_tool_descriptions_are_kept_without_capture(adapter: Adapter, exchange: Exchange) -> None:
    kept, expected = _described(adapter, exchange)
    assert kept == expected


def test_every_adapter_has_a_recording_with_described_tools() -> None:
    described = Counter(param.id.partition("/")[0] for param in EXCHANGES if _described(*param.values)[1])
    assert set(described) >= {"anthropic", "bedrock", "gemini", "kiro", "ollama", "openai_chat", "openai_responses"}


def test_long_description_is_cut_and_nameless_or_undescribed_tools_are_left_out() -> None:
    tools = [{"name": "long", "description": "x" * 5000}, {"name": "bare"}, {"description": "no name"},
             {"name": "empty", "description": ""}, {"name": "ok", "description": "reads a file"}]
    assert tool_descriptions(tools) == {"long": "x" * MAX_TOOL_DESCRIPTION, "ok": "reads a file"}
