"""A request's head, read for the front end (sans-IO): llhttp (httptools) checks the bytes, and whatever is not a
plain request the front end serves raises `NotServed`, so that aiohttp reads the same bytes and answers them.

Served: an origin-form target outside `/_gateway/`, HTTP/1.0 or 1.1 (with one Host field), no body or one framed by
Content-Length, none of Transfer-Encoding, Expect and Upgrade, no field twice that aiohttp takes once
(`SINGLETON_HEADERS`), a head of at most MAX_HEAD_BYTES ending in CRLF CRLF. That is what agents'
SDKs send for a model call. Everything else (chunked bodies, `100-continue`, WebSocket upgrades, CONNECT and
absolute-form proxy requests, the gateway's endpoints, malformed or odd bytes) goes to aiohttp, whose limits and
answers (400, 413, 431, 501) then apply as before.
"""

from __future__ import annotations

from typing import NamedTuple

import httptools
from aiohttp.http_parser import SINGLETON_HEADERS

from llm_gateway.upstream.http1 import HEADER_NAMES, header_name

#: a head longer than this goes to aiohttp, whose limit for one line is 8,190 bytes (agents' heads: 1-4 KiB)
MAX_HEAD_BYTES = 8 * 1024
_GATEWAY_PATHS = b"/_gateway/"
# Each asks for more than the front end does: a coding other than Content-Length, an interim answer, a new protocol.
_NOT_SERVED_FIELDS = frozenset({"transfer-encoding", "expect", "upgrade"})


class NotServed(Exception):
    """The request is aiohttp's to read (see the module's docstring)."""


class RequestHead(NamedTuple):
    method: str
    target: str  # path and query exactly as sent
    http11: bool  # HTTP/1.1; else HTTP/1.0
    keep_alive: bool  # the connection may carry another request after this one's answer
    fields: list[tuple[bytes, bytes]]  # as received, in order
    headers: dict[str, str]  # lowercase name -> the first value as text (what the router reads)
    length: int  # Content-Length, 0 without one
    size: int  # bytes of the head, CRLF CRLF included


class HeadReader:
    """Reads one request's head from the bytes of the connection as they come; also the parser's callbacks."""

    __slots__ = ("_fed", "_fields", "_headers", "_keep_alive", "_length", "_method", "_parser", "_refused", "_url",
                 "_version")

    def __init__(self) -> None:
        self._parser: httptools.HttpRequestParser | None = httptools.HttpRequestParser(self)
        self._fed = 0  # bytes of the buffer the parser has seen
        self._url = b""
        self._fields: list[tuple[bytes, bytes]] = []
        self._headers: dict[str, str] = {}
        self._length = b""
        self._refused = False
        self._version = ""  # set once the head is complete, with the method and keep-alive
        self._method = b""
        self._keep_alive = False

    def read(self, buffer: bytes | bytearray) -> RequestHead | None:
        """The head, once `buffer` (the bytes from the request's first, more of them on each call) holds all of it;
        None until then. Raises NotServed."""
        parser, fed = self._parser, self._fed
        assert parser is not None, "read again after the head was read"
        end = buffer.find(b"\r\n\r\n", fed - 3 if fed > 3 else 0)
        stop = end + 4 if end >= 0 else len(buffer)
        if stop > MAX_HEAD_BYTES:
            raise NotServed
        try:
            parser.feed_data(buffer[fed:stop] if fed or stop < len(buffer) else buffer)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade):  # the latter: CONNECT, Upgrade
            self._parser = None
            raise NotServed from None
        self._fed = stop
        version = self._version
        if end < 0:
            if version:  # llhttp took a head that does not end in CRLF CRLF: odd bytes, aiohttp's
                raise NotServed
            return None
        self._parser = None  # it holds this reader (its callbacks): no cycle left for the collector
        url = self._url
        if (version not in ("1.1", "1.0") or self._refused or url[:1] != b"/" or url.startswith(_GATEWAY_PATHS)
                or not url.isascii() or (version == "1.1" and "host" not in self._headers)):
            raise NotServed
        return RequestHead(self._method.decode("ascii"), url.decode("ascii"), version == "1.1", self._keep_alive,
                           self._fields, self._headers, int(self._length) if self._length else 0, stop)

    # --- the parser's callbacks (httptools) ---

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self._fields.append((name, value))
        lowered = (HEADER_NAMES.get(name) or header_name(name))[1]
        if lowered == "content-length":
            self._length = value  # llhttp refuses a second one and any but digits
        elif lowered in _NOT_SERVED_FIELDS:
            self._refused = True
        if lowered not in self._headers:
            self._headers[lowered] = value.decode("utf-8", "surrogateescape")
        elif lowered in SINGLETON_HEADERS:  # a second Host, Content-Type, User-Agent...: aiohttp answers 400
            self._refused = True

    def on_headers_complete(self) -> None:
        # Read now: once a request without a body is complete, llhttp has forgotten its Connection field.
        parser = self._parser
        assert parser is not None
        self._version, self._method, self._keep_alive = (
            parser.get_http_version(), parser.get_method(), parser.should_keep_alive())
