"""Ids derived from the session key, so one conversation lands in one trace across gateway restarts and across
several gateway instances, and a restarted gateway emits the session and turn spans that the spans exported before
a crash name as their parent (a turn is named by its agent and the ordinal of the prompt that opened it)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from opentelemetry.sdk.trace.id_generator import RandomIdGenerator

_forced_trace_id: ContextVar[int | None] = ContextVar("llm_gateway_forced_trace_id", default=None)
_forced_span_id: ContextVar[int | None] = ContextVar("llm_gateway_forced_span_id", default=None)


def session_trace_id(session_key: str) -> int:
    value = int.from_bytes(hashlib.blake2b(session_key.encode(), digest_size=16).digest(), "big")
    return value or 1  # 0 is the invalid trace id


def derived_span_id(*parts: str) -> int:
    """A span id that is a function of `parts` (the session key, and for a turn its agent and prompt ordinal)."""
    digest = hashlib.blake2b("\x1f".join(parts).encode(), digest_size=8, person=b"llmgw-span").digest()
    return int.from_bytes(digest, "big") or 1  # 0 is the invalid span id


class SessionIdGenerator(RandomIdGenerator):
    """Random ids, except a root span started inside `trace_id_for(...)` gets that trace id, and a span started
    inside `span_id_for(...)` that span id."""

    def generate_trace_id(self) -> int:
        forced = _forced_trace_id.get()
        return forced if forced is not None else super().generate_trace_id()

    def generate_span_id(self) -> int:
        forced = _forced_span_id.get()
        return forced if forced is not None else super().generate_span_id()


@contextmanager
def trace_id_for(trace_id: int) -> Iterator[None]:
    token = _forced_trace_id.set(trace_id)
    try:
        yield
    finally:
        _forced_trace_id.reset(token)


@contextmanager
def span_id_for(span_id: int | None) -> Iterator[None]:
    """Spans started inside get `span_id` (None: random ids as usual)."""
    token = _forced_span_id.set(span_id)
    try:
        yield
    finally:
        _forced_span_id.reset(token)
