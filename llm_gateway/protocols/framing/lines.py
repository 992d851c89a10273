"""Newline-delimited records (NDJSON, as Ollama streams): bytes in, complete lines out."""

from __future__ import annotations

from llm_gateway.protocols.framing import DEFAULT_MAX_EVENT_SIZE, FramingError


class LineDecoder:
    """`feed(bytes) -> list[bytes]` of complete non-blank lines (LF or CRLF), `close()` for a last one."""

    __slots__ = ("_buf", "_max")

    def __init__(self, max_line_size: int = DEFAULT_MAX_EVENT_SIZE) -> None:
        self._buf = bytearray()
        self._max = max_line_size

    def __repr__(self) -> str:
        return f"<LineDecoder {len(self._buf)} bytes buffered>"

    def feed(self, data: bytes) -> list[bytes]:
        """The lines completed by `data`. Raises `FramingError` for a line longer than the limit (its LF aside),
        whatever the chunking."""
        buf = self._buf
        buf += data
        cut = data.rfind(b"\n")  # only the new bytes: the held ones hold no LF
        if cut < 0:
            if len(buf) > self._max:
                raise FramingError(f"line longer than {self._max} bytes")
            return []
        cut += len(buf) - len(data)
        raw = bytes(buf[:cut]).split(b"\n")
        del buf[: cut + 1]
        if len(buf) > self._max or any(len(line) > self._max for line in raw):
            raise FramingError(f"line longer than {self._max} bytes")
        lines = [line.rstrip(b"\r") for line in raw]
        return [line for line in lines if line.strip()]

    def close(self) -> list[bytes]:
        line = bytes(self._buf).strip()
        self._buf.clear()
        return [line] if line else []
