"""The head of an upstream's answer as the client gets it (sans-IO): the upstream's end-to-end fields as received,
in order, and only what this hop must add: the framing the body goes with (the upstream's Content-Length, else
`Transfer-Encoding: chunked` to an HTTP/1.1 client, else the connection's end), `Connection` where keep-alive
differs from the version's default, and `Date` when the upstream sent none (RFC 9110 section 6.6.1). No `Server`,
no default `Content-Type`: the client sees the upstream's. Both servers write it (`connection.py`, and
`relayed_response.py` for aiohttp's).
"""

from __future__ import annotations

from typing import Any, NamedTuple

from aiohttp.helpers import rfc822_formatted_time

from llm_gateway.upstream.http1 import HEADER_NAMES, HOP_BY_HOP, PLAIN_CONNECTION, Fields, end_to_end, header_name

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
    `keep_alive`: the client's request's. One pass over the fields (this runs for every answer); one whose
    Connection field names other fields is read by `end_to_end`."""
    block = [b"HTTP/1.%d %d %s\r\n" % (http11, status, reason.encode())]
    length_at = -1  # where the Content-Length field is in `block`
    length: int | None = None
    dated = transfer_coded = False
    for name, value in fields:
        key = (HEADER_NAMES.get(name) or header_name(name))[1]
        if key not in HOP_BY_HOP:
            dated = dated or key == "date"
            block += (name, b": ", value, b"\r\n")
        elif key == "content-length":
            length_at, length = len(block), _length(value)
            block += (name, b": ", value, b"\r\n")
        elif key == "transfer-encoding":
            transfer_coded = True
        elif key == "connection" and value.strip().lower() not in PLAIN_CONNECTION:
            return _listing_connection(status, reason, fields, method=method, http11=http11, keep_alive=keep_alive)
    bodiless_status = status in (204, 304) or 100 <= status < 200
    empty = bodiless_status or method == "HEAD"
    # Transfer-Encoding wins over Content-Length (RFC 9112 section 6.3; both parsers the relay reads upstreams with
    # refuse an answer that has both, and a malformed length). A 204 or 304 must not carry one (a HEAD's tells what
    # a GET would get).
    if transfer_coded or bodiless_status:
        length = None
    if length_at >= 0 and length is None:
        del block[length_at : length_at + 4]
    chunked = not empty and length is None and http11
    if not empty and length is None and not http11:
        keep_alive = False  # an HTTP/1.0 client: the body ends with the connection
    if chunked:
        block.append(b"Transfer-Encoding: chunked\r\n")
    if not dated:
        block.append(b"Date: %s\r\n" % rfc822_formatted_time().encode())
    if not keep_alive and http11:
        block.append(b"Connection: close\r\n")
    elif keep_alive and not http11:
        block.append(b"Connection: keep-alive\r\n")
    block.append(b"\r\n")
    return ResponseHead(b"".join(block), None if empty else length, chunked, empty, keep_alive)


def _listing_connection(status: int, reason: str, fields: Fields, **request: Any) -> ResponseHead:
    """The head of an answer whose Connection field names fields that stop at this hop too."""
    kept = end_to_end(fields, _DROPPED)
    if any(name.lower() == b"transfer-encoding" for name, _ in fields):
        kept = [(name, value) for name, value in kept if name.lower() != b"content-length"]
    return response_head(status, reason, kept, **request)


def _length(value: bytes) -> int | None:
    try:
        return int(value)
    except ValueError:  # the upstream's parser takes none but digits; aiohttp's client's alike
        return None
