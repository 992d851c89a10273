"""Messages on a pipe: a 4-byte big-endian length, then a pickle. Sans-IO apart from reading a file object.

The length's top bit says the pickle is zstd-compressed: the relay compresses what it sends while the telemetry
process is behind (`process.py`), so that its bounded backlog holds several times as many flows. Both ends are
this gateway's own processes, so pickle is trusted here."""

from __future__ import annotations

import functools
import pickle
import struct
from typing import TYPE_CHECKING, BinaryIO

if TYPE_CHECKING:
    import zstandard

_LENGTH = struct.Struct(">I")
_COMPRESSED = 1 << 31
#: zstd's fastest level: JSON bodies and headers still shrink several times, at hundreds of MB/s
_LEVEL = 1
#: what the telemetry process tells with each acknowledgement, after the count of flows it has finished: the spans
#: it has lost so far by cause (a full batch queue, a failed export: `telemetry.span_losses`; dropped from a full
#: spool), and what its trace spool holds and has delivered (`telemetry.spool`)
TALLY = ("queue_full", "export_failed", "spool_dropped", "spooled_spans", "spooled_bytes", "spool_delivered")
#: an acknowledgement, on a pipe of its own: the count of finished flows, then the TALLY
ACK = struct.Struct("<Q" + "Q" * len(TALLY))


def frame(payload: object, *, compress: bool = False) -> bytes:
    data = pickle.dumps(payload, protocol=pickle.HIGHEST_PROTOCOL)
    if compress:
        data = _compressor().compress(data)
        return _LENGTH.pack(len(data) | _COMPRESSED) + data
    return _LENGTH.pack(len(data)) + data


def read_frame(stream: BinaryIO) -> object | None:
    """The next message, or None at the end of the stream."""
    data = _read_payload(stream)
    return None if data is None else pickle.loads(data)


def _read_payload(stream: BinaryIO) -> bytes | None:
    # Its own function so that profiles can tell waiting for the next message (here) from handling it.
    head = stream.read(_LENGTH.size)
    if len(head) < _LENGTH.size:
        return None
    (size,) = _LENGTH.unpack(head)
    compressed, size = size & _COMPRESSED, size & ~_COMPRESSED
    data = stream.read(size)
    if len(data) < size:
        return None
    return _decompressor().decompress(data) if compressed else data


# Made once, on first use (zstandard is imported only by a relay that fell behind): each end uses its own from one
# thread (the relay's loop; the telemetry process's reading thread).
@functools.cache
def _compressor() -> zstandard.ZstdCompressor:
    import zstandard

    return zstandard.ZstdCompressor(level=_LEVEL)


@functools.cache
def _decompressor() -> zstandard.ZstdDecompressor:
    import zstandard

    return zstandard.ZstdDecompressor()
