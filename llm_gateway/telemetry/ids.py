"""Ids derived from the session key, so one conversation lands in one trace across gateway restarts and across
several gateway instances, and a restarted gateway emits the session and turn spans that the spans exported before
a crash name as their parent (a turn is named by its agent and the ordinal of the prompt that opened it)."""

from __future__ import annotations

import hashlib


def session_trace_id(session_key: str) -> int:
    value = int.from_bytes(hashlib.blake2b(session_key.encode(), digest_size=16).digest(), "big")
    return value or 1  # 0 is the invalid trace id


def derived_span_id(*parts: str) -> int:
    """A span id that is a function of `parts` (the session key, and for a turn its agent and prompt ordinal)."""
    digest = hashlib.blake2b("\x1f".join(parts).encode(), digest_size=8, person=b"llmgw-span").digest()
    return int.from_bytes(digest, "big") or 1  # 0 is the invalid span id
