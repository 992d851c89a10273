"""Anthropic Messages API (`POST /v1/messages`, also `?beta=true`): the response, and the adapter (the request
body is read in `anthropic_request`).

A response is SSE (`message_start`, `content_block_start/delta/stop`, `message_delta`, `message_stop`,
`ping`, `error`; docs.anthropic.com/en/api/messages-streaming) or, when not streamed, one message JSON. The
Bedrock adapter reuses `parse_messages_body`, `AnthropicStreamState` and `message_events`: InvokeModel bodies
and chunks carry the same Anthropic JSON.

Token usage: Anthropic's `input_tokens` leaves out the prompt cache, while the conventions' input count
includes it, so input = input_tokens + cache_read_input_tokens + cache_creation_input_tokens (those reported).
Usage in `message_delta` is cumulative: each report replaces the fields it carries, so cache counts are never
added twice.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import orjson

from llm_gateway.protocols import events as ev
from llm_gateway.protocols._json import integer, obj, text
from llm_gateway.protocols._response import is_streamed, total
from llm_gateway.protocols.anthropic_request import parse_messages_body
from llm_gateway.protocols.base import HttpRequest, HttpResponseHead, ResponseParser
from llm_gateway.protocols.exchange import ChatRequest
from llm_gateway.protocols.framing import DEFAULT_MAX_EVENT_SIZE, FramingError
from llm_gateway.protocols.framing.sse import SSEDecoder, SSEEvent

__all__ = ["ADAPTER", "AnthropicStreamState", "message_events", "parse_messages_body"]


def _type(doc: dict[str, Any]) -> str | None:
    return text(doc.get("type"))


# ---------------------------------------------------------------------------------------------------------
# Response events, shared by the SSE stream, the whole message and Bedrock


_USAGE_FIELDS = (
    ("input", "input_tokens"),
    ("cache_read", "cache_read_input_tokens"),
    ("cache_creation", "cache_creation_input_tokens"),
    ("output", "output_tokens"),
)


@dataclass(frozen=True, slots=True)
class _RawUsage:
    """Anthropic's counts as last reported; a report replaces only the fields it carries (null: absent)."""

    input: int | None = None
    cache_read: int | None = None
    cache_creation: int | None = None
    output: int | None = None

    def merged(self, usage: dict[str, Any]) -> _RawUsage:
        found = {attr: n for attr, key in _USAGE_FIELDS if (n := integer(usage.get(key))) is not None}
        return replace(self, **found)

    def event(self) -> ev.Usage:
        return ev.Usage(
            input_tokens=total(self.input, self.cache_read, self.cache_creation),
            output_tokens=self.output,
            cache_read=self.cache_read,
            cache_write=self.cache_creation,
        )


def _key(index: object) -> int | str:
    # tool call fragments are matched by block index; a hashable key even when the index is garbage
    return index if isinstance(index, int | str) else -1


def _piece(event: Callable[[str], ev.Event], piece: object) -> list[ev.Event]:
    """A piece of text, reasoning or tool input; an empty one says nothing."""
    return [event(piece)] if isinstance(piece, str) and piece else []


def _json_text(value: object) -> str:
    try:
        return orjson.dumps(value).decode()
    except TypeError:  # an integer past 64 bits, from a caller's own JSON parser
        return json.dumps(value, default=str)


def _block_events(key: int | str, block: dict[str, Any], *, whole: bool) -> list[ev.Event]:
    """A content block as it starts (streamed: tool input follows as deltas) or whole (non-streamed)."""
    kind = _type(block)
    match kind:
        case "text":
            return _piece(ev.TextDelta, block.get("text"))
        case "thinking":
            return _piece(ev.ReasoningDelta, block.get("thinking"))
        case "redacted_thinking":
            return [ev.ReasoningDelta("")]
        case "tool_use" | "server_tool_use" | "mcp_tool_use":
            arguments = _json_text(block.get("input", {})) if whole else None
            call_type = "function" if kind == "tool_use" else "server"
            name = text(block.get("name")) or ""
            return [ev.ToolCallStart(key, text(block.get("id")), name, arguments, type=call_type)]
    return []  # tool results the provider ran (web_search_tool_result, ...) are not model output


def _delta_events(key: int | str, delta: dict[str, Any]) -> list[ev.Event]:
    match _type(delta):
        case "text_delta":
            return _piece(ev.TextDelta, delta.get("text"))
        case "thinking_delta":
            return _piece(ev.ReasoningDelta, delta.get("thinking"))
        case "input_json_delta":
            return _piece(lambda fragment: ev.ToolCallDelta(key, fragment), delta.get("partial_json"))
    return []  # signature_delta, citations_delta: nothing the conventions record


def _error_event(doc: dict[str, Any]) -> ev.ProviderError:
    error = obj(doc.get("error"))
    return ev.ProviderError(_type(error) or "error", text(error.get("message")))


