"""A request's head, read for the front end (sans-IO): llhttp (httptools) checks the bytes, and whatever is not a
plain request the front end serves raises `NotServed`, so that aiohttp reads the same bytes and answers them.

Served: an origin-form target outside `/_gateway/`, HTTP/1.0 or 1.1 (with one Host field), no body or one framed by
Content-Length, none of Transfer-Encoding, Expect and Upgrade, no field twice that aiohttp takes once
(`SINGLETON_HEADERS`) and no second Connection field, a head of at most MAX_HEAD_BYTES ending in CRLF CRLF and
starting with the request line. That is what agents' SDKs send for a model call. Everything else (chunked bodies,
`100-continue`, WebSocket upgrades, CONNECT and absolute-form proxy requests, the gateway's endpoints, malformed or
odd bytes) goes to aiohttp, whose limits and answers (400, 413, 431, 501) then apply as before.

llhttp is given no callbacks: each would be a Python call per header field, which cost more than the rest of the
reading. Once it has taken a head, the head is read here by splitting its lines, which llhttp has checked.
"""

from __future__ import annotations

from typing import NamedTuple

import httptools
from aiohttp.http_parser import SINGLETON_HEADERS

from llm_gateway.upstream.http1 import HEADER_NAMES, HOP_BY_HOP, PLAIN_CONNECTION, end_to_end, header_name

#: a head longer than this goes to aiohttp, whose limit for one line is 8,190 bytes (agents' heads: 1-4 KiB)
MAX_HEAD_BYTES = 8 * 1024
_GATEWAY_PATHS = b"/_gateway/"
# Each asks for more than the front end does: a coding other than Content-Length, an interim answer, a new protocol.
_NOT_SERVED_FIELDS = frozenset({"transfer-encoding", "expect", "upgrade"})
# aiohttp refuses a second one of these (400); a second Connection field would be one more list to read
_ONCE = SINGLETON_HEADERS | {"connection"}


class NotServed(Exception):
    """The request is aiohttp's to read (see the module's docstring)."""


class RequestHead(NamedTuple):
    method: str
    target: str  # path and query exactly as sent
    http11: bool  # HTTP/1.1; else HTTP/1.0
    keep_alive: bool  # the connection may carry another request after this one's answer
    fields: list[tuple[bytes, bytes]]  # as received, in order
    forwarded: list[tuple[bytes, bytes]]  # the end-to-end ones (`http1.end_to_end`)
    headers: dict[str, str]  # lowercase name -> the first value as text (what the router reads)
    length: int  # Content-Length, 0 without one
    size: int  # bytes of the head, CRLF CRLF included


class HeadReader:
    """Reads the heads of a connection's requests, one at a time, from its bytes as they come."""

    __slots__ = ("_fed", "_parser")
    # httptools looks these up on the object it is given: present and None, none is called
    on_message_begin = on_url = on_header = on_headers_complete = on_body = on_message_complete = None
    on_chunk_header = on_chunk_complete = None

    def __init__(self) -> None:
        self._parser: httptools.HttpRequestParser | None = None
        self._fed = 0  # bytes of the request's the parser has seen

    def read(self, buffer: bytes | bytearray) -> RequestHead | None:
        """The head of the request whose first byte starts `buffer`, once `buffer` holds all of it (call again with
        more bytes until then: they are checked as they come); None until then. Raises NotServed."""
        parser, fed = self._parser, self._fed
        if parser is None:
            parser = self._parser = httptools.HttpRequestParser(self)
        end = buffer.find(b"\r\n\r\n", fed - 3 if fed > 3 else 0)
        stop = end + 4 if end >= 0 else len(buffer)
        if stop > MAX_HEAD_BYTES or buffer[:1] in (b"\r", b"\n"):  # a long head, an empty line first
            self._parser, self._fed = None, 0
            raise NotServed
        try:
            parser.feed_data(buffer[fed:stop] if fed or stop < len(buffer) else buffer)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade):  # the latter: CONNECT, Upgrade
            self._parser, self._fed = None, 0
            raise NotServed from None
        if end < 0:
            self._fed = stop
            return None
        self._parser, self._fed = None, 0  # the next request's head is read by a new parser
        return parse_head(bytes(buffer[:stop]))


def parse_head(head: bytes) -> RequestHead:
    """A head llhttp took, CRLF CRLF included; raises NotServed for one the front end does not serve."""
    lines = head.split(b"\r\n")
    request_line = lines[0].split(b" ")
    if len(request_line) != 3:
        raise NotServed
    method, target, version = request_line
    if (version not in (b"HTTP/1.1", b"HTTP/1.0") or target[:1] != b"/" or target.startswith(_GATEWAY_PATHS)
            or not target.isascii()):
        raise NotServed
    fields: list[tuple[bytes, bytes]] = []
    forwarded: list[tuple[bytes, bytes]] = []
    headers: dict[str, str] = {}
    connection = b""
    for line in lines[1:-2]:  # one pass: this runs for every request
        name, _, value = line.partition(b":")
        field = (name, value.strip(b" \t"))
        fields.append(field)
        key = (HEADER_NAMES.get(name) or header_name(name))[1]
        if key in headers:
            if key in _ONCE:
                raise NotServed
        else:
            headers[key] = field[1].decode("utf-8", "surrogateescape")
        if key in HOP_BY_HOP:
            if key in _NOT_SERVED_FIELDS:
                raise NotServed
            if key == "connection":
                connection = field[1].lower()
        else:
            forwarded.append(field)
    http11 = version == b"HTTP/1.1"
    if http11 and "host" not in headers:
        raise NotServed
    tokens = {token.strip() for token in connection.split(b",")} if connection else set()
    if tokens - PLAIN_CONNECTION:  # the Connection field names fields that stop here too
        forwarded = end_to_end(fields)
    keep_alive = b"close" not in tokens if http11 else b"keep-alive" in tokens
    length = headers.get("content-length")
    return RequestHead(method.decode("ascii"), target.decode("ascii"), http11, keep_alive, fields, forwarded,
                       headers, int(length) if length else 0, len(head))
