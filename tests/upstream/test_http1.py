"""The request bytes the client writes, and where it sends them (sans-IO)."""

from __future__ import annotations

import base64

import pytest

from llm_gateway.upstream.http1 import Target, header_text, request_head, target_of


@pytest.mark.parametrize(("url", "expected"), [
    ("http://127.0.0.1:8080/v1/messages?beta=true",
     Target("http", "127.0.0.1", 8080, "127.0.0.1:8080", "/v1/messages?beta=true")),
    ("https://api.anthropic.com/v1/messages", Target("https", "api.anthropic.com", 443, "api.anthropic.com",
                                                     "/v1/messages")),
    ("http://example.test", Target("http", "example.test", 80, "example.test", "/")),
    ("http://[::1]:9/a%2Fb?x=%20", Target("http", "::1", 9, "[::1]:9", "/a%2Fb?x=%20")),
    ("HTTPS://Host.test:443/p", Target("https", "host.test", 443, "host.test", "/p")),
])
def test_target_keeps_the_path_as_written_and_the_port_only_when_not_the_default(url: str, expected: Target) -> None:
    assert target_of(url) == expected


@pytest.mark.parametrize("url", ["ftp://host/x", "http:///nohost", "/relative"])
def test_a_url_the_client_cannot_send_to_is_refused(url: str) -> None:
    with pytest.raises(ValueError, match="http:// or https://"):
        target_of(url)


def test_head_has_host_first_then_the_fields_in_order_repeats_and_case_kept_then_the_length() -> None:
    target = target_of("http://up.test:81/v1/x")
    head = request_head("POST", target, [(b"X-A", b"1"), (b"x-a", b"2"), (b"Authorization", b"k")], b'{"a":1}')
    assert head == (b"POST /v1/x HTTP/1.1\r\nHost: up.test:81\r\nX-A: 1\r\nx-a: 2\r\nAuthorization: k\r\n"
                    b"Content-Length: 7\r\n\r\n")


@pytest.mark.parametrize(("method", "body", "length"), [
    ("GET", None, None), ("GET", b"", None), ("DELETE", None, None), ("POST", b"", b"0"), ("PUT", None, b"0"),
    ("GET", b"xy", b"2"),
])
def test_content_length_only_with_a_body_or_for_a_method_that_always_has_one(
        method: str, body: bytes | None, length: bytes | None) -> None:
    head = request_head(method, target_of("http://h/"), [], body)
    assert (b"\r\nContent-Length: " + length + b"\r\n" in head) if length else b"Content-Length" not in head


def test_header_text_reads_utf8_as_utf8_and_other_bytes_as_latin1() -> None:
    utf8 = "caf\u00e9 \u2603".encode()
    assert header_text(utf8).encode() == utf8
    latin1 = b"\xe9t\xe9"  # not UTF-8
    assert header_text(latin1).encode("latin-1") == latin1


def test_credentials_in_the_upstream_url_go_as_basic_authorization_unless_the_client_sent_its_own() -> None:
    target = target_of("https://us%40er:p%3Ass@proxy.test/v1")
    assert (target.host_header, target.path) == ("proxy.test", "/v1")
    expected = "Basic " + base64.b64encode(b"us@er:p:ss").decode()
    assert f"\r\nAuthorization: {expected}\r\n".encode() in request_head("GET", target, [(b"X-A", b"1")], None)
    own = request_head("GET", target, [(b"authorization", b"Bearer k")], None)
    assert b"\r\nauthorization: Bearer k\r\n" in own and b"Basic" not in own
