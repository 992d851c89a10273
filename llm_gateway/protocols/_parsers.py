"""The body layers the adapters share: each is a `ResponseParser` that frames the body (SSE events, AWS
event-stream frames, JSON documents) and hands every frame to a protocol's handler, which keeps the stream's
state. A frame the handler cannot read becomes a `ParseIssue` and the next one is read; broken framing ends the
reading of the body. Nothing raises out of `feed` or `close`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol, TypeVar

import orjson

from llm_gateway.protocols import events as ev
from llm_gateway.protocols._json import json_object
from llm_gateway.protocols.errors import issue_from as issue
from llm_gateway.protocols.framing import DEFAULT_MAX_EVENT_SIZE, FramingError
from llm_gateway.protocols.framing.eventstream import EventStreamDecoder, EventStreamError, Frame
from llm_gateway.protocols.framing.jsonarray import JsonArrayDecoder, Oversized
from llm_gateway.protocols.framing.lines import LineDecoder
from llm_gateway.protocols.framing.sse import SSEDecoder, SSEEvent

_Frame = TypeVar("_Frame")


def _handled(frames: Iterable[_Frame], handle: Callable[[_Frame], list[ev.Event]],
             where: Callable[[_Frame], str]) -> list[ev.Event]:
    """The events `handle` makes of each frame; a frame it cannot read becomes a `ParseIssue` saying `where`."""
    out: list[ev.Event] = []
    for frame in frames:
        try:
            out += handle(frame)
        except Exception as exc:  # one unreadable frame never ends the reading
            out.append(issue(where(frame), exc))
    return out


# ---------------------------------------------------------------------------------------------------------
# SSE


class StreamHandler(Protocol):
    """A protocol's stream state: one SSE event in, events out; `end()` at the end of the body."""

    def event(self, frame: SSEEvent) -> list[ev.Event]: ...

    def end(self) -> list[ev.Event]: ...


class SSEParser:
    """A `ResponseParser` for SSE bodies: frames events and hands each to the handler. An event the handler
    cannot read becomes a `ParseIssue` and the next one is read; a framing error ends reading the body."""

    __slots__ = ("_broken", "_decoder", "_handler")

    def __init__(self, handler: StreamHandler) -> None:
        self._handler = handler
        self._decoder = SSEDecoder()
        self._broken = False

    def feed(self, data: bytes) -> list[ev.Event]:
        return self._frames(lambda: self._decoder.feed(data))

    def close(self) -> list[ev.Event]:
        out = self._frames(self._decoder.close)
        try:
            return out + self._handler.end()
        except Exception as exc:
            return [*out, issue("end of stream", exc)]

    def _frames(self, read: Callable[[], list[SSEEvent]]) -> list[ev.Event]:
        if self._broken:
            return []
        try:
            frames = read()
        except FramingError as exc:
            self._broken = True  # the decoder holds an oversized line: nothing after it can be framed
            return [issue("sse", exc)]
        return _handled(frames, self._handler.event, lambda frame: f"event {frame.event!r}")


# ---------------------------------------------------------------------------------------------------------
# AWS event stream


class FrameHandler(Protocol):
    """A protocol's event-stream state: one frame in, events out; `end(cut_in_frame)` at the end of the body,
    `cut_in_frame` telling whether it ended inside a frame."""

    def frame(self, frame: Frame) -> list[ev.Event]: ...

    def end(self, cut_in_frame: bool) -> list[ev.Event]: ...


