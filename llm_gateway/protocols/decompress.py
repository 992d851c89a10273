"""A decompressed copy of a compressed response body, for the parser; the client still gets the bytes as sent.

gzip and deflate come with zlib; brotli (`br`) and zstd, which Claude Code and other Node clients accept, with the
`brotli` and `zstandard` packages.
"""

from __future__ import annotations

import zlib
from typing import Protocol


class Decompressor(Protocol):
    """A body's `Content-Encoding` undone, fed chunk by chunk."""

    def feed(self, data: bytes) -> bytes:
        """The decoded bytes the next piece of the body gives."""
        ...

    def close(self) -> bytes:
        """The end of the body: the decoded bytes still held back."""
        ...


class _Zlib:
    """gzip or deflate."""

    __slots__ = ("_z",)

    def __init__(self, encoding: str) -> None:
        wbits = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}
        self._z = zlib.decompressobj(wbits[encoding])

    def feed(self, data: bytes) -> bytes:
        return self._z.decompress(data)

    def close(self) -> bytes:
        return self._z.flush()


class _Brotli:
    __slots__ = ("_d",)

    def __init__(self) -> None:
        import brotli

        self._d = brotli.Decompressor()

    def feed(self, data: bytes) -> bytes:
        return self._d.process(data)

    def close(self) -> bytes:
        return b""  # brotli hands out everything it can decode as it goes


class _Zstd:
    __slots__ = ("_d",)

    def __init__(self) -> None:
        import zstandard

        # A server may write one frame per flush: read on across frames, as a client does.
        self._d = zstandard.ZstdDecompressor().decompressobj(read_across_frames=True)

    def feed(self, data: bytes) -> bytes:
        return self._d.decompress(data)

    def close(self) -> bytes:
        return self._d.flush()


def decompressor(encoding: str) -> Decompressor | str | None:
    """A decompressor for a `Content-Encoding`: None for an identity body, a sentence when it cannot be decoded."""
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        return None
    if encoding in ("gzip", "x-gzip", "deflate"):
        return _Zlib(encoding)
    if encoding == "br":
        return _Brotli()
    if encoding == "zstd":
        return _Zstd()
    return f"content-encoding {encoding!r} is not decoded for tracing; the body was relayed untouched"