class AnthropicStreamState:
    """Maps Anthropic stream events, one parsed JSON object each (`{"type": "content_block_delta", ...}`), to
    normalized events. Unknown event types and unknown keys (Bedrock's `amazon-bedrock-invocationMetrics`) are
    ignored. `saw_message_stop` tells whether the stream reached its terminal event; `saw_error` whether an
    `error` event ended it instead."""

    __slots__ = ("_usage", "saw_error", "saw_message_stop")

    def __init__(self) -> None:
        self._usage = _RawUsage()
        self.saw_message_stop = False
        self.saw_error = False

    def __repr__(self) -> str:
        return f"<AnthropicStreamState stop={self.saw_message_stop} error={self.saw_error} {self._usage}>"

    def events(self, doc: dict[str, Any]) -> list[ev.Event]:
        match _type(doc):
            case "message_start":
                message = obj(doc.get("message"))
                start = ev.ResponseStart(text(message.get("id")), text(message.get("model")))
                return [start, *self._usage_events(message.get("usage"))]
            case "content_block_start":
                return _block_events(_key(doc.get("index")), obj(doc.get("content_block")), whole=False)
            case "content_block_delta":
                return _delta_events(_key(doc.get("index")), obj(doc.get("delta")))
            case "message_delta":
                reason = text(obj(doc.get("delta")).get("stop_reason"))
                return [*([ev.Finish(reason)] if reason else []), *self._usage_events(doc.get("usage"))]
            case "message_stop":
                self.saw_message_stop = True
            case "error":
                self.saw_error = True
                return [_error_event(doc)]
        return []  # ping, content_block_stop, and event types added later

    def _usage_events(self, usage: object) -> list[ev.Event]:
        if not isinstance(usage, dict):
            return []
        self._usage = self._usage.merged(usage)
        return [self._usage.event()]


def message_events(doc: dict[str, Any]) -> list[ev.Event]:
    """The events of a whole (non-streamed) message JSON, or of an error document."""
    if _type(doc) == "error":
        return [_error_event(doc)]
    out: list[ev.Event] = [ev.ResponseStart(text(doc.get("id")), text(doc.get("model")))]
    content = doc.get("content")
    # a block's index is its position among all entries, so entries that are not objects still count
    for index, block in enumerate(content if isinstance(content, list) else []):
        out += _block_events(index, obj(block), whole=True)
    usage = doc.get("usage")
    if isinstance(usage, dict):
        out.append(_RawUsage().merged(usage).event())
    reason = text(doc.get("stop_reason"))
    if reason:
        out.append(ev.Finish(reason))
    return out


# ---------------------------------------------------------------------------------------------------------
# Response parsers


class _StreamParser:
    """SSE body: frames -> JSON objects -> `AnthropicStreamState`."""

    __slots__ = ("_broken", "_decoder", "_state")

    def __init__(self) -> None:
        self._decoder = SSEDecoder()
        self._state = AnthropicStreamState()
        self._broken = False  # the framing failed: the rest of the body is not read

    def feed(self, data: bytes) -> list[ev.Event]:
        if self._broken:
            return []
        try:
            frames = self._decoder.feed(data)
        except FramingError as exc:
            return self._fail(exc)
        return self._events(frames)

    def close(self) -> list[ev.Event]:
        if self._broken:
            return []
        try:
            frames = self._decoder.close()
        except FramingError as exc:
            return self._fail(exc)
        out = self._events(frames)
        if not (self._state.saw_message_stop or self._state.saw_error):
            out.append(ev.Truncated("the stream ended before message_stop"))
        return out

    def _fail(self, exc: FramingError) -> list[ev.Event]:
        self._broken = True
        return [ev.ParseIssue(f"SSE framing: {exc}")]

    def _events(self, frames: list[SSEEvent]) -> list[ev.Event]:
        out: list[ev.Event] = []
        for frame in frames:
            out += self._frame_events(frame)
        return out

    def _frame_events(self, frame: SSEEvent) -> list[ev.Event]:
        if not frame.data.strip():
            return []
        try:
            doc = orjson.loads(frame.data)
        except orjson.JSONDecodeError:
            return [ev.ParseIssue(f"SSE event {frame.event[:40]!r}: data is not JSON")]
        if not isinstance(doc, dict):
            return [ev.ParseIssue(f"SSE event {frame.event[:40]!r}: data is not a JSON object")]
        return self._state.events(doc)


class _MessageParser:
    """Non-streamed body: one message JSON, read at the end (bounded)."""

    __slots__ = ("_parts", "_size")

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self._size = 0

    def feed(self, data: bytes) -> list[ev.Event]:
        self._size += len(data)
        if self._size <= DEFAULT_MAX_EVENT_SIZE:
            self._parts.append(data)
        return []

    def close(self) -> list[ev.Event]:
        if self._size > DEFAULT_MAX_EVENT_SIZE:
            return [ev.ParseIssue(f"message body larger than {DEFAULT_MAX_EVENT_SIZE} bytes: not read")]
        try:
            doc = orjson.loads(b"".join(self._parts))
        except orjson.JSONDecodeError:
            return [ev.ParseIssue("message body is not JSON")]
        if not isinstance(doc, dict):
            return [ev.ParseIssue("message body is not a JSON object")]
        return message_events(doc)


class _Adapter:
    __slots__ = ()

    def parse_request(self, request: HttpRequest, capture: bool) -> ChatRequest:
        return parse_messages_body(orjson.loads(request.body), capture)

    def response_parser(self, request: ChatRequest, head: HttpResponseHead) -> ResponseParser:
        return _StreamParser() if is_streamed(request, head) else _MessageParser()

    def provider_name(self, request: HttpRequest) -> str:
        return "anthropic"


ADAPTER = _Adapter()
