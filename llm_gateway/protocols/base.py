"""The contract every protocol adapter keeps: what it is given (`HttpRequest`, `HttpResponseHead`) and what it
offers (`Adapter`, `ResponseParser`). `run.ExchangeRun` drives an adapter over one relayed exchange.

An adapter module (e.g. `protocols/anthropic.py`) exposes `ADAPTER`, and its provider entry in
`routing/providers.py` names that module. No sockets, no event loop, no OpenTelemetry.

A model call may also travel inside a WebSocket (Responses over WebSocket): the relay then hands on each relayed
message as a `SocketMessage`, and a protocol's socket reader (`responses_socket.py`) turns them into calls.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import IntEnum
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


class Opcode(IntEnum):
    """A WebSocket message's opcode (RFC 6455 section 5.2); a fragmented message carries its first frame's."""

    TEXT = 1
    BINARY = 2
    CLOSE = 8
    PING = 9
    PONG = 10


@dataclass(frozen=True, slots=True)
class SocketMessage:
    """One WebSocket message as relayed: whole (its frames joined, any per-message compression undone), in the
    direction it went. A close message's payload is its status code (2 bytes, big-endian) and reason, as on the
    wire; empty when the close gave no code."""

    from_client: bool
    opcode: Opcode
    payload: bytes


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

    # An adapter whose calls also travel inside a WebSocket offers `socket_reader(upgrade: HttpRequest)`: a reader
    # fed each `SocketMessage` that gives the calls as HTTP exchanges (`responses_socket.ResponsesSocket`).
