"""The head of an upstream's answer as the client gets it (sans-IO): the upstream's end-to-end fields as received,
in order, and only what this hop must add: the framing the body goes with (the upstream's Content-Length, else
`Transfer-Encoding: chunked` to an HTTP/1.1 client, else the connection's end), `Connection` where keep-alive
differs from the version's default, and `Date` when the upstream sent none (RFC 9110 section 6.6.1). No `Server`,
no default `Content-Type`: the client sees the upstream's. Both servers write it (`connection.py`, and
`relayed_response.py` for aiohttp's).
"""

from __future__ import annotations

from typing import NamedTuple

from aiohttp.helpers import rfc822_formatted_time

from llm_gateway.upstream.http1 import HEADER_NAMES, HOP_BY_HOP, Fields, end_to_end, header_name

# Content-Length is the upstream's to keep (the body goes on as it came); the others this hop frames anew.
_DROPPED = HOP_BY_HOP - {"content-length"}


class ResponseHead(NamedTuple):
    block: bytes  # status line and header fields, CRLF CRLF included
    length: int | None  # the body's Content-Length, when it has one and may have a body
    chunked: bool  # the body goes in chunks
    empty: bool  # no body follows whatever the fields say (HEAD, 1xx, 204, 304)
    keep_alive: bool  # else the connection closes after the answer (or ends its body)


def response_head(status: int, reason: str, fields: Fields, *, method: str, http11: bool,
                  keep_alive: bool) -> ResponseHead:
    """`fields`: the upstream's, as received (hop-by-hop ones are dropped here); `method`, `http11` and
    `keep_alive`: the client's request's."""
    names = {(HEADER_NAMES.get(name) or header_name(name))[1] for name, _ in fields}
    # Transfer-Encoding wins over Content-Length (RFC 9112 section 6.3; both parsers the relay reads upstreams with
    # refuse an answer that has both, and a malformed length)
    framed_by_length = "content-length" in names and "transfer-encoding" not in names
    kept = end_to_end(fields, _DROPPED if framed_by_length else HOP_BY_HOP)
    length = _content_length(kept) if framed_by_length else None
    bodiless_status = status in (204, 304) or 100 <= status < 200
    empty = bodiless_status or method == "HEAD"
    if framed_by_length and (length is None or bodiless_status):
        # a length that is not one, or the upstream's Connection field named hop-by-hop; one a 204 or 304 must not
        # carry (a HEAD's tells what a GET would get)
        kept = end_to_end(kept, frozenset({"content-length"}))
    chunked = not empty and length is None and http11
    if not empty and length is None and not http11:
        keep_alive = False  # an HTTP/1.0 client: the body ends with the connection
    parts = [b"HTTP/1.%d %d %s\r\n" % (http11, status, reason.encode())]
    for name, value in kept:
        parts += (name, b": ", value, b"\r\n")
    if chunked:
        parts.append(b"Transfer-Encoding: chunked\r\n")
    if "date" not in names:
        parts.append(b"Date: %s\r\n" % rfc822_formatted_time().encode())
    if not keep_alive and http11:
        parts.append(b"Connection: close\r\n")
    elif keep_alive and not http11:
        parts.append(b"Connection: keep-alive\r\n")
    parts.append(b"\r\n")
    return ResponseHead(b"".join(parts), None if empty else length, chunked, empty, keep_alive)


def _content_length(fields: list[tuple[bytes, bytes]]) -> int | None:
    """The Content-Length the fields kept carry (the upstream's Connection field may have named it hop-by-hop)."""
    value = next((value for name, value in fields if (HEADER_NAMES.get(name) or header_name(name))[1] ==
                  "content-length"), None)
    try:
        return int(value) if value is not None else None
    except ValueError:  # the upstream's parser takes none but digits; aiohttp's client's alike
        return None
