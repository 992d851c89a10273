"""The SSE decoder alone: line ends (CR, LF, CRLF) wherever the chunks fall, characters that are line breaks to
`str.splitlines()` but not to SSE, fields, and the size limit."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llm_gateway.protocols.framing import FramingError, sse
from llm_gateway.protocols.framing.sse import SSEDecoder, SSEEvent
from tests.support.records import splits
from tests.support.split_anywhere import assert_raises_wherever_cut, assert_split_anywhere


def decode(*chunks: bytes, limit: int | None = None) -> list[SSEEvent]:
    decoder = SSEDecoder() if limit is None else SSEDecoder(limit)
    return [event for chunk in chunks for event in decoder.feed(chunk)] + decoder.close()


# ---------------------------------------------------------------------------------------------------------
# Line ends


def test_crlf_split_across_chunks_is_one_line_end() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\r") == []
    # were the LF a second line end, the blank line would dispatch "a" alone
    assert decoder.feed(b"\ndata: b\r\n\r\n") == [SSEEvent("message", "a\nb")]


def test_lone_cr_at_chunk_end_waits_then_ends_the_line() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\r") == []
    assert decoder.feed(b"data: b\r") == []  # "data: a" ended at the CR; "data: b" may still get its LF
    assert decoder.feed(b"\r") == []  # the blank line's CR: it too may be the half of a CRLF
    assert decoder.feed(b"event: next\n") == [SSEEvent("message", "a\nb")]


def test_lone_cr_at_body_end_ends_the_line() -> None:
    assert decode(b"data: a\r") == [SSEEvent("message", "a")]
    assert decode(b"data: a\r", b"\r") == [SSEEvent("message", "a")]


@pytest.mark.parametrize("ends", [b"\n", b"\r\n", b"\r"], ids=["lf", "crlf", "cr"])
def test_each_line_end_gives_the_same_events(ends: bytes) -> None:
    body = b"event: a\ndata: 1\ndata: 2\n\n: keep-alive\n\ndata: 3\n\n".replace(b"\n", ends)
    assert decode(body) == [SSEEvent("a", "1\n2"), SSEEvent("message", "3")]


MIXED = (b"data: a\rdata: b\r\n\r\nevent: e\ndata: c\n\r: comment\r\ndata: d\r\r"
         b"id: 7\r\ndata:  spaced\n\ndata\n\n")


def test_mixed_line_ends_whole() -> None:
    assert decode(MIXED) == [
        SSEEvent("message", "a\nb"),
        SSEEvent("e", "c"),
        SSEEvent("message", "d"),
        SSEEvent("message", " spaced", "7"),  # one space after the colon is dropped, no more
        SSEEvent("message", "", "7"),  # a field with no colon has an empty value; the last id stays
    ]


def test_mixed_line_ends_cut_in_two_anywhere_and_with_trailing_bytes() -> None:
    assert_split_anywhere(SSEDecoder, MIXED)


@settings(max_examples=200, deadline=None)
@given(cuts=st.lists(st.integers(0, len(MIXED)), max_size=12))
def test_mixed_line_ends_cut_anywhere(cuts: list[int]) -> None:
    assert decode(*splits(MIXED, cuts)) == decode(MIXED)


# ---------------------------------------------------------------------------------------------------------
# Characters that are not line ends here


#: what `str.splitlines()` splits on besides CR and LF; SSE splits on none of them
SPLITLINES_ONLY = ["\u2028", "\u2029", "\x85", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e"]


@pytest.mark.parametrize("char", SPLITLINES_ONLY, ids=[f"U+{ord(c):04X}" for c in SPLITLINES_ONLY])
def test_unicode_line_separators_stay_inside_data(char: str) -> None:
    body = f'data: {{"text": "one{char}two"}}\n\n'.encode()
    expected = [SSEEvent("message", f'{{"text": "one{char}two"}}')]
    assert decode(body) == expected
    assert_split_anywhere(SSEDecoder, body)  # cut inside the character's UTF-8 bytes too


# ---------------------------------------------------------------------------------------------------------
# The size limit


def test_line_and_event_at_the_limit_are_read() -> None:
    body = b"data: 0123456789\r\ndata: 012345\r\n\r\n"  # a 16-byte line; 16 bytes of data
    assert decode(body, limit=16) == [SSEEvent("message", "0123456789\n012345")]
    assert_split_anywhere(lambda: SSEDecoder(16), body)


@pytest.mark.parametrize("body", [
    b"data: 0123456789A\n\n",  # one line over
    b"data: 0123456789\ndata: 0123456789\n\n",  # lines at the limit, the event's data over
    b": a comment over the limit\n\ndata: x\n\n",  # not data, still a line to hold
], ids=["line", "event", "comment"])
def test_oversize_raises_framing_error_whatever_the_chunking(body: bytes) -> None:
    assert_raises_wherever_cut(lambda: SSEDecoder(16), body, FramingError, r"(longer|larger) than 16 bytes")


def test_oversize_line_raises_before_its_end_arrives() -> None:
    decoder = SSEDecoder(16)
    decoder.feed(b"data: 0123456789")
    with pytest.raises(FramingError, match="SSE line longer than 16 bytes"):
        decoder.feed(b"ABC")  # the buffer never holds much more than the limit


def test_held_cr_does_not_count_toward_the_limit() -> None:
    decoder = SSEDecoder(16)
    assert decoder.feed(b"data: 0123456789\r") == []  # 16 bytes and the CR that may start a CRLF
    assert decoder.feed(b"\n\n") == [SSEEvent("message", "0123456789")]


class _CountingSearch:
    """Stands in for the line-end pattern and counts the bytes it is asked to search."""

    def __init__(self) -> None:
        self.pattern, self.searched = sse._LINE_END, 0

    def search(self, buf: bytearray, pos: int) -> re.Match[bytes] | None:
        self.searched += len(buf) - pos
        return self.pattern.search(buf, pos)


def test_long_line_in_small_chunks_is_searched_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """The bytes of an unfinished line are not searched again for line ends with every chunk (that would
    take time quadratic in the line's length)."""
    counting = _CountingSearch()
    monkeypatch.setattr(sse, "_LINE_END", counting)
    line = b"data: " + b"x" * 100_000
    decoder = SSEDecoder()
    for i in range(0, len(line), 100):
        assert decoder.feed(line[i : i + 100]) == []
    assert decoder.feed(b"\n\n") == [SSEEvent("message", "x" * 100_000)]
    assert counting.searched < 2 * len(line)


def test_repr_shows_what_is_held() -> None:
    decoder = SSEDecoder()
    decoder.feed(b"data: a\ndata: b")
    assert repr(decoder) == "<SSEDecoder 7 bytes buffered, an event of 1 data lines pending>"
