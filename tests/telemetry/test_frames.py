"""Messages on the pipe to the telemetry process: framed, and compressed when asked, read back the same."""

from __future__ import annotations

import io

from multidict import istr

from llm_gateway.mcp.jsonrpc import CallStarted, Direction
from llm_gateway.mcp.report import PIPE, CallReport
from llm_gateway.offload.frames import frame, read_frame


def test_frames_read_back_in_order_compressed_or_not() -> None:
    messages = [{"env": {"A": "b"}}, [(1, "POST", b"x" * 100_000)], [(2, b"")], None]
    stream = io.BytesIO(b"".join(frame(m, compress=i % 2 == 1) for i, m in enumerate(messages)))
    assert [read_frame(stream) for _ in messages] == messages
    assert read_frame(stream) is None  # the end of the stream


def test_a_compressed_frame_is_smaller_and_says_so_in_its_length() -> None:
    message = [(1, "POST", b'{"role": "user", "content": "hello"}' * 1_000)]
    plain, compressed = frame(message), frame(message, compress=True)
    assert len(compressed) < len(plain) // 10
    assert compressed[0] & 0x80 and not plain[0] & 0x80


def test_a_frame_cut_short_is_the_end_of_the_stream() -> None:
    for data in (frame({"a": 1})[:-1], frame({"a": 1}, compress=True)[:-1], b"\x00\x00"):
        assert read_frame(io.BytesIO(data)) is None


def test_what_marshal_cannot_write_goes_as_a_pickle_and_reads_back_the_same() -> None:
    report = CallReport(CallStarted("tools/call", 1, Direction.CLIENT_TO_SERVER, 10, "read", {"path": "a"}), "fs", PIPE)
    messages = [[(4, report)], [(1, istr("Content-Type"))], [(2, "plain", b"x", None, True, 7)]]
    for compress in (False, True):
        framed = [frame(m, compress=compress) for m in messages]
        assert [bool(f[0] & 0x40) for f in framed] == [True, True, False]  # the second bit: a pickle
        stream = io.BytesIO(b"".join(framed))
        assert [read_frame(stream) for _ in messages] == messages
