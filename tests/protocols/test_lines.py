"""The newline-delimited (NDJSON) line decoder alone: LF and CRLF wherever the chunks fall, a lone CR, characters
that are line breaks to `str.splitlines()` but not here, and the size limit."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llm_gateway.protocols.framing import FramingError
from llm_gateway.protocols.framing.lines import LineDecoder
from tests.protocols.test_sse import SPLITLINES_ONLY
from tests.support.records import splits
from tests.support.split_anywhere import assert_raises_wherever_cut, assert_split_anywhere


def decode(*chunks: bytes, limit: int | None = None) -> list[bytes]:
    decoder = LineDecoder() if limit is None else LineDecoder(limit)
    return [line for chunk in chunks for line in decoder.feed(chunk)] + decoder.close()


def test_crlf_split_across_chunks_ends_the_line_once() -> None:
    decoder = LineDecoder()
    assert decoder.feed(b'{"a":1}\r') == []
    assert decoder.feed(b'\n{"b":2}\r\n') == [b'{"a":1}', b'{"b":2}']


def test_lone_cr_at_chunk_end_is_held_and_only_lf_ends_a_line() -> None:
    decoder = LineDecoder()
    assert decoder.feed(b'{"a":1}\r') == []
    assert decoder.feed(b'{"b":2}\n') == [b'{"a":1}\r{"b":2}']  # NDJSON lines end at LF: one (bad) line


def test_lone_cr_at_body_end_is_dropped_with_the_last_line() -> None:
    assert decode(b'{"a":1}\n{"b":2}\r') == [b'{"a":1}', b'{"b":2}']


def test_blank_lines_are_skipped() -> None:
    assert decode(b'\n\r\n  \n{"a":1}\n\n') == [b'{"a":1}']


BODY = b'{"a":1}\n{"b":"x\r\ny"}\r\n\r\n{"c":[1,\n2]}\r{"d":4}'


def test_body_cut_in_two_anywhere_and_with_trailing_bytes() -> None:
    assert decode(BODY) == [b'{"a":1}', b'{"b":"x', b'y"}', b'{"c":[1,', b'2]}\r{"d":4}']
    assert_split_anywhere(LineDecoder, BODY)


@settings(max_examples=200, deadline=None)
@given(cuts=st.lists(st.integers(0, len(BODY)), max_size=12))
def test_body_cut_anywhere(cuts: list[int]) -> None:
    assert decode(*splits(BODY, cuts)) == decode(BODY)


@pytest.mark.parametrize("char", SPLITLINES_ONLY, ids=[f"U+{ord(c):04X}" for c in SPLITLINES_ONLY])
def test_unicode_line_separators_stay_inside_the_line(char: str) -> None:
    body = f'{{"response": "one{char}two"}}\n{{"done": true}}\n'.encode()
    assert decode(body) == [f'{{"response": "one{char}two"}}'.encode(), b'{"done": true}']
    assert_split_anywhere(LineDecoder, body)  # cut inside the character's UTF-8 bytes too


def test_line_at_the_limit_is_read() -> None:
    body = b'{"x":"0123456"}\n{"y":"0123456"}\r\n'  # 15 bytes; 15 and a CR
    assert decode(body, limit=16) == [b'{"x":"0123456"}', b'{"y":"0123456"}']
    assert_split_anywhere(lambda: LineDecoder(16), body)


@pytest.mark.parametrize("body", [
    b'{"x":"012345678"}\n',
    b'{"a":1}\n{"x":"012345678"}\n{"b":2}\n',
    b'{"a":1}\n{"x":"012345678901234567"}',
], ids=["alone", "between", "last-unterminated"])
def test_oversize_line_raises_framing_error_whatever_the_chunking(body: bytes) -> None:
    assert_raises_wherever_cut(lambda: LineDecoder(16), body, FramingError, "line longer than 16 bytes")


def test_oversize_line_raises_before_its_end_arrives() -> None:
    decoder = LineDecoder(16)
    decoder.feed(b'{"x":"0123456789')
    with pytest.raises(FramingError, match="line longer than 16 bytes"):
        decoder.feed(b"ABC")  # the buffer never holds much more than the limit


def test_repr_shows_what_is_held() -> None:
    decoder = LineDecoder()
    decoder.feed(b'{"a":1}\n{"b"')
    assert repr(decoder) == "<LineDecoder 4 bytes buffered>"
