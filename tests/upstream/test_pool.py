"""The upstream client over real loopback sockets, against a raw upstream that answers with scripted bytes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from llm_gateway.upstream.connection import READ_BUFFER_LIMIT, UpstreamClosed, UpstreamUnreachable
from llm_gateway.upstream.pool import UpstreamPool
from tests.proxy.helpers import TlsOrigin
from tests.support.raw_upstream import RawUpstream, answer_once, body_of, raw_upstream, read_request


@pytest.fixture
async def pool() -> AsyncIterator[UpstreamPool]:
    pool = UpstreamPool(connect_timeout=2.0, read_timeout=2.0)
    yield pool
    pool.close()


async def test_the_request_goes_as_written_and_the_connection_is_kept_for_the_next(pool: UpstreamPool) -> None:
    upstream = RawUpstream()

    async def answer_each(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await read_request(reader, upstream)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Up: 1\r\nx-up: 2\r\n\r\nhello")

    async with raw_upstream(answer_each) as server:
        upstream.url = server.url
        for _ in range(3):
            response = await pool.request("POST", f"{server.url}/v1/messages?x=%2F", [(b"X-Key", b"k")], b"{}")
            assert (response.status, response.reason, await body_of(response)) == (200, "OK", b"hello")
            assert response.raw_headers == [(b"Content-Length", b"5"), (b"X-Up", b"1"), (b"x-up", b"2")]
            assert response.headers.getall("X-UP") == ["1", "2"]
            response.release()
        assert server.connections == 1
    host = server.url.removeprefix("http://").encode()
    assert upstream.requests == [b"POST /v1/messages?x=%2F HTTP/1.1\r\nHost: " + host +
                                 b"\r\nX-Key: k\r\nContent-Length: 2\r\n\r\n{}"] * 3


async def test_a_chunked_body_comes_decoded_as_it_arrives(pool: UpstreamPool) -> None:
    sent = asyncio.Event()

    async def chunked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n")
        await sent.wait()
        writer.write(b"6\r\nsecond\r\n0\r\n\r\n")

    async with raw_upstream(chunked) as server:
        response = await pool.request("GET", server.url + "/s", [], None)
        assert await response.read() == b"first"  # before the rest was even sent
        sent.set()
        assert await body_of(response) == b"second"
        assert response.at_eof()
        response.release()


async def test_a_body_without_framing_ends_with_the_connection(pool: UpstreamPool) -> None:
    async with raw_upstream(answer_once(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end")) as server:
        response = await pool.request("GET", server.url, [], None)
        assert await body_of(response) == b"until the end"
        response.release()


async def test_a_body_cut_short_raises_after_the_bytes_that_came(pool: UpstreamPool) -> None:
    async with raw_upstream(answer_once(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhalf!")) as server:
        response = await pool.request("POST", server.url, [], b"x")
        assert await response.read() == b"half!"
        with pytest.raises(UpstreamClosed, match="before the body was whole"):
            await response.read()
        response.release()


async def test_an_interim_answer_is_passed_over_for_the_real_one(pool: UpstreamPool) -> None:
    answers = b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok"
    async with raw_upstream(answer_once(answers, then_close=False)) as server:
        response = await pool.request("GET", server.url, [], None)
        assert (response.status, response.reason, response.raw_headers) == (201, "Created", [(b"Content-Length", b"2")])
        assert await body_of(response) == b"ok"
        response.release()


async def test_a_head_answer_has_no_body_whatever_its_length_says(pool: UpstreamPool) -> None:
    head_answer = b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n"
    async with raw_upstream(answer_once(head_answer, then_close=False)) as server:
        response = await pool.request("HEAD", server.url, [], None)
        assert (response.status, await response.read()) == (200, b"")
        response.release()


async def test_an_idle_connection_the_upstream_closed_is_not_used_again(pool: UpstreamPool) -> None:
    async with raw_upstream(answer_once(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")) as server:
        for _ in range(2):
            response = await pool.request("POST", server.url, [], b"{}")
            assert await body_of(response) == b"ok"
            response.release()
            await asyncio.sleep(0.05)  # the close reaches the pool
        assert server.connections == 2


@pytest.mark.parametrize(("method", "answered"), [("GET", True), ("POST", False)])
async def test_a_kept_connection_that_closes_unanswered_is_retried_only_for_an_idempotent_method(
        pool: UpstreamPool, method: str, answered: bool) -> None:
    async def second_request_unanswered(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await reader.readuntil(b"\r\n\r\n")  # then closes without an answer, as a server timing out its idle end

    async with raw_upstream(second_request_unanswered) as server:
        response = await pool.request(method, server.url, [], None)
        assert await body_of(response) == b"ok"
        response.release()
        if answered:
            response = await pool.request(method, server.url, [], None)
            assert await body_of(response) == b"ok"
            response.release()
        else:
            with pytest.raises(UpstreamClosed, match="before answering"):
                await pool.request(method, server.url, [], None)
        assert server.connections == (2 if answered else 1)


async def test_a_slow_reader_holds_the_upstream_back_and_loses_nothing(pool: UpstreamPool) -> None:
    body = bytes(range(256)) * (4 * READ_BUFFER_LIMIT // 256)

    async def large(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        await writer.drain()

    async with raw_upstream(large) as server:
        response = await pool.request("GET", server.url, [], None)
        await asyncio.sleep(0.2)  # all of it could have come by now: only the limit (and the kernel's buffers) did
        first = await response.read()
        assert len(first) <= READ_BUFFER_LIMIT + 256 * 1024
        assert first + await body_of(response) == body
        response.release()


async def test_silence_past_the_read_timeout_is_a_timeout() -> None:
    pool = UpstreamPool(connect_timeout=2.0, read_timeout=0.2)

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()

    try:
        async with raw_upstream(silent) as server:
            with pytest.raises(TimeoutError, match="read timeout"):
                await pool.request("POST", server.url, [], b"{}")
    finally:
        pool.close()


async def test_an_answer_that_is_not_http_is_an_upstream_error(pool: UpstreamPool) -> None:
    async with raw_upstream(answer_once(b"SSH-2.0-OpenSSH_9.6\r\n", then_close=False)) as server:
        with pytest.raises(UpstreamClosed, match=r"not HTTP/1\.1"):
            await pool.request("GET", server.url, [], None)


async def test_a_refused_connection_is_unreachable(pool: UpstreamPool) -> None:
    async with raw_upstream(lambda reader, writer: reader.read()) as server:
        url = server.url
    with pytest.raises(UpstreamUnreachable, match=r"cannot connect to 127\.0\.0\.1"):
        await pool.request("GET", url, [], None)


async def test_https_upstreams_are_verified_against_the_system_trust_store(
        pool: UpstreamPool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async with TlsOrigin(tmp_path / "ca", answer=b"over tls").running() as origin:
        url = f"https://{origin.host}:{origin.port}/v1/messages"
        with pytest.raises(UpstreamUnreachable, match="CERTIFICATE_VERIFY_FAILED"):
            await pool.request("POST", url, [], b"{}")

        monkeypatch.setenv("SSL_CERT_FILE", str(origin.ca.files.cert))  # what `llm-gateway run` and users set
        trusting = UpstreamPool(connect_timeout=2.0, read_timeout=2.0)
        try:
            for _ in range(2):
                response = await trusting.request("POST", url, [], b"{}")
                assert (response.status, await body_of(response)) == (200, b"over tls")
                response.release()
        finally:
            trusting.close()
        assert origin.bodies == [b"{}", b"{}"]


class _Sink:
    """The client's side of a piped body: what it was sent, in order; `paused` as a transport over its high-water
    mark would be."""

    def __init__(self, gone: bool = False) -> None:
        self.sent: list[bytes] = []
        self.recorded: list[bytes] = []
        self.write_paused = False
        self.gone = gone
        self.on_writable: list = []

    def send(self, chunk: bytes) -> None:
        if self.gone:
            raise ConnectionResetError("gone")
        self.sent.append(chunk)

    def flush(self) -> None:
        self.sent.append(b"<flush>")

    def when_writable(self, callback) -> None:
        self.on_writable.append(callback)


async def test_a_piped_body_goes_to_the_sink_as_it_arrives_each_chunk_recorded_after_it_was_sent(
        pool: UpstreamPool) -> None:
    sent = asyncio.Event()
    sink = _Sink()

    async def chunked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n")
        await sent.wait()
        writer.write(b"6\r\nsecond\r\n0\r\n\r\n")

    def record(chunk: bytes) -> None:
        assert sink.sent[-1] == chunk  # sent first
        sink.recorded.append(chunk)

    async with raw_upstream(chunked) as server:
        response = await pool.request("GET", server.url + "/s", [], None)
        piping = asyncio.create_task(response.pipe(sink, record))
        for _ in range(200):  # before the rest was even sent
            if b"first" in sink.sent:
                break
            await asyncio.sleep(0.01)
        sent.set()
        await asyncio.wait_for(piping, 2.0)
        # what came with the head went at once, then the sink was told nothing more had come
        assert sink.sent in ([b"first", b"<flush>", b"second"], [b"<flush>", b"first", b"second"])
        assert sink.recorded == [b"first", b"second"]
        assert response.at_eof()
        response.release()


async def test_a_paused_sink_holds_the_upstream_back_and_loses_nothing() -> None:
    # held back longer than the read timeout: the wait is the client's, not a silent upstream
    pool = UpstreamPool(connect_timeout=2.0, read_timeout=0.05)
    body = bytes(range(256)) * (4 * READ_BUFFER_LIMIT // 256)
    sink = _Sink()
    sink.write_paused = True

    async def large(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        await writer.drain()

    try:
        async with raw_upstream(large) as server:
            response = await pool.request("GET", server.url, [], None)
            piping = asyncio.create_task(response.pipe(sink, None))
            await asyncio.sleep(0.2)  # all of it could have come by now: only the sink's pause (and the kernel) held it
            assert len(b"".join(sink.sent)) < len(body) and len(sink.on_writable) == 1
            sink.write_paused = False
            sink.on_writable.pop()()
            await asyncio.wait_for(piping, 2.0)
            assert b"".join(sink.sent).replace(b"<flush>", b"") == body
            response.release()
    finally:
        pool.close()


async def test_a_sink_whose_client_is_gone_ends_the_pipe_with_its_error(pool: UpstreamPool) -> None:
    async with raw_upstream(answer_once(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n",
                                        then_close=False)) as server:
        response = await pool.request("GET", server.url, [], None)
        await asyncio.sleep(0.05)  # the chunk came with the head: the sink gets it at once
        with pytest.raises(ConnectionResetError):
            await asyncio.wait_for(response.pipe(_Sink(gone=True), None), 2.0)
        response.release()


async def test_silence_while_piping_is_a_timeout_within_two_read_timeouts() -> None:
    pool = UpstreamPool(connect_timeout=2.0, read_timeout=0.2)
    try:
        async with raw_upstream(answer_once(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                                            then_close=False)) as server:
            response = await pool.request("GET", server.url, [], None)
            started = asyncio.get_running_loop().time()
            with pytest.raises(TimeoutError, match="read timeout"):
                await response.pipe(_Sink(), None)
            assert asyncio.get_running_loop().time() - started < 0.45
            response.release()
    finally:
        pool.close()
