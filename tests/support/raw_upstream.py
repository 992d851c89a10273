"""A raw upstream on loopback that answers with scripted bytes, for the tests of the gateway's upstream clients."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from llm_gateway.upstream.connection import UpstreamResponse

#: a connection's script: reads the request(s) from `reader`, answers on `writer`
Script = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class RawUpstream:
    def __init__(self) -> None:
        self.url = ""
        self.connections = 0
        self.requests: list[bytes] = []


@asynccontextmanager
async def raw_upstream(script: Script) -> AsyncIterator[RawUpstream]:
    upstream = RawUpstream()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream.connections += 1
        try:
            await script(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    upstream.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    try:
        yield upstream
    finally:
        server.close()
        await server.wait_closed()


async def read_request(reader: asyncio.StreamReader, upstream: RawUpstream) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                   if line.lower().startswith(b"content-length:")), 0)
    request = head + await reader.readexactly(length)
    upstream.requests.append(request)
    return request


def answer_once(answer: bytes, *, then_close: bool = True) -> Script:
    """A connection that reads one request head, sends `answer`, then closes (or waits for the client to)."""

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(answer)
        await writer.drain()
        if not then_close:
            await reader.read()

    return script


async def body_of(response: UpstreamResponse) -> bytes:
    parts = []
    while chunk := await response.read():
        parts.append(chunk)
    return b"".join(parts)
