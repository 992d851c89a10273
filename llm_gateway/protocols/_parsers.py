"""The body layers the adapters share: each is a `ResponseParser` that frames the body (SSE events, AWS
event-stream frames, JSON documents) and hands every frame to a protocol's handler, which keeps the stream's
state. A frame the handler cannot read becomes a `ParseIssue` and the next one is read; broken framing ends the
reading of the body. Nothing raises out of `feed` or `close`.

Each parser is in one `ReadState` at a time; bytes or a `close` that its state does not expect (after broken
framing, after the end of the body) are logged at debug and ignored.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Generic, Protocol, TypeVar

import orjson

from llm_gateway.protocols import events as ev
from llm_gateway.protocols._json import json_object
from llm_gateway.protocols._states import unexpected
from llm_gateway.protocols.errors import issue_from as issue
from llm_gateway.protocols.framing import DEFAULT_MAX_EVENT_SIZE, FramingError
from llm_gateway.protocols.framing.eventstream import EventStreamDecoder, EventStreamError, Frame
from llm_gateway.protocols.framing.jsonarray import JsonArrayDecoder, Oversized
from llm_gateway.protocols.framing.lines import LineDecoder
from llm_gateway.protocols.framing.sse import SSEDecoder, SSEEvent

_Frame = TypeVar("_Frame")
_Handler = TypeVar("_Handler")


class ReadState(enum.Enum):
    """Where a body parser is in its body."""

    #: bytes are framed and each frame handed to the handler
    READING = "reading"
    #: the rest of the body is skipped: its framing broke (no later boundary can be trusted), or it outgrew the
    #: size limit
    SKIPPING = "skipping"
    #: the body ended: `close` was called
    CLOSED = "closed"


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


class _BodyParser(Generic[_Handler]):
    """The state every shared parser keeps, and the guard that logs what its state does not take."""

    __slots__ = ("_handler", "state")

    def __init__(self, handler: _Handler) -> None:
        self._handler = handler
        self.state = ReadState.READING

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.state.name} {self._handler!r}>"

    def _reading(self, data: bytes) -> bool:
        """True in READING; otherwise the bytes are logged as ignored."""
        if self.state is ReadState.READING:
            return True
        unexpected(self, f"{len(data)} bytes", self.state)
        return False

    def _closing(self) -> bool:
        """True unless the body had already ended (then the second `close` is logged as ignored)."""
        if self.state is ReadState.CLOSED:
            unexpected(self, "close", self.state)
            return False
        return True


# ---------------------------------------------------------------------------------------------------------
# SSE


class StreamHandler(Protocol):
    """A protocol's stream state: one SSE event in, events out; `end()` at the end of the body."""

    def event(self, frame: SSEEvent) -> list[ev.Event]: ...

    def end(self) -> list[ev.Event]: ...


class SSEParser(_BodyParser[StreamHandler]):
    """A `ResponseParser` for SSE bodies: frames events and hands each to the handler. An event the handler
    cannot read becomes a `ParseIssue` and the next one is read; a framing error ends reading the body, and the
    handler's `end` is still asked at the end unless `END_AFTER_BREAK` says otherwise."""

    __slots__ = ("_decoder",)

    #: whether the handler's `end` speaks at the end of a body whose framing broke
    END_AFTER_BREAK = True

    def __init__(self, handler: StreamHandler) -> None:
        super().__init__(handler)
        self._decoder = SSEDecoder()

    def feed(self, data: bytes) -> list[ev.Event]:
        if not self._reading(data):
            return []
        return self._frames(lambda: self._decoder.feed(data))

    def close(self) -> list[ev.Event]:
        if not self._closing():
            return []
        out = self._frames(self._decoder.close) if self.state is ReadState.READING else []
        broken, self.state = self.state is ReadState.SKIPPING, ReadState.CLOSED
        if broken and not self.END_AFTER_BREAK:
            return out
        try:
            return out + self._handler.end()
        except Exception as exc:
            return [*out, issue("end of stream", exc)]

    def _frames(self, read: Callable[[], list[SSEEvent]]) -> list[ev.Event]:
        try:
            frames = read()
        except FramingError as exc:
            self.state = ReadState.SKIPPING  # the decoder holds an oversized line: nothing after it can be framed
            return [self._framing_issue(exc)]
        return _handled(frames, self._handler.event, lambda frame: f"event {frame.event!r}")

    def _framing_issue(self, exc: FramingError) -> ev.ParseIssue:
        return issue("sse", exc)


# ---------------------------------------------------------------------------------------------------------
# AWS event stream


class FrameHandler(Protocol):
    """A protocol's event-stream state: one frame in, events out; `end(cut_in_frame)` at the end of the body,
    `cut_in_frame` telling whether it ended inside a frame."""

    def frame(self, frame: Frame) -> list[ev.Event]: ...

    def end(self, cut_in_frame: bool) -> list[ev.Event]: ...


