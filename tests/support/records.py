"""Drive an adapter over a recorded exchange, sans-IO, with any chunking, and compare what it records."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import fields

from multidict import CIMultiDict

from llm_gateway.protocols.base import Adapter, HttpRequest, HttpResponseHead
from llm_gateway.protocols.exchange import ChatRecord
from llm_gateway.protocols.run import ExchangeRun
from llm_gateway.recordings import Exchange


def http_request(exchange: Exchange, upstream_url: str = "https://upstream.test") -> HttpRequest:
    req = exchange.request
    return HttpRequest(req.method, req.path, CIMultiDict(req.headers), req.body, upstream_url)


def run_exchange(
    adapter: Adapter,
    exchange: Exchange,
    *,
    chunks: Iterable[bytes] | None = None,
    capture: bool = False,
    upstream_url: str = "https://upstream.test",
) -> ChatRecord:
    """Feed the recorded response (or `chunks`, the same bytes cut differently) and return the record.
    Chunk i arrives at time i+1 (ns), so first-token times are comparable across runs."""
    run = ExchangeRun(adapter, http_request(exchange, upstream_url), capture=capture)
    resp = exchange.response
    run.response_head(HttpResponseHead(resp.status, CIMultiDict(resp.headers)))
    pieces = [c.data for c in resp.chunks] if chunks is None else list(chunks)
    for i, data in enumerate(pieces):
        run.body(i + 1, data)
    return run.finish(len(pieces) + 1)


def splits(body: bytes, cuts: Iterable[int]) -> list[bytes]:
    """`body` cut at the given offsets (any order, duplicates and out-of-range ignored)."""
    points = sorted({c for c in cuts if 0 < c < len(body)})
    out, start = [], 0
    for p in points:
        out.append(body[start:p])
        start = p
    out.append(body[start:])
    return out


def one_by_one(body: bytes) -> list[bytes]:
    return [body[i : i + 1] for i in range(len(body))]


def comparable(record: ChatRecord) -> ChatRecord:
    """The record without chunk-timing fields, for comparing runs with different chunking."""
    record.first_chunk_ns = None
    record.first_token_ns = None
    record.event_count = 0
    return record


def record_of(
    adapter: Adapter, exchange: Exchange, chunks: Iterable[bytes] | None = None, *, capture: bool = True
) -> ChatRecord:
    """`run_exchange`'s record, comparable across chunkings (content captured unless told otherwise)."""
    return comparable(run_exchange(adapter, exchange, chunks=chunks, capture=capture))


def assert_same_record_for_any_chunking(adapter: Adapter, exchange: Exchange, *chunkings: Iterable[bytes]) -> None:
    """The recorded chunks, the whole body in one chunk, and each of `chunkings` give one record."""
    whole = record_of(adapter, exchange, [exchange.response.body])
    _assert_same(record_of(adapter, exchange), whole, "the recorded chunks")
    for n, chunks in enumerate(chunkings):
        _assert_same(record_of(adapter, exchange, chunks), whole, f"chunking {n}")


def _assert_same(record: ChatRecord, whole: ChatRecord, chunking: str) -> None:
    # pytest does not rewrite asserts outside test modules: the message says what differs
    differ = {f.name: (getattr(record, f.name), getattr(whole, f.name))
              for f in fields(whole) if getattr(record, f.name) != getattr(whole, f.name)}
    assert record == whole, f"{chunking} and the whole body give different records (field: both values): {differ}"


def output_text(record: ChatRecord, kind: str = "text") -> str:
    """The output messages' parts of one kind (`text`, `reasoning`), joined."""
    parts = [p for m in record.output_messages or [] for p in m["parts"]]
    return "".join(p["content"] for p in parts if p["type"] == kind)
