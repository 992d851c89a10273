"""Compressed response bodies are decoded for the parser (issue 14: `br` and `zstd` as gzip already was); the relay
forwards them as sent (tests/relay/test_headers.py)."""

from __future__ import annotations

import dataclasses
import gzip
import zlib

import brotli
import pytest
import zstandard

from llm_gateway.protocols import anthropic
from llm_gateway.protocols.decompress import decompressor
from llm_gateway.recordings import Chunk, Exchange, fixtures
from tests.support import FIXTURES
from tests.support.records import assert_same_record_for_any_chunking, one_by_one, record_of, splits

RECORDED = fixtures.load(FIXTURES / "anthropic/tools-history-gzip.json").exchanges[0]


def _zstd_frames(data: bytes) -> bytes:
    """Two zstd frames, as a server writes when it flushes mid-stream."""
    half = len(data) // 2
    compressor = zstandard.ZstdCompressor()
    return compressor.compress(data[:half]) + compressor.compress(data[half:])


ENCODERS = {"br": brotli.compress, "zstd": _zstd_frames, "deflate": zlib.compress}


def _recompressed(exchange: Exchange, encoding: str) -> Exchange:
    """The recorded exchange with its gzip body decoded and compressed again with `encoding`, cut into the
    recorded number of chunks."""
    plain = gzip.decompress(exchange.response.body)
    body = ENCODERS[encoding](plain)
    headers = [(k, encoding if k.lower() == "content-encoding" else v) for k, v in exchange.response.headers]
    pieces = splits(body, range(0, len(body), max(1, len(body) // max(1, len(exchange.response.chunks)))))
    chunks = [Chunk(float(i), piece) for i, piece in enumerate(pieces)]
    return dataclasses.replace(exchange, response=dataclasses.replace(exchange.response, headers=headers,
                                                                       chunks=chunks))


def test_the_recording_is_gzip_and_gives_a_record() -> None:
    assert fixtures.header(RECORDED.response.headers, "content-encoding") == "gzip"
    record = record_of(anthropic.ADAPTER, RECORDED)
    assert record.output_tokens and record.output_messages and not record.parse_issues


@pytest.mark.parametrize("encoding", sorted(ENCODERS))
def test_recompressed_body_gives_the_gzip_record(encoding: str) -> None:
    exchange = _recompressed(RECORDED, encoding)
    record = record_of(anthropic.ADAPTER, exchange)
    assert not record.parse_issues
    assert record == record_of(anthropic.ADAPTER, RECORDED)
    assert_same_record_for_any_chunking(anthropic.ADAPTER, exchange, one_by_one(exchange.response.body))


def test_unknown_encoding_is_named_not_decoded() -> None:
    assert decompressor("compress") == (
        "content-encoding 'compress' is not decoded for tracing; the body was relayed untouched")
    assert decompressor(" IDENTITY ") is None
