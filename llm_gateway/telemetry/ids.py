"""Trace ids derived from the session key, so one conversation lands in one trace across gateway restarts and
across several gateway instances."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from opentelemetry.sdk.trace.id_generator import RandomIdGenerator

_forced_trace_id: ContextVar[int | None] = ContextVar("llm_gateway_forced_trace_id", default=None)


def session_trace_id(session_key: str) -> int:
    value = int.from_bytes(hashlib.blake2b(session_key.encode(), digest_size=16).digest(), "big")
    return value or 1  # 0 is the invalid trace id


class SessionIdGenerator(RandomIdGenerator):
    """Random ids, except a root span started inside `trace_id_for(...)` gets that trace id."""

    def generate_trace_id(self) -> int:
        forced = _forced_trace_id.get()
        return forced if forced is not None else super().generate_trace_id()


@contextmanager
def trace_id_for(trace_id: int) -> Iterator[None]:
    token = _forced_trace_id.set(trace_id)
    try:
        yield
    finally:
        _forced_trace_id.reset(token)
