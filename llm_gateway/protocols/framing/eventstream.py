"""AWS event-stream frames (`application/vnd.amazon.eventstream`): bytes in, checked frames out, any chunking.

A frame is a 12-byte prelude (total length u32 BE, headers length u32 BE, CRC32 of those 8 bytes), the headers
(name length u8, name, type u8, value), the payload, and a CRC32 of everything before it. Both CRCs are
`zlib.crc32`. Layout: https://docs.aws.amazon.com/AmazonS3/latest/API/RESTSelectObjectAppendix.html and
botocore's `eventstream.py`. Bedrock ConverseStream, InvokeModelWithResponseStream and the Kiro / Q runtime
all stream these frames.

A frame boundary is known only from a prelude whose CRC holds; once a check fails nothing later can be
trusted, so the decoder raises once and then ignores the rest of the body.
"""

from __future__ import annotations

import enum
import struct
import uuid
import zlib
from dataclasses import dataclass

from llm_gateway.protocols._states import unexpected
from llm_gateway.protocols.framing import DEFAULT_MAX_EVENT_SIZE, FramingError

HeaderValue = bool | int | bytes | str | uuid.UUID

_PRELUDE = struct.Struct(">III")  # total length, headers length, prelude CRC
_PRELUDE_LEN = _PRELUDE.size
_CRC_LEN = 4
_MIN_FRAME = _PRELUDE_LEN + _CRC_LEN  # a frame with no headers and no payload

# header type -> (struct, value size) for the fixed-size types; 0/1 (booleans), 6/7 (u16-length) and 9 (uuid)
# are read apart. Type 8 is a timestamp in epoch milliseconds, kept as an int.
_FIXED = {2: struct.Struct(">b"), 3: struct.Struct(">h"), 4: struct.Struct(">i"), 5: struct.Struct(">q"),
          8: struct.Struct(">q")}
_U16 = struct.Struct(">H")


class EventStreamError(FramingError):
    """The body breaks event-stream framing. `frames` holds the good frames decoded before the break by the
    same `feed` call, which would otherwise be lost with the exception."""

    def __init__(self, message: str, frames: tuple[Frame, ...] = ()) -> None:
        super().__init__(message)
        self.frames = frames


class ChecksumMismatch(EventStreamError):
    """A prelude or message CRC32 does not match: the bytes were damaged, or are not event-stream at all."""


class FrameTooLarge(EventStreamError):
    """A prelude announces a frame longer than the decoder's limit."""


class MalformedFrame(EventStreamError):
    """A checked frame whose lengths or headers do not add up (impossible lengths, an unknown header type)."""


@dataclass(frozen=True, slots=True)
class Frame:
    headers: dict[str, HeaderValue]
    payload: bytes

    def _text(self, name: str) -> str | None:
        value = self.headers.get(name)
        return value if isinstance(value, str) else None

    @property
    def message_type(self) -> str | None:
        """`event`, `exception` or `error`."""
        return self._text(":message-type")

    @property
    def event_type(self) -> str | None:
        return self._text(":event-type")

    @property
    def exception_type(self) -> str | None:
        return self._text(":exception-type")

    @property
    def content_type(self) -> str | None:
        return self._text(":content-type")


class DecoderState(enum.Enum):
    #: frames are checked and handed out
    DECODING = "decoding"
    #: a check failed: no later frame boundary can be trusted, so the rest of the body is ignored
    FAILED = "failed"


class EventStreamDecoder:
    """`feed(bytes) -> list[Frame]`. Raises an `EventStreamError` subclass once, at the first bad frame (with
    the frames decoded before it in that call); after that it is FAILED and returns no more frames. `buffered`
    is the number of bytes held of an unfinished frame, e.g. to say that a body ended mid-frame."""

    __slots__ = ("_buf", "_max", "_offset", "state")

    def __init__(self, max_frame_size: int = DEFAULT_MAX_EVENT_SIZE) -> None:
        self._buf = bytearray()
        self._max = max_frame_size
        self._offset = 0  # where the buffer starts in the body, for error messages
        self.state = DecoderState.DECODING

    def __repr__(self) -> str:
        return f"<EventStreamDecoder {self.state.name} at {self._offset}, {len(self._buf)} bytes buffered>"

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes) -> list[Frame]:
        if self.state is DecoderState.FAILED:
            unexpected(self, f"{len(data)} bytes", self.state)
            return []
        buf = self._buf
        buf += data
        frames: list[Frame] = []
        pos = 0
        try:
            while (size := self._frame_size(buf, pos)) is not None and pos + size <= len(buf):
                frames.append(_frame(bytes(buf[pos : pos + size]), self._offset + pos))
                pos += size
        except EventStreamError as exc:
            self.state = DecoderState.FAILED
            buf.clear()
            exc.frames = tuple(frames)
            raise
        del buf[:pos]  # one move per feed, not one per frame
        self._offset += pos
        return frames

    def _frame_size(self, buf: bytearray, pos: int) -> int | None:
        """The checked total length of the frame at `pos`, or None until its prelude has arrived."""
        if len(buf) - pos < _PRELUDE_LEN:
            return None
        total, headers_len, crc = _PRELUDE.unpack_from(buf, pos)
        at = self._offset + pos
        if zlib.crc32(buf[pos : pos + 8]) != crc:
            raise ChecksumMismatch(f"prelude checksum mismatch at offset {at}")
        if total > self._max:
            raise FrameTooLarge(f"frame of {total} bytes at offset {at} exceeds the {self._max}-byte limit")
        if total < _MIN_FRAME or headers_len > total - _MIN_FRAME:
            raise MalformedFrame(f"impossible lengths at offset {at}: total {total}, headers {headers_len}")
        return total


def _frame(raw: bytes, offset: int) -> Frame:
    """One whole frame, prelude already checked."""
    body_end = len(raw) - _CRC_LEN
    if zlib.crc32(raw[:body_end]) != int.from_bytes(raw[body_end:], "big"):
        raise ChecksumMismatch(f"message checksum mismatch in the frame at offset {offset}")
    headers_end = _PRELUDE_LEN + int.from_bytes(raw[4:8], "big")
    try:
        headers = _headers(raw, _PRELUDE_LEN, headers_end)
    except (IndexError, struct.error) as exc:  # a length that runs past the header block
        raise MalformedFrame(f"headers overrun their block in the frame at offset {offset}") from exc
    return Frame(headers, raw[headers_end:body_end])


def _headers(raw: bytes, pos: int, end: int) -> dict[str, HeaderValue]:
    headers: dict[str, HeaderValue] = {}
    while pos < end:
        name_end = pos + 1 + raw[pos]
        name = raw[pos + 1 : name_end].decode("utf-8", "replace")
        kind = raw[name_end]
        pos = name_end + 1
        value: HeaderValue
        if kind in (0, 1):
            value = kind == 0
        elif kind in _FIXED:
            fmt = _FIXED[kind]
            (value,) = fmt.unpack_from(raw, pos)
            pos += fmt.size
        elif kind in (6, 7):
            (length,) = _U16.unpack_from(raw, pos)
            value = raw[pos + 2 : pos + 2 + length]
            value = value.decode("utf-8", "replace") if kind == 7 else value
            pos += 2 + length
        elif kind == 9:
            if pos + 16 > end:
                raise IndexError
            value = uuid.UUID(bytes=raw[pos : pos + 16])
            pos += 16
        else:
            raise MalformedFrame(f"header {name!r} has unknown type {kind}")
        if pos > end:
            raise IndexError
        headers[name] = value
    return headers
