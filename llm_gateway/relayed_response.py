"""An upstream's answer on its way to the client through aiohttp's server, its head written from the bytes it came in.

aiohttp's `StreamResponse` keeps headers as text in a CIMultiDict, checks them and writes them out again: for a
relayed answer that is the upstream's fields read into text and back (about 8 µs a request with the relay's own
reading of them, a tenth of its CPU at full load). `RelayedResponse` writes the head `front.response_head` makes
of the fields as received, and frames the body the way that head says.
"""

from __future__ import annotations

from aiohttp import HttpVersion11, web

from llm_gateway.front.response_head import response_head
from llm_gateway.upstream.http1 import Fields


class RelayedResponse(web.StreamResponse):
    """`fields`: the upstream's header fields as received (hop-by-hop ones are dropped). `head_with_body`: the
    head waits for the first body write, to go out with it in one (a whole short answer)."""

    def __init__(self, status: int, reason: str, fields: Fields, *, head_with_body: bool = False) -> None:
        super().__init__(status=status, reason=reason)
        self._upstream_fields = fields
        self._head = b""
        self._send_headers_immediately = not head_with_body  # aiohttp 3.11 on

    async def _prepare_headers(self) -> None:
        request, writer = self._req, self._payload_writer
        assert request is not None and writer is not None
        head = response_head(self.status, self.reason, self._upstream_fields, method=request.method,
                             http11=request.version >= HttpVersion11,
                             keep_alive=request.keep_alive if self._keep_alive is None else self._keep_alive)
        if head.length is not None:
            writer.length = head.length
        elif head.chunked:
            writer.enable_chunking()
        self._keep_alive = head.keep_alive
        self._head = head.block

    async def _write_headers(self) -> None:
        writer = self._payload_writer
        assert writer is not None
        # What aiohttp's `write_headers` does with the block it serialized: the writer sends it with the first
        # body write, or now (aiohttp 3.11 on; `pyproject.toml` asks for it).
        writer._headers_buf, writer._headers_written = self._head, False
        if self._send_headers_immediately:
            writer.send_headers()
