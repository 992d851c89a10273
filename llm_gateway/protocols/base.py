"""The contract every protocol adapter keeps, and the sans-IO runner that drives one over a relayed exchange.

An adapter module (e.g. `protocols/anthropic.py`) exposes `ADAPTER`, an object with:

- `parse_request(request: HttpRequest, capture: bool) -> ChatRequest`: read the request body. Raise
  `ValueError` (or let orjson raise) on unreadable input; the runner records the problem and carries on.
- `response_parser(request: ChatRequest, head: HttpResponseHead) -> ResponseParser`: a fresh incremental
  parser for a 2xx response body (already decompressed). Non-2xx bodies go to `ErrorBodyParser` instead.
- `provider_name(request: HttpRequest) -> str`: the `gen_ai.provider.name` value.

A `ResponseParser` has `feed(data: bytes) -> list[Event]` and `close() -> list[Event]` (end of body). Neither
ever raises: unreadable input becomes a `ParseIssue` event. No sockets, no event loop, no OpenTelemetry.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

import orjson

from llm_gateway.protocols import events as ev
from llm_gateway.protocols.exchange import ChatRecord, ChatRequest, ExchangeBuilder


@dataclass(frozen=True, slots=True)
class HttpRequest:
    method: str
    path: str  # raw path with query
    headers: Mapping[str, str]  # case-insensitive
    body: bytes
    upstream_url: str = ""  # the upstream base URL the request went to


@dataclass(frozen=True, slots=True)
class HttpResponseHead:
    status: int
    headers: Mapping[str, str]  # case-insensitive


class ResponseParser(Protocol):
    def feed(self, data: bytes) -> list[ev.Event]: ...

    def close(self) -> list[ev.Event]: ...


class Adapter(Protocol):
    def parse_request(self, request: HttpRequest, capture: bool) -> ChatRequest: ...

    def response_parser(self, request: ChatRequest, head: HttpResponseHead) -> ResponseParser: ...

    def provider_name(self, request: HttpRequest) -> str: ...


class ErrorBodyParser:
    """Reads a non-2xx body for the provider's error type and message (Anthropic, OpenAI, Gemini, AWS shapes)."""

    __slots__ = ("_parts", "_status")

    #: error bodies past this size are not kept for reading
    MAX_BYTES = 256 * 1024

    def __init__(self, status: int) -> None:
        self._status = status
        self._parts: list[bytes] = []

    def feed(self, data: bytes) -> list[ev.Event]:
        if sum(map(len, self._parts)) < self.MAX_BYTES:
            self._parts.append(data)
        return []

    def close(self) -> list[ev.Event]:
        etype, message = error_fields(b"".join(self._parts))
        return [ev.ProviderError(etype or str(self._status), message)]


def error_fields(body: bytes) -> tuple[str | None, str | None]:
    """(type, message) from a provider error document, or (None, None) when the body is not one."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        text = body[:500].decode("utf-8", "replace").strip()
        return None, text or None
    if isinstance(doc, list) and doc:  # Gemini's JSON-array streams wrap errors too
        doc = doc[0]
    if not isinstance(doc, dict):
        return None, None
    err = doc.get("error", doc)
    if isinstance(err, str):
        return None, err
    if not isinstance(err, dict):
        return None, None
    etype = err.get("type") or err.get("code") or err.get("status") or doc.get("__type")
    if isinstance(etype, str) and "#" in etype:  # AWS: "com.amazon...#ValidationException"
        etype = etype.rpartition("#")[2]
    message = err.get("message") or err.get("Message") or doc.get("message")
    return (str(etype) if etype is not None else None), (str(message) if message is not None else None)


class _Decompressor:
    """A decompressed copy of a body for the parser; the client still gets the compressed bytes."""

    __slots__ = ("_z",)

    def __init__(self, encoding: str) -> None:
        wbits = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}
        self._z = zlib.decompressobj(wbits[encoding])

    def feed(self, data: bytes) -> bytes:
        return self._z.decompress(data)

    def close(self) -> bytes:
        return self._z.flush()


def _decompressor(encoding: str) -> _Decompressor | str | None:
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        return None
    if encoding in ("gzip", "x-gzip", "deflate"):
        return _Decompressor(encoding)
    return f"content-encoding {encoding!r} is not decoded for tracing; the body was relayed untouched"


class ExchangeRun:
    """Drives one adapter over one exchange: the request, then the response head, then timed body chunks.

    Every adapter call is guarded: whatever an adapter raises becomes a `ParseIssue` on the record.
    """

    __slots__ = ("_builder", "_capture", "_decoder", "_first_chunk_ns", "_parser", "adapter", "request")

    def __init__(self, adapter: Adapter, http_request: HttpRequest, *, capture: bool = False) -> None:
        self.adapter = adapter
        self._capture = capture
        try:
            self.request = adapter.parse_request(http_request, capture)
        except Exception as exc:  # unreadable body: still a call, with what the path tells
            self.request = ChatRequest(parse_issue=f"request: {type(exc).__name__}: {exc}"[:300])
        self._builder: ExchangeBuilder | None = None
        self._parser: ResponseParser | None = None
        self._decoder: _Decompressor | None = None
        self._first_chunk_ns: int | None = None

    def response_head(self, head: HttpResponseHead) -> None:
        builder = self._builder = ExchangeBuilder(self.request, head.status, capture=self._capture)
        decoder = _decompressor(head.headers.get("content-encoding", ""))
        if isinstance(decoder, str):
            builder.add(0, [ev.ParseIssue(decoder)])
            return
        self._decoder = decoder
        if not 200 <= head.status < 300:
            self._parser = ErrorBodyParser(head.status)
            return
        try:
            self._parser = self.adapter.response_parser(self.request, head)
        except Exception as exc:
            builder.add(0, [issue_from("response", exc)])

    def body(self, t_ns: int, data: bytes) -> None:
        if self._first_chunk_ns is None:
            self._first_chunk_ns = t_ns
        parser = self._parser
        if parser is None or self._builder is None:
            return
        try:
            if self._decoder is not None:
                data = self._decoder.feed(data)
            self._builder.add(t_ns, parser.feed(data))
        except Exception as exc:
            self._parser = None  # a parser that raised is not trusted with the rest of the body
            self._builder.add(t_ns, [issue_from("response", exc)])

    def finish(self, t_ns: int) -> ChatRecord:
        """End of the exchange (last byte relayed, or failure). Returns the record."""
        builder = self._builder
        if builder is None:  # no response head: the upstream never answered
            builder = self._builder = ExchangeBuilder(self.request, None, capture=self._capture)
        parser = self._parser
        if parser is not None:
            try:
                events = parser.feed(self._decoder.close()) if self._decoder is not None else []
                builder.add(t_ns, events + parser.close())
            except Exception as exc:
                builder.add(t_ns, [issue_from("response", exc)])
            self._parser = None
        return builder.finish(self._first_chunk_ns)


def issue_from(where: str, exc: Exception) -> ev.ParseIssue:
    return ev.ParseIssue(f"{where}: {type(exc).__name__}: {exc}"[:300])