class EventStreamParser:
    """A `ResponseParser` for AWS event-stream bodies: checks frames and hands each to the handler. A frame the
    handler cannot read becomes a `ParseIssue`; a broken frame (bad checksum) ends the reading, since no later
    frame boundary can be trusted, and says so once. The handler's `end` is then not asked: what the stream
    would have said at its end is unknown, and the `ParseIssue` says why."""

    __slots__ = ("_broken", "_decoder", "_handler")

    def __init__(self, handler: FrameHandler) -> None:
        self._handler = handler
        self._decoder = EventStreamDecoder()
        self._broken = False

    def feed(self, data: bytes) -> list[ev.Event]:
        if self._broken:
            return []
        try:
            frames = self._decoder.feed(data)
        except EventStreamError as exc:
            self._broken = True
            return [*self._events(exc.frames), ev.ParseIssue(f"eventstream: {exc}")]
        return self._events(frames)

    def close(self) -> list[ev.Event]:
        if self._broken:
            return []
        try:
            return self._handler.end(self._decoder.buffered > 0)
        except Exception as exc:
            return [issue("end of stream", exc)]

    def _events(self, frames: Sequence[Frame]) -> list[ev.Event]:
        return _handled(frames, self._handler.frame, lambda frame: f"event {frame.event_type or frame.message_type!r}")


# ---------------------------------------------------------------------------------------------------------
# JSON documents


class DocumentHandler(Protocol):
    """A protocol's response state: one JSON document's text in, events out; `end()` at the end of the body."""

    def document(self, raw: bytes | str) -> list[ev.Event]: ...

    def end(self) -> list[ev.Event]: ...


class ElementParser:
    """A `ResponseParser` for bodies made of JSON documents that `decoder` frames (`JsonArrayDecoder` for a JSON
    array or one object, `LineDecoder` for NDJSON). A document the handler cannot read becomes a `ParseIssue`
    and the next one is read; a framing error ends reading the body."""

    __slots__ = ("_broken", "_decoder", "_handler")

    def __init__(self, decoder: JsonArrayDecoder | LineDecoder, handler: DocumentHandler) -> None:
        self._decoder = decoder
        self._handler = handler
        self._broken = False

    def feed(self, data: bytes) -> list[ev.Event]:
        return self._documents(self._decoder.feed, data)

    def close(self) -> list[ev.Event]:
        out = self._documents(lambda _: self._decoder.close(), b"")
        try:
            return out + self._handler.end()
        except Exception as exc:
            return [*out, issue("end of body", exc)]

    def _documents(self, read: Callable[[bytes], Sequence[bytes | Oversized]], data: bytes) -> list[ev.Event]:
        if self._broken:
            return []
        try:
            documents = read(data)
        except FramingError as exc:
            self._broken = True  # the decoder holds an oversized line: nothing after it can be framed
            return [issue("framing", exc)]
        return _handled(documents, self._document, lambda _: "document")

    def _document(self, raw: bytes | Oversized) -> list[ev.Event]:
        if isinstance(raw, Oversized):
            return [ev.ParseIssue(f"a JSON document larger than {raw.limit} bytes was not read")]
        return self._handler.document(raw)


class JsonBodyParser:
    """A `ResponseParser` for a body that is one JSON document, read whole at the end."""

    __slots__ = ("_on_document", "_parts", "_size")

    #: documents past this size are not read (the relay still passes them on)
    MAX_BYTES = DEFAULT_MAX_EVENT_SIZE

    def __init__(self, on_document: Callable[[dict[str, Any]], list[ev.Event]]) -> None:
        self._on_document = on_document
        self._parts: list[bytes] = []
        self._size = 0

    def feed(self, data: bytes) -> list[ev.Event]:
        self._size += len(data)
        if self._size <= self.MAX_BYTES:
            self._parts.append(data)
        return []

    def close(self) -> list[ev.Event]:
        if self._size > self.MAX_BYTES:
            return [ev.ParseIssue(f"JSON body of {self._size} bytes is larger than {self.MAX_BYTES}; not read")]
        body = b"".join(self._parts).rstrip()
        try:
            doc = json_object(body)
        except orjson.JSONDecodeError as exc:
            if exc.pos >= len(body):  # the document stopped in the middle: the body was cut
                return [ev.Truncated("the JSON body ended before the document did")]
            return [issue("body", exc)]
        except ValueError as exc:
            return [issue("body", exc)]
        try:
            return self._on_document(doc)
        except Exception as exc:
            return [issue("body", exc)]
