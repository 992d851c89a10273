"""The answer's head as both servers write it (sans-IO): the upstream's end-to-end fields as received and in order,
plus this hop's framing, Connection and Date."""

from __future__ import annotations

import pytest

from llm_gateway.front.response_head import response_head

_DATE = (b"Date", b"Fri, 04 Dec 2026 18:00:00 GMT")


def _lines(block: bytes) -> list[bytes]:
    return block.split(b"\r\n")[1:-2]


@pytest.mark.parametrize("connection", [b"keep-alive", b"close", b"x-hop, Keep-Alive"])
def test_the_upstreams_connection_field_and_what_it_names_stop_here(connection: bytes) -> None:
    fields = [(b"Content-Type", b"text/plain"), (b"Connection", connection), (b"x-hop", b"1"),
              (b"Keep-Alive", b"timeout=5"), (b"Content-Length", b"5"), _DATE]
    head = response_head(200, "OK", fields, method="GET", http11=True, keep_alive=True)
    kept = [b"Content-Type: text/plain"] + ([] if b"x-hop" in connection else [b"x-hop: 1"])
    assert _lines(head.block) == [*kept, b"Content-Length: 5", b"Date: Fri, 04 Dec 2026 18:00:00 GMT"]
    assert (head.length, head.chunked, head.keep_alive) == (5, False, True)


def test_a_transfer_coded_answer_is_chunked_anew_whatever_length_it_names() -> None:
    fields = [(b"Transfer-Encoding", b"chunked"), (b"Content-Length", b"5"), _DATE, (b"x-up", b"1")]
    head = response_head(200, "OK", fields, method="POST", http11=True, keep_alive=True)
    assert _lines(head.block) == [b"Date: Fri, 04 Dec 2026 18:00:00 GMT", b"x-up: 1", b"Transfer-Encoding: chunked"]
    assert (head.length, head.chunked) == (None, True)


@pytest.mark.parametrize(("http11", "keep_alive", "added"), [
    (True, False, [b"Connection: close"]),
    (False, True, [b"Connection: keep-alive"]),
    (True, True, []),
    (False, False, []),
])
def test_connection_is_said_where_keep_alive_differs_from_the_versions_default(
        http11: bool, keep_alive: bool, added: list[bytes]) -> None:
    head = response_head(201, "Created", [(b"Content-Length", b"0"), _DATE], method="POST", http11=http11,
                         keep_alive=keep_alive)
    assert head.block.startswith(b"HTTP/1.%d 201 Created\r\n" % http11)
    assert _lines(head.block) == [b"Content-Length: 0", b"Date: Fri, 04 Dec 2026 18:00:00 GMT", *added]


def test_an_answer_without_framing_ends_an_http10_clients_connection() -> None:
    head = response_head(200, "OK", [_DATE], method="GET", http11=False, keep_alive=True)
    assert (head.chunked, head.length, head.keep_alive) == (False, None, False)
    assert b"Connection" not in head.block  # HTTP/1.0's default is to close
