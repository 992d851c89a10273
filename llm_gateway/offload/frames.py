"""Messages on a pipe: a 4-byte big-endian length, then the message in marshal's format. Sans-IO apart from reading
a file object.

marshal writes the flow messages (tuples of str, bytes, int, None) about twice as fast as pickle, and reads them
faster too; both ends are the same interpreter (the telemetry process is started with the relay's), whose format
they share. A message marshal cannot write (an MCP call report, a str subclass) goes as a pickle, which the
length's second bit says. Its top bit says the payload is zstd-compressed: the relay compresses what it sends while
the telemetry process is behind (`process.py`), so that its bounded backlog holds several times as many flows.
Both ends are this gateway's own processes, so what they read is trusted here."""

from __future__ import annotations

import functools
import marshal
import pickle
import struct
from typing import TYPE_CHECKING, BinaryIO

if TYPE_CHECKING:
    import zstandard

_LENGTH = struct.Struct(">I")
_COMPRESSED = 1 << 31
_PICKLED = 1 << 30
_SIZE = _PICKLED - 1
#: zstd's fastest level: JSON bodies and headers still shrink several times, at hundreds of MB/s
_LEVEL = 1
#: what the telemetry process tells with each acknowledgement, after the count of flows it has finished: the spans
#: it has lost so far by cause (a full batch queue, a failed export: `telemetry.span_losses`; dropped from a full
#: spool), and what its trace spool holds and has delivered (`telemetry.spool`)
TALLY = ("queue_full", "export_failed", "spool_dropped", "spooled_spans", "spooled_bytes", "spool_delivered")
#: an acknowledgement, on a pipe of its own: the count of finished flows, then the TALLY
ACK = struct.Struct("<Q" + "Q" * len(TALLY))


def frame(payload: object, *, compress: bool = False) -> bytes:
    try:
        data, flags = marshal.dumps(payload), 0
    except ValueError:  # "unmarshallable object": a type only pickle writes
        data, flags = pickle.dumps(payload, protocol=pickle.HIGHEST_PROTOCOL), _PICKLED
    if compress:
        data, flags = _compressor().compress(data), flags | _COMPRESSED
    return _LENGTH.pack(len(data) | flags) + data


def read_frame(stream: BinaryIO) -> object | None:
    """The next message, or None at the end of the stream."""
    read = _read_payload(stream)
    if read is None:
        return None
    data, pickled = read
    return pickle.loads(data) if pickled else marshal.loads(data)


def _read_payload(stream: BinaryIO) -> tuple[bytes, bool] | None:
    # Its own function so that profiles can tell waiting for the next message (here) from handling it.
    head = stream.read(_LENGTH.size)
    if len(head) < _LENGTH.size:
        return None
    (length,) = _LENGTH.unpack(head)
    size = length & _SIZE
    data = stream.read(size)
    if len(data) < size:
        return None
    return (_decompressor().decompress(data) if length & _COMPRESSED else data), bool(length & _PICKLED)


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
