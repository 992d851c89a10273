"""Reading a request head: what the front end takes matches h11's strict reading of the same bytes, and whatever
it does not serve is left to aiohttp (NotServed) whole."""

from __future__ import annotations

import h11
import pytest

from llm_gateway.front.request_head import MAX_HEAD_BYTES, HeadReader, NotServed, parse_head
from llm_gateway.upstream.http1 import HOP_BY_HOP

_SDK_HEAD = (b"POST /v1/messages?beta=true HTTP/1.1\r\nHost: 127.0.0.1:8787\r\nAccept: application/json\r\n"
             b"anthropic-version: 2023-06-01\r\nx-api-key: sk-ant-secret\r\nUser-Agent: Anthropic/Python 0.40.0\r\n"
             b"Content-Type: application/json\r\nx-stainless-retry-count: 0\r\nContent-Length: 27\r\n\r\n")


def _h11_request(head: bytes) -> h11.Request:
    connection = h11.Connection(h11.SERVER)
    connection.receive_data(head)
    event = connection.next_event()
    assert isinstance(event, h11.Request)
    return event


@pytest.mark.parametrize("head", [
    _SDK_HEAD,
    b"GET /v1/models HTTP/1.0\r\nConnection: keep-alive\r\nx-repeated: one\r\nx-repeated: two\r\n\r\n",
    b"POST /v1/chat/completions HTTP/1.1\r\nHost: g\r\nConnection: close, x-hop\r\nx-hop: 1\r\n"
    b"Keep-Alive: timeout=5\r\nAuthorization:  Bearer sk-x \t\r\nContent-Length: 0\r\n\r\n",
], ids=["sdk", "http10-keep-alive", "connection-listed"])
def test_a_served_head_reads_as_h11_reads_it(head: bytes) -> None:
    read = parse_head(head)
    reference = _h11_request(head)

    assert (read.method, read.target) == (reference.method.decode(), reference.target.decode())
    assert read.http11 == (reference.http_version == b"1.1")
    assert read.fields == list(reference.headers.raw_items())
    listed = {t.strip().lower() for n, v in read.fields if n.lower() == b"connection" for t in v.split(b",")}
    assert read.forwarded == [(n, v) for n, v in read.fields
                              if n.lower().decode() not in HOP_BY_HOP and n.lower() not in listed]
    assert read.length == int(dict((n.lower(), v) for n, v in read.fields).get(b"content-length", 0))
    assert read.size == len(head)
    first: dict[str, str] = {}
    for name, value in reference.headers.raw_items():
        first.setdefault(name.lower().decode(), value.decode())
    assert read.headers == first


@pytest.mark.parametrize(("head", "keep_alive"), [
    (b"GET / HTTP/1.1\r\nHost: g\r\n\r\n", True),
    (b"GET / HTTP/1.1\r\nHost: g\r\nConnection: close\r\n\r\n", False),
    (b"GET / HTTP/1.1\r\nHost: g\r\nConnection: Keep-Alive, Close\r\n\r\n", False),
    (b"GET / HTTP/1.0\r\n\r\n", False),
    (b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", True),
])
def test_keep_alive_follows_the_version_and_the_connection_field(head: bytes, keep_alive: bool) -> None:
    assert parse_head(head).keep_alive is keep_alive


@pytest.mark.parametrize("head", [
    b"POST /v1/messages HTTP/1.1\r\nHost: g\r\nTransfer-Encoding: chunked\r\n\r\n",
    b"POST /v1/messages HTTP/1.1\r\nHost: g\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n",
    b"GET /v1/responses HTTP/1.1\r\nHost: g\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
    b"CONNECT api.anthropic.com:443 HTTP/1.1\r\nHost: api.anthropic.com:443\r\n\r\n",
    b"POST http://api.openai.com/v1/chat/completions HTTP/1.1\r\nHost: api.openai.com\r\n\r\n",
    b"GET /_gateway/health HTTP/1.1\r\nHost: g\r\n\r\n",
    b"OPTIONS * HTTP/1.1\r\nHost: g\r\n\r\n",
    b"GET / HTTP/1.1\r\n\r\n",  # no Host
    b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: g\r\nUser-Agent: a\r\nUser-Agent: b\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: g\r\nConnection: keep-alive\r\nConnection: close\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: g\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n",
    b"GET / HTTP/2.0\r\nHost: g\r\n\r\n",
    b"GET /a b HTTP/1.1\r\nHost: g\r\n\r\n",
    b"GET / HTTP/1.1\nHost: g\n\n",  # bare LF
    b"GET / HTTP/1.1\r\nHost: g\r\n folded\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: g\r\nx-bad: a\x00b\r\n\r\n",
    b"\r\nGET / HTTP/1.1\r\nHost: g\r\n\r\n",  # an empty line first
    b"GET / HTTP/1.1\r\nHost: g\r\nx-big: " + b"v" * MAX_HEAD_BYTES + b"\r\n\r\n",
], ids=["chunked", "expect", "upgrade", "connect", "absolute-form", "gateway-path", "asterisk", "no-host",
        "two-hosts", "two-user-agents", "two-connections", "two-lengths", "http2", "space-in-target", "bare-lf",
        "folded", "nul", "empty-line-first", "too-long"])
def test_what_the_front_end_does_not_serve_is_left_to_aiohttp(head: bytes) -> None:
    with pytest.raises(NotServed):
        HeadReader().read(head)


def test_a_head_that_comes_in_pieces_is_read_once_whole_and_checked_as_it_comes() -> None:
    reader = HeadReader()
    request = _SDK_HEAD + b'{"model":"m","messages":[]}'
    for end in range(1, len(_SDK_HEAD) - 1, 7):
        assert reader.read(request[:end]) is None
    head = reader.read(request)
    assert head is not None and head.size == len(_SDK_HEAD) and head.length == 27
    # the next request on the connection is read afresh; bad bytes fail as soon as they come
    assert reader.read(b"GET /v1/models HTTP/1.1\r\nHo") is None
    with pytest.raises(NotServed):
        reader.read(b"GET /v1/models HTTP/1.1\r\nHo\x00")
