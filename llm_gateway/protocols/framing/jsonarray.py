"""A streamed JSON array (`[{...},\\r\\n{...}]`, as Gemini's streamGenerateContent sends without `alt=sse`):
bytes in, each top-level element's bytes out as soon as its last byte arrives.

Only the structure is tracked (strings, escapes, bracket depth), never the values: an element is handed out
whole and the caller parses it, so a malformed element costs one parse failure and the next one is read as
usual. The top level is lenient on purpose: outside an array a bare value is an element too, so a plain
`generateContent` body (one object) decodes as a one-element stream; stray `,` and `]` are skipped; anything
else is handed out as an element for the caller to reject. Works on bytes: every structural character is
ASCII, so a UTF-8 character split across chunks is whole again inside the element.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from llm_gateway.protocols.framing import DEFAULT_MAX_EVENT_SIZE

_NOT_SPACE = re.compile(rb"[^ \t\r\n]")
_IN_CONTAINER = re.compile(rb'["\[\]{}]')  # what changes the state inside an element, outside strings
_IN_STRING = re.compile(rb'["\\]')
_SCALAR_END = re.compile(rb"[ \t\r\n,\]]")


class _Where(enum.Enum):
    #: outside any array: whitespace, then `[` or a bare value
    TOP = "top"
    #: inside the array, between elements
    ARRAY = "array"
    #: inside an element (object, array or string: tracked by depth; scalar: up to a delimiter)
    CONTAINER = "container"
    SCALAR = "scalar"


@dataclass(frozen=True, slots=True)
class Oversized:
    """An element over the size limit: its bytes were dropped; the elements after it still come."""

    limit: int


class JsonArrayDecoder:
    """`feed(bytes) -> list[bytes | Oversized]`, `close() -> list[bytes]` (an unfinished element, if any)."""

    __slots__ = ("_buf", "_depth", "_in_array", "_in_string", "_max", "_pos", "_skipping", "_start", "_where")

    def __init__(self, max_element_size: int = DEFAULT_MAX_EVENT_SIZE) -> None:
        self._buf = bytearray()
        self._max = max_element_size
        self._where = _Where.TOP
        self._in_array = False  # the element being read sits inside an array (else at the top level)
        self._pos = 0  # next byte to scan
        self._start = 0  # first byte of the element being read
        self._depth = 0
        self._in_string = False
        self._skipping = False  # the element being read outgrew the limit: its bytes are not kept

    def feed(self, data: bytes) -> list[bytes | Oversized]:
        self._buf += data
        out: list[bytes | Oversized] = []
        while self._step(out):
            pass
        self._compact(out)
        return out

    def close(self) -> list[bytes]:
        """End of body: a bare scalar is complete now; an unfinished element is handed out as it is."""
        reading = self._where in (_Where.CONTAINER, _Where.SCALAR) and not self._skipping
        rest = bytes(self._buf[self._start :]).strip() if reading else b""
        self._buf.clear()
        self._where, self._pos, self._start, self._skipping = _Where.TOP, 0, 0, False
        return [rest] if rest else []

    # -- one scanning step: returns False when the buffered bytes are used up ----------------------------

    def _step(self, out: list[bytes | Oversized]) -> bool:
        if self._where is _Where.CONTAINER:
            return self._scan_container(out)
        if self._where is _Where.SCALAR:
            return self._scan_scalar(out)
        return self._scan_between()

    def _scan_between(self) -> bool:
        buf = self._buf
        match = _NOT_SPACE.search(buf, self._pos)
        if match is None:
            self._pos = len(buf)
            return False
        pos = match.start()
        char = buf[pos]
        if char == 0x5B and self._where is _Where.TOP:  # "[" opens the array
            self._where, self._pos = _Where.ARRAY, pos + 1
        elif char == 0x5D:  # "]" closes it (a stray one at the top level is skipped)
            self._where, self._pos = _Where.TOP, pos + 1
        elif char == 0x2C:  # "," between elements (or stray)
            self._pos = pos + 1
        else:
            self._in_array = self._where is _Where.ARRAY
            self._start = self._pos = pos
            self._depth = 0
            self._where = _Where.CONTAINER if char in b'{["' else _Where.SCALAR
        return True

    def _scan_container(self, out: list[bytes | Oversized]) -> bool:
        buf = self._buf
        if self._in_string:
            match = _IN_STRING.search(buf, self._pos)
            if match is None:
                self._pos = len(buf)
                return False
            if match.group() == b"\\":
                if match.end() >= len(buf):  # the escaped byte is still to come
                    self._pos = match.start()
                    return False
                self._pos = match.end() + 1
                return True
            self._in_string = False
        else:
            match = _IN_CONTAINER.search(buf, self._pos)
            if match is None:
                self._pos = len(buf)
                return False
            char = match.group()
            if char == b'"':
                self._in_string = True
            elif char in b"[{":
                self._depth += 1
            else:
                self._depth -= 1
        self._pos = match.end()
        if self._depth <= 0 and not self._in_string:
            self._emit(self._pos, out)
        return True

    def _scan_scalar(self, out: list[bytes | Oversized]) -> bool:
        match = _SCALAR_END.search(self._buf, self._pos)
        if match is None:
            self._pos = len(self._buf)
            return False
        self._pos = match.start()  # the delimiter is read again as structure
        self._emit(self._pos, out)
        return True

    def _emit(self, end: int, out: list[bytes | Oversized]) -> None:
        if not self._skipping:
            if end - self._start > self._max:
                out.append(Oversized(self._max))
            else:
                out.append(bytes(self._buf[self._start : end]))
        self._skipping = False
        self._where = _Where.ARRAY if self._in_array else _Where.TOP
        self._in_string = False

    def _compact(self, out: list[bytes | Oversized]) -> None:
        """Drop consumed bytes once per feed (not per element), and stop keeping an element over the limit."""
        reading = self._where in (_Where.CONTAINER, _Where.SCALAR)
        if reading and not self._skipping and len(self._buf) - self._start > self._max:
            self._skipping = True
            out.append(Oversized(self._max))
        keep = self._start if reading and not self._skipping else self._pos
        if keep:
            del self._buf[:keep]
            self._pos -= keep
            self._start = max(self._start - keep, 0)
