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

from llm_gateway.protocols._states import unexpected
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
    #: inside an element, outside strings (object, array, or a string element's quotes: depth tracked)
    CONTAINER = "container"
    #: inside a string of an element (escapes skipped)
    STRING = "string"
    #: inside a bare scalar element, up to a delimiter
    SCALAR = "scalar"


_IN_ELEMENT = frozenset({_Where.CONTAINER, _Where.STRING, _Where.SCALAR})


class _Element(enum.Enum):
    #: the element's bytes are kept until it ends, then handed out
    KEPT = "kept"
    #: it outgrew the limit: `Oversized` was handed out, and its bytes are dropped as they are scanned
    DROPPED = "dropped"


@dataclass(frozen=True, slots=True)
class Oversized:
    """An element over the size limit: its bytes were dropped; the elements after it still come."""

    limit: int


class JsonArrayDecoder:
    """`feed(bytes) -> list[bytes | Oversized]`, `close() -> list[bytes]` (an unfinished element, if any)."""

    __slots__ = ("_buf", "_depth", "_element", "_max", "_outer", "_pos", "_start", "_where")

    def __init__(self, max_element_size: int = DEFAULT_MAX_EVENT_SIZE) -> None:
        self._buf = bytearray()
        self._max = max_element_size
        self._where = _Where.TOP
        self._outer = _Where.TOP  # where the element being read sits: ARRAY, or TOP for a bare value
        self._element = _Element.KEPT
        self._pos = 0  # next byte to scan
        self._start = 0  # first byte of the element being read
        self._depth = 0

    def __repr__(self) -> str:
        element = f" {self._element.name}" if self._where in _IN_ELEMENT else ""
        return f"<JsonArrayDecoder {self._where.name}{element} depth={self._depth} {len(self._buf)} bytes buffered>"

    def feed(self, data: bytes) -> list[bytes | Oversized]:
        self._buf += data
        out: list[bytes | Oversized] = []
        while self._step(out):
            pass
        self._compact(out)
        return out

    def close(self) -> list[bytes]:
        """End of body: a bare scalar is complete now; an unfinished element is handed out as it is."""
        reading = self._where in _IN_ELEMENT and self._element is _Element.KEPT
        rest = bytes(self._buf[self._start :]).strip() if reading else b""
        self._buf.clear()
        self._where, self._element, self._pos, self._start = _Where.TOP, _Element.KEPT, 0, 0
        return [rest] if rest else []

    # -- one scanning step: returns False when the buffered bytes are used up ----------------------------

    def _step(self, out: list[bytes | Oversized]) -> bool:
        where = self._where
        if where is _Where.STRING:
            return self._scan_string(out)
        if where is _Where.CONTAINER:
            return self._scan_container(out)
        if where is _Where.SCALAR:
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
            if self._where is _Where.TOP:
                unexpected(self, "']'", self._where)
            self._where, self._pos = _Where.TOP, pos + 1
        elif char == 0x2C:  # "," between elements (or stray)
            if self._where is _Where.TOP:
                unexpected(self, "','", self._where)
            self._pos = pos + 1
        else:
            self._outer = self._where
            self._start = self._pos = pos
            self._depth = 0
            self._where = _Where.CONTAINER if char in b'{["' else _Where.SCALAR
        return True

    def _scan_container(self, out: list[bytes | Oversized]) -> bool:
        buf = self._buf
        match = _IN_CONTAINER.search(buf, self._pos)
        if match is None:
            self._pos = len(buf)
            return False
        self._pos = match.end()
        char = match.group()
        if char == b'"':
            self._where = _Where.STRING
            return True
        self._depth += 1 if char in b"[{" else -1
        if self._depth <= 0:
            self._emit(self._pos, out)
        return True

    def _scan_string(self, out: list[bytes | Oversized]) -> bool:
        buf = self._buf
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
        self._pos = match.end()  # the closing quote
        self._where = _Where.CONTAINER
        if self._depth <= 0:  # a string element
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
        if self._element is _Element.KEPT:
            if end - self._start > self._max:
                out.append(Oversized(self._max))
            else:
                out.append(bytes(self._buf[self._start : end]))
        self._element = _Element.KEPT
        self._where = self._outer

    def _compact(self, out: list[bytes | Oversized]) -> None:
        """Drop consumed bytes once per feed (not per element), and stop keeping an element over the limit."""
        reading = self._where in _IN_ELEMENT
        if reading and self._element is _Element.KEPT and len(self._buf) - self._start > self._max:
            self._element = _Element.DROPPED
            out.append(Oversized(self._max))
        keep = self._start if reading and self._element is _Element.KEPT else self._pos
        if keep:
            del self._buf[:keep]
            self._pos -= keep
            self._start = max(self._start - keep, 0)
