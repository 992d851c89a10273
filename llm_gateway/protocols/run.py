"""The exchange driver: runs one adapter over one relayed exchange (`ExchangeRun`)."""

from __future__ import annotations

from llm_gateway.protocols import events as ev
from llm_gateway.protocols.base import Adapter, HttpRequest, HttpResponseHead, ResponseParser
from llm_gateway.protocols.decompress import Decompressor, decompressor
from llm_gateway.protocols.errors import ErrorBodyParser, issue_from
from llm_gateway.protocols.exchange import ChatRecord, ChatRequest, ExchangeBuilder

#: gaps kept per call: a stream's first 16384 chunks (each is a histogram point; longer streams are rare)
_MAX_CHUNK_GAPS = 16384


class ExchangeRun:
    """Drives one adapter over one exchange: the request, then the response head, then timed body chunks, then
    the end. A 2xx body goes to the adapter's parser, any other to `ErrorBodyParser`, decompressed in both cases.

    Every adapter call is guarded: whatever an adapter raises becomes a `ParseIssue` on the record.

    `chunk_gaps_ns` times a stream's chunks for the time-per-output-chunk metric: a chunk is a piece of the body
    that completes at least one event (a piece that completes none is not yet a chunk to the reader), and each gap
    is the time from the chunk before it.
    """

    __slots__ = ("_builder", "_capture", "_decoder", "_first_chunk_ns", "_last_chunk_ns", "_parser", "adapter",
                 "chunk_gaps_ns", "request")

    def __init__(self, adapter: Adapter, http_request: HttpRequest, *, capture: bool = False) -> None:
        self.adapter = adapter
        self._capture = capture
        try:
            self.request = adapter.parse_request(http_request, capture)
        except Exception as exc:  # unreadable body: still a call, with what the path tells
            self.request = ChatRequest(parse_issue=issue_from("request", exc).detail)
        self._builder: ExchangeBuilder | None = None
        self._parser: ResponseParser | None = None
        self._decoder: Decompressor | None = None
        self._first_chunk_ns: int | None = None
        self._last_chunk_ns: int | None = None
        self.chunk_gaps_ns: list[int] = []

    def response_head(self, head: HttpResponseHead) -> None:
        builder = self._builder = ExchangeBuilder(self.request, head.status, capture=self._capture)
        decoder = decompressor(head.headers.get("content-encoding", ""))
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
            events = parser.feed(data)
            if events:
                self._chunk(t_ns)
            self._builder.add(t_ns, events)
        except Exception as exc:
            self._parser = None  # a parser that raised is not trusted with the rest of the body
            self._builder.add(t_ns, [issue_from("response", exc)])

    def _chunk(self, t_ns: int) -> None:
        if self._last_chunk_ns is not None and len(self.chunk_gaps_ns) < _MAX_CHUNK_GAPS:
            self.chunk_gaps_ns.append(t_ns - self._last_chunk_ns)
        self._last_chunk_ns = t_ns

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
