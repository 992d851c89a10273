"""Streamed bodies: byte-exact at any chunk boundary, relayed as they arrive, and cut when either side goes."""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack

import aiohttp
import pytest
from aiohttp import web

from llm_gateway.config import Settings
from llm_gateway.flow import Flow, observe_chunks
from llm_gateway.recordings import load
from tests.support import FIXTURES
from tests.support.servers import running_gateway, running_upstream

# A recorded Gemini SSE body: CRLF line ends and multi-byte UTF-8 characters.
_RECORDED = load(FIXTURES / "gemini" / "tool-loop-streaming.json").exchanges[2].response.body
_WAIT = 2.0  # seconds: far above anything these exchanges need on loopback


def awkward_chunks(body: bytes) -> list[bytes]:
    """`body` cut inside a UTF-8 character, inside a CRLF, and one byte at a time around a second character."""
    multibyte = [i for i, b in enumerate(body) if b >= 0xC0]  # lead bytes of multi-byte characters
    crlf = body.index(b"\r\n", 10)
    single = range(multibyte[-1] - 8, multibyte[-1] + 8)
    cuts = sorted({multibyte[0] + 1, crlf + 1, *single})
    return [body[a:b] for a, b in zip([0, *cuts], [*cuts, len(body)], strict=True)]


def test_awkward_chunks_cut_where_intended() -> None:
    chunks = awkward_chunks(_RECORDED)
    assert b"".join(chunks) == _RECORDED
    assert any(c.endswith(b"\r") for c in chunks)
    assert any(_cuts_character(c) for c in chunks)
    assert sum(len(c) == 1 for c in chunks) >= 15


def _cuts_character(chunk: bytes) -> bool:
    try:
        chunk.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


class PacedUpstream:
    """Sends the first chunk, waits until the test says the client has it, then sends the rest slowly."""

    def __init__(self, chunks: list[bytes], *, content_length: bool) -> None:
        self.chunks = chunks
        self.content_length = content_length
        self.client_has_first = asyncio.Event()
        self.sent_all = False

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        if self.content_length:
            response.content_length = sum(len(c) for c in self.chunks)
        await response.prepare(request)
        await response.write(self.chunks[0])
        await self.client_has_first.wait()
        for chunk in self.chunks[1:]:
            await asyncio.sleep(0.001)
            await response.write(chunk)
        self.sent_all = True
        await response.write_eof()
        return response


@pytest.mark.parametrize("content_length", [False, True], ids=["chunked", "content-length"])
async def test_sse_cut_at_awkward_offsets_arrives_incrementally_and_byte_exact(
    servers: AsyncExitStack, content_length: bool
) -> None:
    chunks = awkward_chunks(_RECORDED)
    upstream = PacedUpstream(chunks, content_length=content_length)
    url = await servers.enter_async_context(running_upstream(upstream.handle))
    gateway = await servers.enter_async_context(running_gateway(Settings(upstreams={"gemini": url})))

    path = "/v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse"
    async with aiohttp.ClientSession() as client, client.post(gateway.url + path, data=b"{}") as response:
        first = await asyncio.wait_for(response.content.readany(), _WAIT)  # would hang if the relay buffered
        assert not upstream.sent_all
        upstream.client_has_first.set()
        rest = await asyncio.wait_for(response.content.read(), _WAIT)

    assert first == chunks[0]
    assert first + rest == _RECORDED
    assert response.headers["Content-Type"] == "text/event-stream"
    assert response.headers.get("Content-Length") == (str(len(_RECORDED)) if content_length else None)


class ChunkWatcher:
    """An addon that observes the response as it streams, behind an observer that always raises."""

    def __init__(self) -> None:
        self.seen: list[bytes] = []

    def request(self, flow: Flow) -> None:
        observe_chunks(flow, self._broken)
        observe_chunks(flow, lambda _at_ns, data: self.seen.append(data))

    def _broken(self, _at_ns: int, _data: bytes) -> None:
        raise RuntimeError("an observer bug")

    def response_headers(self, flow: Flow) -> None: ...
    def done(self, flow: Flow) -> None: ...
    def error(self, flow: Flow) -> None: ...


