"""Feed a decoder or response parser a body cut in two, at every byte offset, and with trailing bytes after it;
what it says must not depend on where the cuts fell.

`assert_split_anywhere(make, body)` checks, for each offset `i` that `split_offsets` picks, that
`feed(body[:i]) + feed(body[i:])` gives the events `feed(body)` gives, then `close()` the events it gives after
the whole body; and that with `TRAILING` bytes fed after the body, the events of the body come first, unchanged,
and nothing raises. Events are compared exactly (no merging of adjacent deltas): each decoder here hands out
whole frames, so a cut never changes how a frame's content is split into events.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import pytest

#: bytes that no framing reads as a whole frame: an SSE line with no field, a JSON scalar that is not JSON, a
#: line that is not JSON, an event-stream prelude whose checksum fails
TRAILING = b"\r\n\r\ntrailing bytes\r\n\r\n"

#: a body up to this size is cut at every offset; a larger one at up to `WORK // len(body)` offsets, so that
#: checking one body parses at most about `WORK` bytes
EVERY_OFFSET_UP_TO = 1024
WORK = 500_000
#: around each place where an event completes, the offsets cut at: the last bytes of its frame (a CR, an LF, a
#: CRC) and the first of the next (an SSE field name, a 12-byte event-stream prelude)
NEAR_EVENT = range(-4, 13)


class Decoder(Protocol):
    def feed(self, data: bytes) -> list[Any]: ...

    def close(self) -> list[Any]: ...


def event_ends(make: Callable[[], Decoder], body: bytes) -> list[int]:
    """The offsets just after a byte that completed an event, found by feeding the body byte by byte."""
    decoder = make()
    return [i + 1 for i in range(len(body)) if decoder.feed(body[i : i + 1])]


def split_offsets(body: bytes, ends: list[int], *, limit: int | None = None) -> list[int]:
    """Every offset of a small body. For a larger one, `limit` offsets at most (default `WORK // len(body)`):
    the first and last bytes, the offsets `NEAR_EVENT` each of an even spread of event `ends`, and, with what
    the limit leaves, a stride over the whole body."""
    size = len(body)
    if size <= EVERY_OFFSET_UP_TO:
        return list(range(size + 1))
    limit = max(limit if limit is not None else WORK // size, 64)
    picked = set(range(0, 9)) | set(range(size - 8, size + 1))
    near_budget = (limit - len(picked)) * 2 // 3
    per_end = len(NEAR_EVENT)
    if ends and near_budget >= per_end:
        step = max(1, len(ends) * per_end // near_budget)
        for end in [*ends[::step], ends[-1]]:
            picked.update(o for d in NEAR_EVENT if 0 <= (o := end + d) <= size)
    stride = max(1, size // max(1, limit - len(picked)))
    picked.update(range(0, size + 1, stride))
    return sorted(picked)


def assert_split_anywhere(make: Callable[[], Decoder], body: bytes, *, offsets: list[int] | None = None,
                          trailing: bytes = TRAILING) -> list[int]:
    """Check `body` cut in two at each offset (default: `split_offsets` around the events of the body), and
    with `trailing` bytes after it; returns the offsets used."""
    whole = make()
    fed, closed = whole.feed(body), whole.close()
    if offsets is None:
        offsets = split_offsets(body, event_ends(make, body))
    for i in offsets:
        decoder = make()
        got = decoder.feed(body[:i]) + decoder.feed(body[i:])
        assert got == fed, f"cut at {i}: the body's events differ from the whole body's ({len(got)} vs {len(fed)})"
        assert decoder.close() == closed, f"cut at {i}: close() differs from the whole body's"
    for i in offsets[::4]:
        decoder = make()
        got = decoder.feed(body[:i]) + decoder.feed(body[i:] + trailing)
        assert got[: len(fed)] == fed, f"cut at {i}, then trailing bytes: the body's events changed"
        decoder.close()
    return offsets


def assert_raises_wherever_cut(make: Callable[[], Decoder], body: bytes, error: type[Exception], match: str) -> None:
    """Cut in two at every offset, `body` makes the decoder raise `error` (before or at `close`)."""
    for i in range(len(body) + 1):
        decoder = make()
        with pytest.raises(error, match=match):
            decoder.feed(body[:i])
            decoder.feed(body[i:])
            decoder.close()
