"""What the adapters share when they read a response: streamed or not, the response's identity, and token
counts in the conventions' terms (cached input counts as input; only what was reported, never a zero)."""

from __future__ import annotations

from typing import Any

from llm_gateway.protocols import events as ev
from llm_gateway.protocols._json import text
from llm_gateway.protocols.base import HttpResponseHead
from llm_gateway.protocols.exchange import ChatRequest


def is_streamed(request: ChatRequest, head: HttpResponseHead, stream_type: str = "text/event-stream") -> bool:
    """The response's content type decides (`stream_type` streams, JSON does not); without either, what the
    request asked for."""
    ctype = head.headers.get("content-type", "").lower()
    if stream_type in ctype:
        return True
    if "json" in ctype:
        return False
    return request.stream


class Identity:
    """Emits `ResponseStart` only when the id or model changes (every chat chunk repeats both)."""

    __slots__ = ("_seen",)

    def __init__(self) -> None:
        self._seen: tuple[str | None, str | None] = (None, None)

    def update(self, response_id: Any, model: Any) -> list[ev.Event]:
        # empty strings count as absent: Azure's first chunk carries id "" and model ""
        rid, name = text(response_id) or None, text(model) or None
        if (rid is None or rid == self._seen[0]) and (name is None or name == self._seen[1]):
            return []
        self._seen = (rid or self._seen[0], name or self._seen[1])
        return [ev.ResponseStart(rid, name)]


def total(*counts: int | None) -> int | None:
    """The sum of the counts reported; None when none was."""
    present = [count for count in counts if count is not None]
    return sum(present) if present else None


def reported(usage: ev.Usage) -> ev.Usage | None:
    """`usage`, or None when it holds no count at all."""
    return None if usage == ev.Usage() else usage


def usage_from_uncached(
    uncached: int | None, output: int | None, cache_read: int | None, cache_write: int | None
) -> ev.Usage | None:
    """`Usage` from counts whose input leaves the prompt cache out (AWS: Bedrock's `inputTokens`, Kiro's
    `uncachedInputTokens`): the conventions count cached input as input, so input = uncached + read + write."""
    return reported(ev.Usage(total(uncached, cache_read, cache_write), output, cache_read, cache_write))