async def test_chunk_observers_see_each_chunk_as_it_is_relayed_and_cannot_break_it(servers: AsyncExitStack) -> None:
    chunks = awkward_chunks(_RECORDED)
    upstream = PacedUpstream(chunks, content_length=False)
    url = await servers.enter_async_context(running_upstream(upstream.handle))
    gateway = await servers.enter_async_context(running_gateway(Settings(upstreams={"gemini": url})))
    watcher = ChunkWatcher()
    gateway.relay.addons = (watcher,)

    path = "/v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse"
    async with aiohttp.ClientSession() as client, client.post(gateway.url + path, data=b"{}") as response:
        first = await asyncio.wait_for(response.content.readany(), _WAIT)
        assert watcher.seen == [chunks[0]]  # observed live, while the upstream still holds the rest
        upstream.client_has_first.set()
        rest = await asyncio.wait_for(response.content.read(), _WAIT)

    assert first + rest == _RECORDED
    assert b"".join(watcher.seen) == _RECORDED


class SlowUpstream:
    """Streams a chunk, then (when `idle`) waits silently, else keeps writing; notes how it learns the end."""

    def __init__(self, *, idle: bool) -> None:
        self.idle = idle
        self.ended_by: BaseException | None = None
        self.gone = asyncio.Event()

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        try:
            await response.write(b"data: first\n\n")
            for i in range(200):
                await asyncio.sleep(10 if self.idle else 0.05)
                await response.write(b"data: %d\n\n" % i)
        except (asyncio.CancelledError, ConnectionResetError) as exc:
            self.ended_by = exc
            self.gone.set()
            raise
        return response


@pytest.mark.parametrize("idle", [False, True], ids=["writing", "idle"])
async def test_client_disconnect_mid_stream_cancels_upstream_promptly(
    servers: AsyncExitStack, idle: bool
) -> None:
    upstream = SlowUpstream(idle=idle)
    url = await servers.enter_async_context(running_upstream(upstream.handle))
    gateway = await servers.enter_async_context(running_gateway(Settings(upstreams={"anthropic": url})))

    async with aiohttp.ClientSession() as client:
        response = await client.post(gateway.url + "/v1/messages", data=b"{}")
        assert await asyncio.wait_for(response.content.readany(), _WAIT) == b"data: first\n\n"
        response.close()  # drops the connection

    await asyncio.wait_for(upstream.gone.wait(), 1.0)
    assert isinstance(upstream.ended_by, asyncio.CancelledError | ConnectionResetError)


async def _reset_after_first_chunk(request: web.BaseRequest) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    if request.query.get("framing") == "length":
        response.content_length = 1000
    await response.prepare(request)
    await response.write(b"data: partial\n\n")
    await asyncio.sleep(0.05)
    assert request.transport is not None
    request.transport.abort()  # a TCP reset, no terminating chunk
    return response


@pytest.mark.parametrize("framing", ["chunked", "length"])
async def test_upstream_reset_mid_stream_gives_client_incomplete_body(
    servers: AsyncExitStack, framing: str
) -> None:
    url = await servers.enter_async_context(running_upstream(_reset_after_first_chunk))
    gateway = await servers.enter_async_context(running_gateway(Settings(upstreams={"anthropic": url})))

    async with aiohttp.ClientSession() as client, client.post(
        f"{gateway.url}/v1/messages?framing={framing}", data=b"{}"
    ) as response:
        assert response.status == 200
        assert await asyncio.wait_for(response.content.readany(), _WAIT) == b"data: partial\n\n"
        with pytest.raises(aiohttp.ClientPayloadError):
            await asyncio.wait_for(response.content.read(), _WAIT)


async def _numbered_stream(request: web.BaseRequest) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    for i in range(5):
        await asyncio.sleep(0.005)
        await response.write(f"data: {request.query['n']}.{i}\n\n".encode())
    await response.write_eof()
    return response


async def test_concurrent_streams_each_get_their_own_bytes(servers: AsyncExitStack) -> None:
    url = await servers.enter_async_context(running_upstream(_numbered_stream))
    gateway = await servers.enter_async_context(running_gateway(Settings(upstreams={"anthropic": url})))

    async def fetch(client: aiohttp.ClientSession, n: int) -> bytes:
        async with client.post(f"{gateway.url}/v1/messages?n={n}", data=b"{}") as response:
            return await response.read()

    async with aiohttp.ClientSession() as client:
        bodies = await asyncio.wait_for(asyncio.gather(*(fetch(client, n) for n in range(20))), 5.0)

    assert bodies == [b"".join(f"data: {n}.{i}\n\n".encode() for i in range(5)) for n in range(20)]
