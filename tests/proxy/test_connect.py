"""The CONNECT head parser: whole, split at every byte, with the tunnel's first bytes behind it, and malformed."""

from __future__ import annotations

import pytest

from llm_gateway.proxy.connect import MAX_HEAD, BadConnect, Target, parse_authority, read_connect, starts_connect

HEAD = b"CONNECT api.anthropic.com:443 HTTP/1.1\r\nHost: api.anthropic.com:443\r\nProxy-Connection: keep-alive\r\n\r\n"
TLS_HELLO = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"


def test_whole_head_gives_target_and_where_tunnel_bytes_start() -> None:
    target, end = read_connect(HEAD + TLS_HELLO)
    assert target == Target("api.anthropic.com", 443)
    assert (HEAD + TLS_HELLO)[end:] == TLS_HELLO


def test_head_split_at_every_byte_needs_more_until_complete() -> None:
    for i in range(len(HEAD)):
        assert read_connect(HEAD[:i]) is None, i
        assert starts_connect(HEAD[:i]) in (None, True), i
    assert read_connect(HEAD) == (Target("api.anthropic.com", 443), len(HEAD))


@pytest.mark.parametrize("start", [b"GET / HTTP/1.1\r\n", b"POST http://x/ HTTP/1.1", b"CONNEC\r", b"\x16\x03"])
def test_other_first_bytes_are_not_connect(start: bytes) -> None:
    assert starts_connect(start) is False


@pytest.mark.parametrize("head", [
    b"CONNECT api.anthropic.com HTTP/1.1\r\n\r\n",  # no port
    b"CONNECT api.anthropic.com:0 HTTP/1.1\r\n\r\n",
    b"CONNECT api.anthropic.com:65536 HTTP/1.1\r\n\r\n",
    b"CONNECT api.anthropic.com:+443 HTTP/1.1\r\n\r\n",
    b"CONNECT user@api.anthropic.com:443 HTTP/1.1\r\n\r\n",
    b"CONNECT http://api.anthropic.com:443 HTTP/1.1\r\n\r\n",
    b"CONNECT [zz::1]:443 HTTP/1.1\r\n\r\n",
    b"CONNECT a..b:443 HTTP/1.1\r\n\r\n",
    b"CONNECT api.anthropic.com:443 HTTP/2.0\r\n\r\n",
    b"CONNECT  api.anthropic.com:443 HTTP/1.1\r\n\r\n",
    b"CONNECT api.anthropic.com:443\r\n\r\n",
    b"CONNECT api.anthropic.com:443 HTTP/1.1\r\nno colon here\r\n\r\n",
    b"CONNECT api.anthropic.com:443 HTTP/1.1\r\nbad name: x\r\n\r\n",
])
def test_malformed_head_is_refused(head: bytes) -> None:
    with pytest.raises(BadConnect):
        read_connect(head)


def test_head_longer_than_limit_is_refused_before_it_ends() -> None:
    endless = b"CONNECT a:1 HTTP/1.1\r\n" + b"X: " + b"y" * MAX_HEAD
    with pytest.raises(BadConnect, match="longer than"):
        read_connect(endless)


@pytest.mark.parametrize(("authority", "target", "origin"), [
    ("API.Anthropic.com:443", Target("api.anthropic.com", 443), "https://api.anthropic.com"),
    ("127.0.0.1:8443", Target("127.0.0.1", 8443), "https://127.0.0.1:8443"),
    ("[::1]:443", Target("::1", 443), "https://[::1]"),
    ("localhost:80", Target("localhost", 80), "https://localhost:80"),
])
def test_authority_forms(authority: str, target: Target, origin: str) -> None:
    assert parse_authority(authority) == target
    assert target.origin("https") == origin