class EventStreamParser(_BodyParser[FrameHandler]):
    """A `ResponseParser` for AWS event-stream bodies: checks frames and hands each to the handler. A frame the
    handler cannot read becomes a `ParseIssue`; a broken frame (bad checksum) ends the reading, since no later
    frame boundary can be trusted, and says so once. The handler's `end` is then not asked: what the stream
    would have said at its end is unknown, and the `ParseIssue` says why."""

    __slots__ = ("_decoder",)

    def __init__(self, handler: FrameHandler) -> None:
        super().__init__(handler)
        self._decoder = EventStreamDecoder()

    def feed(self, data: bytes) -> list[ev.Event]:
        if not self._reading(data):
            return []
        try:
            frames = self._decoder.feed(data)
        except EventStreamError as exc:
            self.state = ReadState.SKIPPING
            return [*self._events(exc.frames), ev.ParseIssue(f"eventstream: {exc}")]
        return self._events(frames)

    def close(self) -> list[ev.Event]:
        if not self._closing():
            return []
        broken, self.state = self.state is ReadState.SKIPPING, ReadState.CLOSED
        if broken:
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


class ElementParser(_BodyParser[DocumentHandler]):
    """A `ResponseParser` for bodies made of JSON documents that `decoder` frames (`JsonArrayDecoder` for a JSON
    array or one object, `LineDecoder` for NDJSON). A document the handler cannot read becomes a `ParseIssue`
    and the next one is read; a framing error ends reading the body."""

    __slots__ = ("_decoder",)

    def __init__(self, decoder: JsonArrayDecoder | LineDecoder, handler: DocumentHandler) -> None:
        super().__init__(handler)
        self._decoder = decoder

    def feed(self, data: bytes) -> list[ev.Event]:
        if not self._reading(data):
            return []
        return self._documents(self._decoder.feed, data)

    def close(self) -> list[ev.Event]:
        if not self._closing():
            return []
        out = self._documents(lambda _: self._decoder.close(), b"") if self.state is ReadState.READING else []
        self.state = ReadState.CLOSED
        try:
            return out + self._handler.end()
        except Exception as exc:
            return [*out, issue("end of body", exc)]

    def _documents(self, read: Callable[[bytes], Sequence[bytes | Oversized]], data: bytes) -> list[ev.Event]:
        try:
            documents = read(data)
        except FramingError as exc:
            self.state = ReadState.SKIPPING  # the decoder holds an oversized line: nothing after it can be framed
            return [issue("framing", exc)]
        return _handled(documents, self._document, lambda _: "document")

    def _document(self, raw: bytes | Oversized) -> list[ev.Event]:
        if isinstance(raw, Oversized):
            return [ev.ParseIssue(f"a JSON document larger than {raw.limit} bytes was not read")]
        return self._handler.document(raw)


class JsonBodyParser(_BodyParser[Callable[[dict[str, Any]], list[ev.Event]]]):
    """A `ResponseParser` for a body that is one JSON document, read whole at the end. A body past `MAX_BYTES`
    is counted, not kept (SKIPPING). What an oversized or unreadable body says is `_too_large` and
    `_unreadable`, which an adapter may word its own way."""

    __slots__ = ("_parts", "_size")

    #: documents past this size are not read (the relay still passes them on)
    MAX_BYTES = DEFAULT_MAX_EVENT_SIZE

    def __init__(self, on_document: Callable[[dict[str, Any]], list[ev.Event]]) -> None:
        super().__init__(on_document)
        self._parts: list[bytes] = []
        self._size = 0

    def feed(self, data: bytes) -> list[ev.Event]:
        if self.state is ReadState.CLOSED:
            unexpected(self, f"{len(data)} bytes", self.state)
            return []
        self._size += len(data)
        if self.state is ReadState.READING:
            if self._size <= self.MAX_BYTES:
                self._parts.append(data)
            else:
                self.state, self._parts = ReadState.SKIPPING, []
        return []

    def close(self) -> list[ev.Event]:
        if not self._closing():
            return []
        skipped, self.state = self.state is ReadState.SKIPPING, ReadState.CLOSED
        if skipped:
            return [self._too_large()]
        body = b"".join(self._parts).rstrip()
        try:
            doc = json_object(body)
        except ValueError as exc:  # orjson's JSONDecodeError is a ValueError
            return [self._unreadable(body, exc)]
        try:
            return self._handler(doc)
        except Exception as exc:
            return [issue("body", exc)]

    def _too_large(self) -> ev.Event:
        return ev.ParseIssue(f"JSON body of {self._size} bytes is larger than {self.MAX_BYTES}; not read")

    def _unreadable(self, body: bytes, exc: ValueError) -> ev.Event:
        """A body that is not one JSON object: cut short (the document stopped in the middle), or not JSON."""
        if isinstance(exc, orjson.JSONDecodeError) and exc.pos >= len(body):
            return ev.Truncated("the JSON body ended before the document did")
        return issue("body", exc)
