"""A flow's response headers: kept as the fields received, read as text only when an addon asks."""

from __future__ import annotations

from multidict import CIMultiDict, CIMultiDictProxy

from llm_gateway.config import Settings
from llm_gateway.flow import Flow
from llm_gateway.routing import Router


def _flow() -> Flow:
    headers = CIMultiDictProxy(CIMultiDict())
    route = Router(Settings(), {}).resolve("POST", "/v1/messages", headers)
    assert route is not None
    return Flow("POST", "/v1/messages", (), b"{}", route, "http://up.test/v1/messages", started_ns=1)


def test_fields_are_read_as_text_when_asked_repeats_and_bytes_kept() -> None:
    flow = _flow()
    assert flow.response_headers is None  # no answer yet
    flow.response_fields = [(b"X-A", b"1"), (b"x-a", b"2"), (b"X-Title", b"caf\xe9")]
    headers = flow.response_headers
    assert headers is not None and headers.getall("x-a") == ["1", "2"]
    assert headers["x-title"].encode("utf-8", "surrogateescape") == b"caf\xe9"  # not UTF-8: its bytes kept
    assert flow.response_headers is headers  # read once


def test_headers_given_as_text_become_the_fields() -> None:
    flow = _flow()
    flow.response_headers = CIMultiDictProxy(CIMultiDict([("X-A", "1"), ("Retry-After", "7")]))
    assert flow.response_fields == [(b"X-A", b"1"), (b"Retry-After", b"7")]
    flow.response_headers = None
    assert (flow.response_fields, flow.response_headers) == (None, None)
