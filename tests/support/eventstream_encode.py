"""Writing AWS event-stream frames for tests and composed fixtures (botocore only reads them)."""

from __future__ import annotations

import struct
import zlib

import orjson


def header(name: str, kind: int, value: bytes = b"") -> bytes:
    """One raw header: any type, its value already encoded (e.g. `struct.pack(">h", 7)` for type 3)."""
    raw = name.encode()
    return bytes([len(raw)]) + raw + bytes([kind]) + value


def string_header(name: str, value: str) -> bytes:
    raw = value.encode()
    return header(name, 7, struct.pack(">H", len(raw)) + raw)


def frame(headers: dict[str, str] | bytes, payload: bytes) -> bytes:
    """A whole frame with both CRCs; `headers` as strings, or an already encoded header block."""
    block = headers if isinstance(headers, bytes) else b"".join(string_header(*h) for h in headers.items())
    prelude = struct.pack(">II", 12 + len(block) + len(payload) + 4, len(block))
    message = prelude + struct.pack(">I", zlib.crc32(prelude)) + block + payload
    return message + struct.pack(">I", zlib.crc32(message))


def event(event_type: str, payload: object) -> bytes:
    """An `event` frame with a JSON payload, as Bedrock sends them."""
    headers = {":event-type": event_type, ":content-type": "application/json", ":message-type": "event"}
    return frame(headers, orjson.dumps(payload))


def exception(exception_type: str, message: str) -> bytes:
    """An `exception` frame, as Bedrock sends a mid-stream error."""
    headers = {":exception-type": exception_type, ":content-type": "application/json",
               ":message-type": "exception"}
    return frame(headers, orjson.dumps({"message": message}))
