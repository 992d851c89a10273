"""The AWS event-stream decoder, checked against botocore's reader on recorded Kiro and Bedrock bodies."""

from __future__ import annotations

import struct
import uuid
import zlib

import pytest
from botocore.eventstream import EventStreamBuffer
from hypothesis import given, settings
from hypothesis import strategies as st

from llm_gateway.protocols.framing import FramingError
from llm_gateway.protocols.framing.eventstream import (
    ChecksumMismatch,
    EventStreamDecoder,
    EventStreamError,
    Frame,
    FrameTooLarge,
    MalformedFrame,
)
from llm_gateway.recordings import fixtures
from tests.support import FIXTURES
from tests.support.eventstream_encode import event, frame, header, string_header
from tests.support.records import splits


def _eventstream_bodies() -> list[tuple[str, bytes]]:
    bodies = []
    paths = [FIXTURES / "kiro" / "cli-2.4.1-session.json", *sorted((FIXTURES / "bedrock").glob("*.json"))]
    for path in paths:
        fixture = fixtures.load(path)
        if fixture.source.get("composed"):
            continue  # recorded traffic only: the composed ones are made with the test encoder
        for i, exchange in enumerate(fixture.exchanges):
            ctype = fixtures.header(exchange.response.headers, "content-type") or ""
            if "vnd.amazon.eventstream" in ctype:
                bodies.append((f"{fixture.name}#{i}", exchange.response.body))
    return bodies


BODIES = _eventstream_bodies()
BODY_IDS = [name for name, _ in BODIES]


def _botocore(body: bytes) -> list[tuple[dict, bytes]]:
    """The independent reading: botocore's own event-stream parser."""
    buffer = EventStreamBuffer()
    buffer.add_data(body)
    return [(dict(message.headers), message.payload) for message in buffer]


def _plain(frames: list[Frame]) -> list[tuple[dict, bytes]]:
    """Our frames in botocore's terms (it gives a UUID header as its 16 bytes)."""
    return [({k: v.bytes if isinstance(v, uuid.UUID) else v for k, v in f.headers.items()}, f.payload)
            for f in frames]


def _decode(chunks: list[bytes]) -> list[Frame]:
    decoder = EventStreamDecoder()
    frames = [f for chunk in chunks for f in decoder.feed(chunk)]
    assert decoder.buffered == 0
    return frames


def test_recorded_bodies_cover_kiro_and_bedrock():
    assert sum(name.startswith("cli-2.4.1-session") for name in BODY_IDS) == 6
    assert sum(not name.startswith("cli-2.4.1-session") for name in BODY_IDS) == 6


@pytest.mark.parametrize(("name", "body"), BODIES, ids=BODY_IDS)
def test_recorded_body_whole_matches_botocore(name, body):
    assert _plain(_decode([body])) == _botocore(body)


@pytest.mark.parametrize(("name", "body"), BODIES, ids=BODY_IDS)
def test_recorded_body_byte_by_byte_matches_botocore(name, body):
    assert _plain(_decode([body[i : i + 1] for i in range(len(body))])) == _botocore(body)


@pytest.mark.parametrize(("name", "body"), BODIES, ids=BODY_IDS)
def test_recorded_body_gives_typed_headers(name, body):
    frames = _decode([body])
    assert all(f.message_type == f.headers[":message-type"] for f in frames)
    assert all(f.event_type == f.headers.get(":event-type") for f in frames)
    assert all(f.content_type == f.headers.get(":content-type") for f in frames)


@settings(max_examples=60, deadline=None)
@given(index=st.integers(0, len(BODIES) - 1), cuts=st.lists(st.integers(0, 12000), max_size=40))
def test_any_chunking_gives_identical_frames(index, cuts):
    body = BODIES[index][1]
    assert _decode(splits(body, cuts)) == _decode([body])


@settings(max_examples=100, deadline=None)
@given(
    index=st.integers(0, len(BODIES) - 1), where=st.floats(0, 1, exclude_max=True), flip=st.integers(1, 255)
)
def test_flipped_byte_anywhere_gives_checksum_mismatch(index, where, flip):
    body = bytearray(BODIES[index][1])
    at = int(where * len(body))
    body[at] ^= flip
    whole = _decode([BODIES[index][1]])
    decoder = EventStreamDecoder()
    with pytest.raises(ChecksumMismatch) as caught:
        decoder.feed(bytes(body))
    # every frame that ends before the damaged byte still comes out, with the exception
    good = [f for f, end in zip(whole, _frame_ends(BODIES[index][1]), strict=True) if end <= at]
    assert list(caught.value.frames) == good


