"""WebSocket frames at the byte level, for tests that must see (or make) exactly what crosses a connection: an
encoder, a sans-IO reader that joins fragments into messages, and `FrameTap`, a TCP relay that sits between a
client and the gateway and keeps the messages each way. No extension is understood: a frame with an RSV bit set
fails the test (the gateway negotiates none)."""

from __future__ import annotations

import asyncio
import itertools
import os
from contextlib import suppress
from dataclasses import dataclass, field

TEXT, BINARY, CLOSE, PING, PONG, CONTINUATION = 1, 2, 8, 9, 10, 0


def encode(opcode: int, payload: bytes, *, fin: bool = True, masked: bool = True) -> bytes:
    """One frame; a client's frames are masked (RFC 6455 section 5.3)."""
    head = bytes([(0x80 if fin else 0) | opcode])
    size = len(payload)
    mask_bit = 0x80 if masked else 0
    if size < 126:
        head += bytes([mask_bit | size])
    elif size < 1 << 16:
        head += bytes([mask_bit | 126]) + size.to_bytes(2, "big")
    else:
        head += bytes([mask_bit | 127]) + size.to_bytes(8, "big")
    if not masked:
        return head + payload
    key = os.urandom(4)
    return head + key + _unmask(payload, key)


def fragments(opcode: int, payload: bytes, cuts: list[int], *, masked: bool = True) -> bytes:
    """A message as frames cut at `cuts` (offsets into the payload): the first carries the opcode, the rest are
    continuations, the last has FIN."""
    bounds = [0, *sorted(c for c in set(cuts) if 0 < c < len(payload)), len(payload)]
    pieces = [payload[a:b] for a, b in itertools.pairwise(bounds)]
    return b"".join(encode(opcode if i == 0 else CONTINUATION, piece, fin=i == len(pieces) - 1, masked=masked)
                    for i, piece in enumerate(pieces))


def _unmask(data: bytes, key: bytes) -> bytes:
    repeated = (key * (len(data) // 4 + 1))[: len(data)]
    return (int.from_bytes(data, "big") ^ int.from_bytes(repeated, "big")).to_bytes(len(data), "big") if data else b""


@dataclass
class MessageReader:
    """`feed(bytes) -> [(opcode, payload)]`: whole messages (control frames as they come, between fragments)."""

    buffer: bytearray = field(default_factory=bytearray)
    pending: tuple[int, bytearray] | None = None

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        self.buffer += data
        out: list[tuple[int, bytes]] = []
        while (frame := self._frame()) is not None:
            fin, opcode, payload = frame
            if opcode >= 8:
                out.append((opcode, payload))
            elif opcode == CONTINUATION:
                assert self.pending is not None, "a continuation without a first frame"
                self.pending[1].extend(payload)
            else:
                assert self.pending is None, "a new message inside a fragmented one"
                self.pending = (opcode, bytearray(payload))
            if fin and opcode < 8 and self.pending is not None:
                out.append((self.pending[0], bytes(self.pending[1])))
                self.pending = None
        return out

    def _frame(self) -> tuple[bool, int, bytes] | None:
        buf = self.buffer
        if len(buf) < 2:
            return None
        assert buf[0] & 0x70 == 0, "an RSV bit is set: an extension was negotiated"
        size, pos = buf[1] & 0x7F, 2
        if size == 126:
            if len(buf) < 4:
                return None
            size, pos = int.from_bytes(buf[2:4], "big"), 4
        elif size == 127:
            if len(buf) < 10:
                return None
            size, pos = int.from_bytes(buf[2:10], "big"), 10
        key = None
        if buf[1] & 0x80:
            if len(buf) < pos + 4:
                return None
            key, pos = bytes(buf[pos:pos + 4]), pos + 4
        if len(buf) < pos + size:
            return None
        payload = bytes(buf[pos:pos + size])
        fin, opcode = bool(buf[0] & 0x80), buf[0] & 0x0F
        del buf[:pos + size]
        return fin, opcode, _unmask(payload, key) if key else payload


@dataclass
class _Direction:
    """One direction of a tapped connection: its HTTP head, then the bytes after it."""

    head: bytearray = field(default_factory=bytearray)
    rest: bytearray = field(default_factory=bytearray)
    in_head: bool = True

    def feed(self, data: bytes) -> None:
        if not self.in_head:
            self.rest += data
            return
        self.head += data
        end = self.head.find(b"\r\n\r\n")
        if end >= 0:
            self.rest += self.head[end + 4:]
            del self.head[end + 4:]
            self.in_head = False

    def messages(self) -> list[tuple[int, bytes]]:
        return MessageReader().feed(bytes(self.rest))


class FrameTap:
    """A TCP relay on 127.0.0.1 in front of `target` (host, port) that keeps, per connection, the upgrade heads and
    the messages each way: `sent` by the client, `received` by it."""

    def __init__(self, target: tuple[str, int]) -> None:
        self._target = target
        self._server: asyncio.Server | None = None
        self.connections: list[tuple[_Direction, _Direction]] = []
        self._tasks: set[asyncio.Task] = set()

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def start(self) -> FrameTap:
        self._server = await asyncio.start_server(self._connection, "127.0.0.1", 0)
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in self._tasks:
            task.cancel()

    def sent(self) -> list[tuple[int, bytes]]:
        """Every message the clients sent on upgraded connections, in order."""
        return [m for up, _ in self._upgraded() for m in up.messages()]

    def received(self) -> list[tuple[int, bytes]]:
        """Every message the clients received on upgraded connections, in order."""
        return [m for _, down in self._upgraded() for m in down.messages()]

    def _upgraded(self) -> list[tuple[_Direction, _Direction]]:
        return [(up, down) for up, down in self.connections if down.head.startswith(b"HTTP/1.1 101")]

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        target_reader, target_writer = await asyncio.open_connection(*self._target)
        up, down = _Direction(), _Direction()
        self.connections.append((up, down))

        async def pump(source: asyncio.StreamReader, sink: asyncio.StreamWriter, seen: _Direction) -> None:
            with suppress(ConnectionError):
                while data := await source.read(65536):
                    sink.write(data)
                    seen.feed(data)
                    await sink.drain()
            with suppress(OSError):
                sink.close()

        tasks = [asyncio.ensure_future(pump(reader, target_writer, up)),
                 asyncio.ensure_future(pump(target_reader, writer, down))]
        self._tasks.update(tasks)
        await asyncio.gather(*tasks, return_exceptions=True)
