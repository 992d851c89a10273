"""An upstream's answer on its way to the client through aiohttp's server, its head written from the bytes it came in.

aiohttp's `StreamResponse` keeps headers as text in a CIMultiDict, checks them and writes them out again: for a
relayed answer that is the upstream's fields read into text and back (about 8 µs a request with the relay's own
reading of them, a tenth of its CPU at full load). `RelayedResponse` sends the upstream's end-to-end fields as
received, in order, and adds only what this hop must say: the framing aiohttp writes the body with (the upstream's
Content-Length, else `Transfer-Encoding: chunked` to an HTTP/1.1 client), `Connection` where keep-alive differs
from the version's default, and `Date` when the upstream sent none (RFC 9110 section 6.6.1). Unlike aiohttp's
own responses it adds no `Server` and no default `Content-Type`: the client sees the upstream's.
"""

from __future__ import annotations

from aiohttp import HttpVersion10, HttpVersion11, web
from aiohttp.helpers import rfc822_formatted_time, should_remove_content_length

from llm_gateway.upstream.http1 import HEADER_NAMES, HOP_BY_HOP, Fields, end_to_end, header_name

# Content-Length is the upstream's to keep (the body goes on as it came); the others this hop frames anew.
_DROPPED = HOP_BY_HOP - {"content-length"}


class RelayedResponse(web.StreamResponse):
    """`fields`: the upstream's header fields as received (hop-by-hop ones are dropped here). `head_with_body`:
    the head waits for the first body write, to go out with it in one (a whole short answer)."""

    def __init__(self, status: int, reason: str, fields: Fields, *, head_with_body: bool = False) -> None:
        super().__init__(status=status, reason=reason)
        names = {(HEADER_NAMES.get(name) or header_name(name))[1] for name, _ in fields}
        self._fields = end_to_end(fields, _DROPPED if "transfer-encoding" not in names else HOP_BY_HOP)
        # Transfer-Encoding wins over Content-Length (RFC 9112 section 6.3; both parsers the relay reads upstreams
        # with refuse an answer that has both, and a malformed length)
        self._length = (_content_length(self._fields) if "content-length" in names and "transfer-encoding" not in
                        names else None)
        if self._length is None and "content-length" in names:
            self._fields = end_to_end(self._fields, frozenset({"content-length"}))
        self._dated = "date" in names
        self._added: list[bytes] = []
        self._send_headers_immediately = not head_with_body  # aiohttp 3.11 on

    async def _prepare_headers(self) -> None:
        """The framing, as aiohttp's own `_prepare_headers` decides it for a response of this length."""
        request, writer = self._req, self._payload_writer
        assert request is not None and writer is not None
        keep_alive = request.keep_alive if self._keep_alive is None else self._keep_alive
        version, length, added = request.version, self._length, self._added
        if self._must_be_empty_body:  # a HEAD, 204 or 304: the upstream's Content-Length tells what a GET would get
            if length is not None and should_remove_content_length(request.method, self.status):
                self._fields = end_to_end(self._fields, frozenset({"content-length"}))
        elif length is not None:
            writer.length = length
        elif version >= HttpVersion11:
            writer.enable_chunking()
            added.append(b"Transfer-Encoding: chunked\r\n")
        else:  # an HTTP/1.0 client: the body ends with the connection
            keep_alive = False
        self._keep_alive = keep_alive
        if not self._dated:
            added.append(b"Date: %s\r\n" % rfc822_formatted_time().encode())
        if not keep_alive and version == HttpVersion11:
            added.append(b"Connection: close\r\n")
        elif keep_alive and version == HttpVersion10:
            added.append(b"Connection: keep-alive\r\n")

    async def _write_headers(self) -> None:
        request, writer = self._req, self._payload_writer
        assert request is not None and writer is not None
        version = request.version
        parts = [f"HTTP/{version.major}.{version.minor} {self.status} {self.reason}\r\n".encode()]
        for name, value in self._fields:
            parts += (name, b": ", value, b"\r\n")
        parts += self._added
        parts.append(b"\r\n")
        # What aiohttp's `write_headers` does with the block it serialized: the writer sends it with the first
        # body write, or now (aiohttp 3.11 on; `pyproject.toml` asks for it).
        writer._headers_buf, writer._headers_written = b"".join(parts), False
        if self._send_headers_immediately:
            writer.send_headers()


def _content_length(fields: list[tuple[bytes, bytes]]) -> int | None:
    """The Content-Length the fields kept carry (the upstream's Connection field may have named it hop-by-hop)."""
    value = next((value for name, value in fields if (HEADER_NAMES.get(name) or header_name(name))[1] ==
                  "content-length"), None)
    try:
        return int(value) if value is not None else None
    except ValueError:  # the upstream's parser takes none but digits; aiohttp's client's alike
        return None
