"""JSON-array stream decoder: elements whole whatever the chunking, strings and escapes honoured, bare values,
oversized elements dropped without losing the rest, garbage never raising, bounded buffer.

Expected elements come from `json.loads` of the whole body, never from the decoder.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llm_gateway.protocols.framing.jsonarray import JsonArrayDecoder, Oversized
from llm_gateway.recordings import fixtures
from tests.support.records import splits

SETTINGS = settings(max_examples=80, deadline=None)
FIXTURE_ROOT = Path(__file__).resolve().parents[2] / "fixtures"

# Array bodies whose elements a plain json.loads gives: the structural characters inside strings, escapes
# (an escaped quote and an escaped backslash before the closing quote), nesting, scalars, unicode.
ARRAYS = [
    b"[]",
    b' [ {"a": 1} ] ',
    b'[{"t": "x]}\\"{["},\r\n{"t": "\\\\"}\n,\r\n{"n": [1, [2, {"d": {}}]]}]',
    b'[1, -2.5e3, true, false, null, "s,]}", [], {}]',
    '[{"é": "ü → ☃"}, {"emoji": "😀"}]'.encode(),
]
# the JSON-array bodies recorded or composed for Gemini
FIXTURE_BODIES = [
    ex.response.body
    for path in fixtures.fixture_files(FIXTURE_ROOT / "gemini")
    for ex in fixtures.load(path).exchanges
    if ex.response.body.lstrip()[:1] == b"["
]


def decode(chunks: list[bytes], limit: int | None = None) -> list[bytes | Oversized]:
    decoder = JsonArrayDecoder() if limit is None else JsonArrayDecoder(limit)
    out: list[bytes | Oversized] = []
    for chunk in chunks:
        out += decoder.feed(chunk)
    return out + list(decoder.close())


def values(items: list[bytes | Oversized]) -> list[object]:
    return [json.loads(item) for item in items if isinstance(item, bytes)]


@pytest.mark.parametrize("body", ARRAYS + FIXTURE_BODIES)
def test_array_whole_yields_each_element(body: bytes) -> None:
    assert values(decode([body])) == json.loads(body)


@pytest.mark.parametrize("body", ARRAYS + FIXTURE_BODIES)
def test_array_byte_by_byte_equals_whole(body: bytes) -> None:
    assert decode([body[i : i + 1] for i in range(len(body))]) == decode([body])


@SETTINGS
@given(data=st.data())
def test_array_random_cuts_equal_whole(data: st.DataObject) -> None:
    body = data.draw(st.sampled_from(ARRAYS + FIXTURE_BODIES))
    cuts = data.draw(st.lists(st.integers(0, len(body)), max_size=20))
    assert decode(splits(body, cuts)) == decode([body])


@SETTINGS
@given(doc=st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=12,
), data=st.data())
def test_array_any_json_elements_survive_any_cut(doc: object, data: st.DataObject) -> None:
    elements = [doc, {"k": doc}, [doc]]
    body = json.dumps(elements, ensure_ascii=data.draw(st.booleans())).encode()
    cuts = data.draw(st.lists(st.integers(0, len(body)), max_size=10))
    assert values(decode(splits(body, cuts))) == elements


def test_escape_at_chunk_end_waits_for_escaped_byte() -> None:
    body = b'[{"t": "a\\"]"}]'
    cut = body.index(b"\\") + 1  # the chunk ends on the backslash
    assert values(decode([body[:cut], body[cut:]])) == [{"t": 'a"]'}]


def test_element_is_handed_out_when_its_last_byte_arrives() -> None:
    decoder = JsonArrayDecoder()
    assert decoder.feed(b'[{"a": "}"') == []
    assert decoder.feed(b"}") == [b'{"a": "}"}']
    assert decoder.feed(b",\r\n") == []


def test_bare_object_is_one_element() -> None:
    body = b'{\n  "candidates": []\n}\n'
    assert values(decode([body])) == [{"candidates": []}]


def test_values_after_each_other_are_elements_each() -> None:
    assert values(decode([b'{"a": 1}\n{"b": 2}\n[{"c": 3}]'])) == [{"a": 1}, {"b": 2}, {"c": 3}]


def test_unfinished_element_comes_out_at_close() -> None:
    decoder = JsonArrayDecoder()
    assert decoder.feed(b'[{"a": 1}, {"b": [2') == [b'{"a": 1}']
    assert decoder.close() == [b'{"b": [2']


def test_close_after_complete_array_gives_nothing() -> None:
    decoder = JsonArrayDecoder()
    decoder.feed(b'[{"a": 1}]\r\n')
    assert decoder.close() == []


def test_stray_delimiters_at_top_level_are_skipped() -> None:
    assert values(decode([b' , ] {"a": 1} ]'])) == [{"a": 1}]


def test_garbage_between_elements_comes_out_as_its_own_element() -> None:
    items = decode([b'[{"a": 1}, oops, {"b": 2}]'])
    assert items == [b'{"a": 1}', b"oops", b'{"b": 2}']


@pytest.mark.parametrize("chunk_size", [1, 7, 1000])
def test_oversized_element_is_dropped_and_the_next_one_kept(chunk_size: int) -> None:
    body = b'[{"big": "' + b"x" * 100 + b'"}, {"small": 1}]'
    items = decode([body[i : i + chunk_size] for i in range(0, len(body), chunk_size)], limit=50)
    assert items == [Oversized(50), b'{"small": 1}']


def test_buffer_stays_bounded_while_an_element_grows() -> None:
    decoder = JsonArrayDecoder(64)
    reported = decoder.feed(b'[{"s": "')
    for _ in range(1000):
        reported += decoder.feed(b"y" * 10)
        assert len(decoder._buf) <= 64 + 10  # the limit plus one chunk, never the whole element
    assert reported == [Oversized(64)]


@SETTINGS
@given(data=st.binary(max_size=300), cuts=st.lists(st.integers(0, 300), max_size=10))
def test_arbitrary_bytes_never_raise(data: bytes, cuts: list[int]) -> None:
    decoder = JsonArrayDecoder(32)
    for chunk in splits(data, cuts):
        items = decoder.feed(chunk)
        assert all(isinstance(item, bytes | Oversized) for item in items)
    decoder.close()


@SETTINGS
@given(data=st.binary(max_size=300), cuts=st.lists(st.integers(0, 300), max_size=10))
def test_arbitrary_bytes_decode_the_same_whatever_the_cuts(data: bytes, cuts: list[int]) -> None:
    assert decode(splits(data, cuts), limit=32) == decode([data], limit=32)
