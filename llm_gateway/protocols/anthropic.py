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

import enum
import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import orjson

from llm_gateway.protocols import events as ev
from llm_gateway.protocols._json import integer, obj, text
from llm_gateway.protocols._parsers import JsonBodyParser, SSEParser
from llm_gateway.protocols._response import is_streamed, total
from llm_gateway.protocols._states import unexpected
from llm_gateway.protocols.anthropic_request import parse_messages_body
from llm_gateway.protocols.base import HttpRequest, HttpResponseHead, ResponseParser
from llm_gateway.protocols.exchange import ChatRequest
from llm_gateway.protocols.framing import FramingError
from llm_gateway.protocols.framing.sse import SSEEvent
from llm_gateway.protocols.vendors import vendor_for_host

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


class _Phase(enum.Enum):
    """How far an Anthropic stream has got."""

    #: events are arriving; the stream has not said that it ended
    STREAMING = "streaming"
    #: `message_stop` came: the stream is complete (an `error` after it changes nothing)
    STOPPED = "stopped"
    #: an `error` event ended the stream (a `message_stop` may still follow)
    FAILED = "failed"


class AnthropicStreamState:
    """Maps Anthropic stream events, one parsed JSON object each (`{"type": "content_block_delta", ...}`), to
    normalized events; as a `StreamHandler` it takes the SSE events themselves. Unknown event types and unknown
    keys (Bedrock's `amazon-bedrock-invocationMetrics`) are ignored. `state` tells whether the stream reached
    its terminal event (`message_stop`) or an `error` event ended it; an event after either is still read, and
    logged at debug."""

    __slots__ = ("_usage", "state")

    def __init__(self) -> None:
        self._usage = _RawUsage()
        self.state = _Phase.STREAMING

    def __repr__(self) -> str:
        return f"<AnthropicStreamState {self.state.name} {self._usage}>"

    @property
    def saw_message_stop(self) -> bool:
        return self.state is _Phase.STOPPED

    @property
    def ended(self) -> bool:
        """`message_stop` or an `error` event came: a body that ends now was not cut."""
        return self.state is not _Phase.STREAMING

    def event(self, frame: SSEEvent) -> list[ev.Event]:
        """One SSE event, whose data is one JSON object."""
        if not frame.data.strip():
            return []
        try:
            doc = orjson.loads(frame.data)
        except orjson.JSONDecodeError:
            return [ev.ParseIssue(f"SSE event {frame.event[:40]!r}: data is not JSON")]
        if not isinstance(doc, dict):
            return [ev.ParseIssue(f"SSE event {frame.event[:40]!r}: data is not a JSON object")]
        return self.events(doc)

    def end(self) -> list[ev.Event]:
        return [] if self.ended else [ev.Truncated("the stream ended before message_stop")]

    def events(self, doc: dict[str, Any]) -> list[ev.Event]:
        kind = _type(doc)
        if self.state is _Phase.STOPPED or (self.state is _Phase.FAILED and kind != "message_stop"):
            unexpected(self, f"{kind!r} event", self.state)
        match kind:
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
                self.state = _Phase.STOPPED
            case "error":
                if self.state is _Phase.STREAMING:
                    self.state = _Phase.FAILED
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


class _StreamParser(SSEParser):
    """SSE body: the shared SSE reading, in this adapter's words when the framing breaks; after a break the
    stream's end is left unsaid, as for an event-stream body, since whether it was cut is unknown."""

    __slots__ = ()

    END_AFTER_BREAK = False

    def __init__(self) -> None:
        super().__init__(AnthropicStreamState())

    def _framing_issue(self, exc: FramingError) -> ev.ParseIssue:
        return ev.ParseIssue(f"SSE framing: {exc}")


class _MessageParser(JsonBodyParser):
    """Non-streamed body: one message JSON, read at the end (bounded). An unreadable one is a `ParseIssue`,
    never a truncation."""

    __slots__ = ()

    def __init__(self) -> None:
        super().__init__(message_events)

    def _too_large(self) -> ev.Event:
        return ev.ParseIssue(f"message body larger than {self.MAX_BYTES} bytes: not read")

    def _unreadable(self, body: bytes, exc: ValueError) -> ev.Event:
        what = "not JSON" if isinstance(exc, orjson.JSONDecodeError) else "not a JSON object"
        return ev.ParseIssue(f"message body is {what}")


class _Adapter:
    __slots__ = ()

    def parse_request(self, request: HttpRequest, capture: bool) -> ChatRequest:
        return parse_messages_body(orjson.loads(request.body), capture)

    def response_parser(self, request: ChatRequest, head: HttpResponseHead) -> ResponseParser:
        return _StreamParser() if is_streamed(request, head) else _MessageParser()

    def provider_name(self, request: HttpRequest) -> str:
        # A vendor answering the Anthropic protocol at its own host (DeepSeek's /anthropic) is that vendor.
        return vendor_for_host(request.upstream_url) or "anthropic"


ADAPTER = _Adapter()
