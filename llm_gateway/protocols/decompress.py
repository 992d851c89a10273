"""A decompressed copy of a compressed response body, for the parser; the client still gets the bytes as sent."""

from __future__ import annotations

import zlib


class Decompressor:
    """gzip or deflate, fed chunk by chunk."""

    __slots__ = ("_z",)

    def __init__(self, encoding: str) -> None:
        wbits = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}
        self._z = zlib.decompressobj(wbits[encoding])

    def feed(self, data: bytes) -> bytes:
        return self._z.decompress(data)

    def close(self) -> bytes:
        return self._z.flush()


def decompressor(encoding: str) -> Decompressor | str | None:
    """A decompressor for a `Content-Encoding`: None for an identity body, a sentence when it cannot be decoded."""
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        return None
    if encoding in ("gzip", "x-gzip", "deflate"):
        return Decompressor(encoding)
    return f"content-encoding {encoding!r} is not decoded for tracing; the body was relayed untouched"
