"""The contract every protocol adapter keeps: what it is given (`HttpRequest`, `HttpResponseHead`) and what it
offers (`Adapter`, `ResponseParser`). `run.ExchangeRun` drives an adapter over one relayed exchange.

An adapter module (e.g. `protocols/anthropic.py`) exposes `ADAPTER`, and its provider entry in
`routing/providers.py` names that module. No sockets, no event loop, no OpenTelemetry.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from llm_gateway.protocols import events as ev
from llm_gateway.protocols.exchange import ChatRequest


@dataclass(frozen=True, slots=True)
class HttpRequest:
    method: str
    path: str  # raw path with query
    headers: Mapping[str, str]  # case-insensitive
    body: bytes
    upstream_url: str = ""  # the upstream base URL the request went to


@dataclass(frozen=True, slots=True)
class HttpResponseHead:
    status: int
    headers: Mapping[str, str]  # case-insensitive


class ResponseParser(Protocol):
    """Reads a response body incrementally. Neither method ever raises: unreadable input becomes a `ParseIssue`
    event."""

    def feed(self, data: bytes) -> list[ev.Event]:
        """The events the next piece of the body completes."""
        ...

    def close(self) -> list[ev.Event]:
        """The end of the body: the events still pending, and a `ParseIssue` if the body stopped mid-way."""
        ...


class Adapter(Protocol):
    def parse_request(self, request: HttpRequest, capture: bool) -> ChatRequest:
        """Read the request body (content only when `capture`). Raise `ValueError` (or let orjson raise) on
        unreadable input: the runner records the problem and carries on."""
        ...

    def response_parser(self, request: ChatRequest, head: HttpResponseHead) -> ResponseParser:
        """A fresh parser for a 2xx response body (already decompressed); non-2xx bodies go to
        `errors.ErrorBodyParser` instead."""
        ...

    def provider_name(self, request: HttpRequest) -> str:
        """The `gen_ai.provider.name` value."""
        ...
