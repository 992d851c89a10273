"""Captured messages hold the parts the conventions' JSON schemas define (issue 14): a blob has its modality and
content, a file its modality and id, a uri its modality and URI; every output message has a finish reason from the
schema's values. Checked over every recorded exchange of every adapter, and over the media shapes no recording has.
"""

from __future__ import annotations

from typing import Any

import pytest

from llm_gateway.protocols import openai_chat
from llm_gateway.protocols.base import Adapter
from llm_gateway.recordings import Exchange
from tests.protocols.test_every_adapter import EXCHANGES
from tests.protocols.test_openai_chat import http
from tests.support.records import run_exchange

FINISH_REASONS = {"stop", "length", "content_filter", "tool_call", "error"}
#: part type -> the fields its schema definition requires beside `type` (string-valued unless listed below)
REQUIRED = {
    "text": ("content",), "reasoning": ("content",), "tool_call": ("name",), "tool_call_response": ("response",),
    "blob": ("modality", "content"), "file": ("modality", "file_id"), "uri": ("modality", "uri"),
}
_ANY_VALUE = {"response"}


def part_problems(part: dict[str, Any]) -> list[str]:
    ptype = part.get("type")
    if not isinstance(ptype, str):
        return [f"part without a type: {part}"]
    return [f"{ptype} part without a {field}: {part}" for field in REQUIRED.get(ptype, ())
            if field not in part or (field not in _ANY_VALUE and not isinstance(part[field], str))]


def message_problems(messages: list[dict[str, Any]] | None, output: bool) -> list[str]:
    problems = []
    for message in messages or []:
        if not isinstance(message.get("role"), str) or not isinstance(message.get("parts"), list):
            problems.append(f"message without role or parts: {message}")
            continue
        if output and message.get("finish_reason") not in FINISH_REASONS:
            problems.append(f"output message finish_reason {message.get('finish_reason')!r}")
        problems += [p for part in message["parts"] for p in part_problems(part)]
    return problems


@pytest.mark.parametrize(("adapter", "exchange"), EXCHANGES)
def test_recorded_exchange_gives_schema_shaped_messages(adapter: Adapter, exchange: Exchange) -> None:
    record = run_exchange(adapter, exchange, capture=True)
    problems = message_problems(record.request.input_messages, False) + message_problems(record.output_messages, True)
    problems += [p for part in record.request.system_instructions or [] for p in part_problems(part)]
    assert problems == []


@pytest.mark.parametrize(
    ("part", "expected"),
    [
        ({"type": "file", "file": {"file_id": "file-1"}},
         {"type": "file", "file_id": "file-1", "modality": "document"}),
        ({"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBERi0="}},
         {"type": "blob", "modality": "document", "content": "JVBERi0=", "mime_type": "application/pdf"}),
        ({"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}},
         {"type": "blob", "modality": "audio", "content": "UklGRg==", "mime_type": "audio/wav"}),
        ({"type": "image_url", "image_url": {"url": "data:image/svg+xml,%3Csvg%2F%3E"}},  # not base64 as sent
         {"type": "blob", "modality": "image", "content": "PHN2Zy8+", "mime_type": "image/svg+xml"}),
    ],
)
def test_chat_media_parts_have_what_their_schema_requires(part: dict[str, Any], expected: dict[str, Any]) -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": [part]}]}
    request = openai_chat.ADAPTER.parse_request(http("/v1/chat/completions", body, ""), capture=True)
    (message,) = request.input_messages or []
    assert message["parts"] == [expected]
    assert message_problems([message], False) == []