def _frame_ends(body: bytes) -> list[int]:
    """Where each recorded frame ends, from the length each prelude states."""
    ends, pos = [], 0
    while pos < len(body):
        pos += int.from_bytes(body[pos : pos + 4], "big")
        ends.append(pos)
    return ends


@settings(max_examples=100, deadline=None)
@given(data=st.binary(max_size=600), cuts=st.lists(st.integers(0, 600), max_size=8))
def test_garbage_raises_only_framing_errors(data, cuts):
    decoder = EventStreamDecoder()
    try:
        for chunk in splits(data, cuts):
            decoder.feed(chunk)
    except FramingError:
        pass


def test_split_prelude_waits_for_the_rest():
    whole = event("messageStart", {"role": "assistant"})
    for cut in range(1, 12):
        decoder = EventStreamDecoder()
        assert decoder.feed(whole[:cut]) == []
        assert decoder.buffered == cut
        assert _plain(decoder.feed(whole[cut:])) == _botocore(whole)


def test_frames_and_trailing_partial_frame_keep_only_the_partial():
    first, second = event("a", {"n": 1}), event("b", {"n": 2})
    decoder = EventStreamDecoder()
    assert [f.event_type for f in decoder.feed(first + second[:20])] == ["a"]
    assert decoder.buffered == 20
    assert [f.event_type for f in decoder.feed(second[20:])] == ["b"]


def test_all_header_types_decode_like_botocore():
    ident = uuid.UUID("12345678-1234-5678-1234-567812345678")
    block = b"".join([
        header("t", 0), header("f", 1), header("b", 2, struct.pack(">b", -3)),
        header("s", 3, struct.pack(">h", -300)), header("i", 4, struct.pack(">i", 70000)),
        header("l", 5, struct.pack(">q", -(2**40))), header("raw", 6, struct.pack(">H", 3) + b"\x00\xff\x01"),
        string_header("str", "héllo"), header("ts", 8, struct.pack(">q", 1_700_000_000_123)),
        header("id", 9, ident.bytes),
    ])
    body = frame(block, b"payload")
    (decoded,) = _decode([body])
    assert _plain([decoded]) == _botocore(body)
    assert decoded.headers["id"] == ident
    assert decoded.headers["t"] is True and decoded.headers["f"] is False


def test_frame_over_limit_raises_frame_too_large():
    body = event("big", {"text": "x" * 100})
    with pytest.raises(FrameTooLarge):
        EventStreamDecoder(max_frame_size=64).feed(body)


def test_oversized_prelude_raises_before_the_frame_arrives():
    decoder = EventStreamDecoder(max_frame_size=64)
    with pytest.raises(FrameTooLarge):
        decoder.feed(event("big", {"text": "x" * 100})[:12])


def test_unknown_header_type_raises_malformed_frame():
    with pytest.raises(MalformedFrame, match="unknown type 10"):
        EventStreamDecoder().feed(frame(header("odd", 10, b"\x00"), b""))


def test_header_running_past_its_block_raises_malformed_frame():
    overrun = header("s", 7, struct.pack(">H", 50) + b"short")
    with pytest.raises(MalformedFrame, match="overrun"):
        EventStreamDecoder().feed(frame(overrun, b"x" * 60))


def test_impossible_lengths_raise_malformed_frame():
    prelude = struct.pack(">II", 16, 8)  # headers longer than the frame leaves room for
    prelude += struct.pack(">I", zlib.crc32(prelude))
    body = prelude + struct.pack(">I", zlib.crc32(prelude))
    with pytest.raises(MalformedFrame, match="impossible lengths"):
        EventStreamDecoder().feed(body)


def test_error_is_raised_once_then_rest_is_ignored():
    good = event("a", {})
    bad = bytearray(event("b", {}))
    bad[-1] ^= 1
    decoder = EventStreamDecoder()
    with pytest.raises(ChecksumMismatch) as caught:
        decoder.feed(good + bytes(bad))
    assert [f.event_type for f in caught.value.frames] == ["a"]
    assert isinstance(caught.value, EventStreamError)
    assert decoder.feed(good) == []
    assert decoder.buffered == 0


def test_empty_frame_decodes():
    assert _decode([frame(b"", b"")]) == [Frame({}, b"")]
