"""Exchanges for adapter tests: the recorded and composed ones of a fixture directory, and small ones made up in
a test for edge cases no fixture needs."""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from yarl import URL

from llm_gateway.recordings import Chunk, Exchange, Fixture, RecordedRequest, RecordedResponse, fixtures


def fixtures_in(directory: Path) -> dict[str, Fixture]:
    """Every fixture file below `directory`, by name (its file name without `.json`)."""
    return {path.stem: fixtures.load(path) for path in fixtures.fixture_files(directory)}


def exchanges_of(
    source: Path | Mapping[str, Fixture], keep: Callable[[Exchange], bool] | None = None
) -> list[tuple[str, Exchange]]:
    """(`<fixture>#<index>`, exchange) for every exchange of the fixtures (a directory, or fixtures already
    loaded) that `keep` keeps."""
    loaded = fixtures_in(source) if isinstance(source, Path) else source
    return [
        (f"{name}#{i}", exchange)
        for name, fixture in loaded.items()
        for i, exchange in enumerate(fixture.exchanges)
        if keep is None or keep(exchange)
    ]


def params(named: Iterable[tuple[str, Exchange]]) -> list[Any]:
    """pytest params of (id, exchange) pairs."""
    return [pytest.param(exchange, id=name) for name, exchange in named]


def decoded_body(exchange: Exchange) -> bytes:
    """The recorded response body, gzip taken off when it was sent compressed."""
    body = exchange.response.body
    encoding = (fixtures.header(exchange.response.headers, "content-encoding") or "").lower()
    return gzip.decompress(body) if encoding == "gzip" else body


def exchange_with(
    path: str,
    request: bytes | dict[str, Any],
    response: bytes | Sequence[bytes],
    content_type: str | None,
    headers: Sequence[tuple[str, str]] = (),
) -> Exchange:
    """A made-up exchange: `request` (JSON, or raw bytes) POSTed to `path` and answered 200 with `response` (one
    body, or its chunks), labelled `content_type` (None: no content-type header) with `headers` after it."""
    raw = request if isinstance(request, bytes) else json.dumps(request).encode()
    chunks = [response] if isinstance(response, bytes) else list(response)
    labels = [("content-type", content_type)] if content_type is not None else []
    return Exchange(
        RecordedRequest("POST", path, [("content-type", "application/json")], raw),
        RecordedResponse(200, [*labels, *headers], [Chunk(0.0, data) for data in chunks]),
    )


# Framing and hop-by-hop fields: the client library sets its own.
_NOT_REPLAYED = frozenset({"host", "content-length", "transfer-encoding", "connection", "keep-alive", "te",
                           "trailer", "upgrade", "proxy-connection"})


async def send_recorded(gateway_url: str, exchange: Exchange, path: str | None = None) -> tuple[int, bytes]:
    """The recorded request (to `path` instead of the recorded one if given) through the gateway with a raw aiohttp
    client; returns the status and the body as received (still compressed if it was sent so)."""
    sent = exchange.request
    headers = [(k, v) for k, v in sent.headers if k.lower() not in _NOT_REPLAYED]
    async with aiohttp.ClientSession(auto_decompress=False, skip_auto_headers=("User-Agent",)) as client:
        url = URL(gateway_url + (path or sent.path), encoded=True)
        async with client.request(sent.method, url, headers=headers, data=sent.body) as response:
            return response.status, await response.read()
