"""A CONNECT tunnel to a host the proxy does not read: bytes copied both ways unchanged, with back-pressure.

Each side is a protocol on its own transport; what one side receives is written to the other. When a side's write
buffer fills, the other side stops reading until it drains (asyncio's pause_writing / resume_writing). An EOF is
passed on as a half-close; the tunnel closes when both directions ended or either connection was lost.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable


class TunnelSide(asyncio.Protocol):
    __slots__ = ("_on_close", "_unsent", "eof", "peer", "transport")

    def __init__(self, on_close: Callable[[TunnelSide], None] | None = None) -> None:
        self.transport: asyncio.Transport | None = None
        self.peer: TunnelSide | None = None
        self.eof = False
        self._on_close = on_close
        self._unsent: list[bytes] = []  # received before the other side was there (a host that speaks first)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        peer = self.peer
        if peer is not None and peer.transport is not None:
            peer.transport.write(data)
        elif peer is None:
            self._unsent.append(data)

    def eof_received(self) -> bool:
        self.eof = True
        peer = self.peer
        if peer is None or peer.transport is None or peer.eof:
            return False  # both directions ended: close
        if peer.transport.can_write_eof():
            peer.transport.write_eof()
            return True  # half-closed: the other direction goes on
        return False

    def connection_lost(self, exc: BaseException | None) -> None:
        self.transport = None
        peer = self.peer
        if peer is not None and peer.transport is not None:
            if exc is None:
                peer.transport.close()  # what is buffered still goes out
            else:
                peer.transport.abort()
        if self._on_close is not None:
            self._on_close(self)

    def pause_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.resume_reading()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.abort()


def join(client: TunnelSide, upstream: TunnelSide) -> None:
    """Connect the two sides; what either received before is passed on now."""
    client.peer, upstream.peer = upstream, client
    for side in (client, upstream):
        unsent, side._unsent = side._unsent, []
        for data in unsent:
            side.data_received(data)
