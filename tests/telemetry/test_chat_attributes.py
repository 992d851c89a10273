"""Chat span attribute values (issue 14's value fixes), read straight from `chat_attributes` without a gateway."""

from __future__ import annotations

from types import SimpleNamespace

from opentelemetry.semconv._incubating.attributes import gen_ai_attributes as gen_ai

from llm_gateway.protocols.exchange import ChatRecord, ChatRequest
from llm_gateway.telemetry.chat_attributes import USAGE_CACHE_WRITE, cache_write_key, response_attributes

OLD = "gen_ai.usage.cache_creation.input_tokens"
NEW = "gen_ai.usage.cache_write.input_tokens"


def test_cache_writes_take_the_installed_releases_name() -> None:
    expected = getattr(gen_ai, "GEN_AI_USAGE_CACHE_WRITE_INPUT_TOKENS", OLD)
    assert expected == USAGE_CACHE_WRITE
    record = ChatRecord(ChatRequest(), input_tokens=10, output_tokens=2, cache_write=7)
    attrs = response_attributes(record, 0, None, None)
    assert attrs[expected] == 7
    assert {OLD, NEW} & attrs.keys() == {expected}  # one name, never both


def test_a_release_with_the_new_name_gets_it_over_the_deprecated_one() -> None:
    assert cache_write_key(SimpleNamespace(GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS=OLD)) == OLD
    both = SimpleNamespace(GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS=OLD, GEN_AI_USAGE_CACHE_WRITE_INPUT_TOKENS=NEW)
    assert cache_write_key(both) == NEW


def test_time_to_first_chunk_only_on_streamed_calls() -> None:
    streamed = ChatRecord(ChatRequest(stream=True), first_chunk_ns=1_500_000_000)
    whole = ChatRecord(ChatRequest(stream=False), first_chunk_ns=1_500_000_000)
    assert response_attributes(streamed, 1_000_000_000, None, None)[gen_ai.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK] == 0.5
    assert gen_ai.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK not in response_attributes(whole, 1_000_000_000, None, None)
