"""Reading AWS event-stream bodies for tests with botocore's own decoder, independent of the adapters' one."""

from __future__ import annotations

from typing import Any

from botocore.eventstream import ChecksumMismatch, EventStreamBuffer


def botocore_frames(body: bytes) -> list[tuple[dict[str, Any], bytes]]:
    """(headers, payload) of every frame of the body, up to the first damaged frame."""
    buffer = EventStreamBuffer()
    buffer.add_data(body)
    out = []
    try:
        for message in buffer:
            out.append((dict(message.headers), message.payload))
    except ChecksumMismatch:
        pass
    return out


def frame_ends(body: bytes) -> list[int]:
    """Where each frame ends, from the total length in its prelude."""
    ends, pos = [], 0
    while pos + 4 <= len(body):
        pos += int.from_bytes(body[pos : pos + 4], "big")
        ends.append(pos)
    return ends
