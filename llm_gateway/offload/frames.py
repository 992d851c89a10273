"""Messages on a pipe: a 4-byte big-endian length, then a pickle. Sans-IO apart from reading a file object.

Both ends are this gateway's own processes, so pickle is trusted here."""

from __future__ import annotations

import pickle
import struct
from typing import BinaryIO

_LENGTH = struct.Struct(">I")
#: what the telemetry process tells with each acknowledgement, after the count of flows it has finished: the spans
#: it has lost so far by cause (a full batch queue, a failed export: `telemetry.span_losses`; dropped from a full
#: spool), and what its trace spool holds and has delivered (`telemetry.spool`)
TALLY = ("queue_full", "export_failed", "spool_dropped", "spooled_spans", "spooled_bytes", "spool_delivered")
#: an acknowledgement, on a pipe of its own: the count of finished flows, then the TALLY
ACK = struct.Struct("<Q" + "Q" * len(TALLY))


def frame(payload: object) -> bytes:
    data = pickle.dumps(payload, protocol=pickle.HIGHEST_PROTOCOL)
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
    data = stream.read(size)
    return data if len(data) == size else None
