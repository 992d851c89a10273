"""The response head a client gets: the upstream's fields as they came, in order, plus only what this hop must say
(its framing, Connection, a Date the upstream did not send). Raw upstream, raw client: every byte is seen."""

from __future__ import annotations

import asyncio
import re

import pytest

from llm_gateway.config import Settings
from tests.support.raw_upstream import raw_upstream, read_request
from tests.support.servers import raw_http, running_gateway

_DATE = re.compile(rb"\r\nDate: \w{3}, \d\d \w{3} \d{4} \d\d:\d\d:\d\d GMT\r\n")


@pytest.fixture(params=["own", "aiohttp"])
def front(request: pytest.FixtureRequest) -> str:
    """The server that reads the client's request and writes the answer (LLM_GATEWAY_FRONT): both write the head
    `front.response_head` makes."""
    return request.param


async def _through_gateway(servers, front: str, answer: bytes, request_line: bytes) -> bytes:
    """The client's raw response to `request_line` (one request on its connection) when the upstream sends
    `answer`."""
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader, upstream)
        writer.write(answer)
        await writer.drain()

    upstream = await servers.enter_async_context(raw_upstream(script))
    gateway = await servers.enter_async_context(running_gateway(Settings(catch_all=upstream.url, force_all=True),
                                                                      {"LLM_GATEWAY_FRONT": front}))
    return await raw_http(gateway.port, request_line + b"\r\nHost: g\r\nConnection: close\r\n\r\n")


def _split(response: bytes) -> tuple[list[bytes], bytes]:
    head, _, body = response.partition(b"\r\n\r\n")
    return head.split(b"\r\n"), body


async def test_the_fields_go_on_as_sent_in_order_with_a_date_added_and_no_server_or_content_type(servers, front):
    answer = (b"HTTP/1.1 201 Made Here\r\nx-B: 2\r\nContent-Length: 5\r\nX-a:  spaced\tvalue\r\nx-b: 1\r\n"
              b"Keep-Alive: timeout=5\r\n\r\nhello")
    response = await _through_gateway(servers, front, answer, b"GET /v1/models HTTP/1.1")
    lines, body = _split(response)
    assert lines[0] == b"HTTP/1.1 201 Made Here"
    # hop-by-hop Keep-Alive stops here; value whitespace inside is kept, the upstream's spelling of names too
    assert lines[1:5] == [b"x-B: 2", b"Content-Length: 5", b"X-a: spaced\tvalue", b"x-b: 1"]
    assert _DATE.search(response) and b"\r\nConnection: close" in response
    assert not any(line.lower().startswith((b"server:", b"content-type:", b"keep-alive:")) for line in lines)
    assert body == b"hello"


async def test_an_upstream_date_is_kept_not_doubled(servers, front):
    answer = b"HTTP/1.1 200 OK\r\nDate: Tue, 01 Dec 2026 10:00:00 GMT\r\nContent-Length: 2\r\n\r\n{}"
    response = await _through_gateway(servers, front, answer, b"GET / HTTP/1.1")
    assert response.count(b"Date:") == 1 and b"\r\nDate: Tue, 01 Dec 2026 10:00:00 GMT\r\n" in response


@pytest.mark.parametrize(("version", "framing", "body"), [
    (b"1.1", b"Transfer-Encoding: chunked", b"5\r\nhello\r\n0\r\n\r\n"),
    (b"1.0", None, b"hello"),  # no chunked coding for HTTP/1.0: the body ends with the connection
])
async def test_a_chunked_answer_is_framed_anew_for_the_client_version(servers, front, version, framing, body):
    answer = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Up: 1\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
    response = await _through_gateway(servers, front, answer, b"GET / HTTP/" + version)
    lines, received = _split(response)
    assert lines[0].startswith(b"HTTP/" + version + b" 200")
    assert (framing in lines) if framing else not any(b"chunked" in line for line in lines)
    assert not any(line.lower().startswith(b"content-length") for line in lines)
    assert received == body


async def test_a_head_answer_keeps_its_length_and_has_no_body(servers, front):
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\nContent-Type: application/json\r\n\r\n"
    response = await _through_gateway(servers, front, answer, b"HEAD /v1/models HTTP/1.1")
    lines, body = _split(response)
    assert b"Content-Length: 1234" in lines and body == b""


async def test_a_no_content_answer_loses_its_length(servers, front):
    answer = b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\nX-Up: 1\r\n\r\n"
    response = await _through_gateway(servers, front, answer, b"DELETE /v1/x HTTP/1.1")
    lines, body = _split(response)
    assert lines[0] == b"HTTP/1.1 204 No Content" and b"X-Up: 1" in lines
    assert not any(line.lower().startswith((b"content-length", b"transfer-encoding")) for line in lines)
    assert body == b""


async def test_a_length_the_upstream_names_hop_by_hop_is_framed_anew(servers, front):
    # Connection may list any field as this hop's own; the body still arrives whole, framed for the client
    answer = b"HTTP/1.1 200 OK\r\nConnection: content-length\r\nContent-Length: 5\r\n\r\nhello"
    response = await _through_gateway(servers, front, answer, b"GET / HTTP/1.1")
    lines, body = _split(response)
    assert lines[0] == b"HTTP/1.1 200 OK" and b"Transfer-Encoding: chunked" in lines
    assert not any(line.lower().startswith(b"content-length") for line in lines)
    assert body == b"5\r\nhello\r\n0\r\n\r\n"
