"""Server-sent events (https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation).

Two stages: lines (CR, LF or CRLF, a CR at a chunk's end held back in case LF follows), then fields folded into
events at each blank line. Works on bytes: line ends are ASCII, so a UTF-8 character split across chunks is
whole again by the time its line is decoded. `str.splitlines()` is avoided on purpose (it splits on U+2028).
"""

from __future__ import annotations

import re
from typing import NamedTuple

from llm_gateway.protocols.framing import DEFAULT_MAX_EVENT_SIZE, FramingError

_LINE_END = re.compile(rb"\r\n|\r|\n")


class SSEEvent(NamedTuple):  # a tuple: made once per event, and a frozen dataclass costs three times as much
    event: str  # "message" when the stream names none
    data: str
    id: str | None = None


class SSEDecoder:
    """`feed(bytes) -> list[SSEEvent]`, `close() -> list[SSEEvent]` at end of body."""

    __slots__ = ("_buf", "_data", "_event", "_id", "_max", "_scanned", "_size")

    def __init__(self, max_event_size: int = DEFAULT_MAX_EVENT_SIZE) -> None:
        self._buf = bytearray()
        self._scanned = 0  # the buffer holds no line end before this offset: a long line is scanned once
        self._max = max_event_size
        self._data: list[bytes] = []
        self._size = 0  # bytes in `_data`
        self._event = b""
        self._id: bytes | None = None

    def __repr__(self) -> str:
        pending = f", an event of {len(self._data)} data lines pending" if self._data or self._event else ""
        return f"<SSEDecoder {len(self._buf)} bytes buffered{pending}>"

    def feed(self, data: bytes) -> list[SSEEvent]:
        """The events completed by `data`. Raises `FramingError` for a line (its line end aside) or an event's
        data longer than the limit, whatever the chunking."""
        buf = self._buf
        buf += data
        out: list[SSEEvent] = []
        if b"\r" not in buf:
            return self._feed_lf(buf, out)
        pos = 0
        end = len(buf)
        match = _LINE_END.search(buf, self._scanned)
        while match is not None:
            if match.group() == b"\r" and match.end() == end:
                break  # maybe the first half of CRLF: wait for the next chunk
            if match.start() - pos > self._max:
                raise self._line_too_long()
            self._line(bytes(buf[pos : match.start()]), out)
            pos = match.end()
            match = _LINE_END.search(buf, pos)
        del buf[:pos]
        held_cr = 1 if buf.endswith(b"\r") else 0  # the rest holds no line end but this one
        self._scanned = len(buf) - held_cr
        if len(buf) - held_cr > self._max:
            raise self._line_too_long()
        return out

    def _feed_lf(self, buf: bytearray, out: list[SSEEvent]) -> list[SSEEvent]:
        """`feed` when the buffer holds no CR, as nearly every stream: its lines end at each LF, split in one go."""
        last = buf.rfind(b"\n", self._scanned)
        lines: list[bytes] = []
        if last >= 0:
            lines = bytes(buf[:last]).split(b"\n")
            if last > self._max and max(map(len, lines)) > self._max:
                raise self._line_too_long()
            del buf[: last + 1]
        self._scanned = len(buf)
        if len(buf) > self._max:
            raise self._line_too_long()
        for line in lines:
            self._line(line, out)
        return out

    def _line_too_long(self) -> FramingError:
        return FramingError(f"SSE line longer than {self._max} bytes")

    def close(self) -> list[SSEEvent]:
        """End of body: a final line without its terminator is taken; an event without its blank line is
        dispatched, as browsers do not, but as a truncated stream's last words are worth keeping."""
        out: list[SSEEvent] = []
        if self._buf:
            self._line(bytes(self._buf.rstrip(b"\r")), out)
            self._buf.clear()
        self._scanned = 0
        self._line(b"", out)
        return out

    def _line(self, line: bytes, out: list[SSEEvent]) -> None:
        if not line:
            if self._data or self._event:
                data = b"\n".join(self._data).decode("utf-8", "replace")
                event = self._event.decode("utf-8", "replace") or "message"
                ident = self._id.decode("utf-8", "replace") if self._id is not None else None
                out.append(SSEEvent(event, data, ident))
            self._data = []
            self._size = 0
            self._event = b""
            return
        if line[0] == 0x3A:  # ":" comment (keep-alive)
            return
        name, sep, value = line.partition(b":")
        if sep and value[:1] == b" ":
            value = value[1:]
        if name == b"data":
            self._data.append(value)
            self._size += len(value)
            if self._size > self._max:
                raise FramingError(f"SSE event larger than {self._max} bytes")
        elif name == b"event":
            self._event = value
        elif name == b"id" and b"\0" not in value:
            self._id = value
