"""Responses over WebSocket (Codex's default transport): the model calls inside one socket's messages.

The client opens a WebSocket on the Responses path and sends `response.create` messages, each a Responses request
body with a `type`; the server answers each with the events a streamed `POST .../responses` carries in its SSE
`data:` lines, one event per message, up to `response.completed`, `.failed`, `.incomplete` or `error`.

`ResponsesSocket` is sans-IO: fed each relayed message (`message`), then the end of the socket (`close`), it gives
each model call as the HTTP exchange a POST of the same call would be: `CallRequest` (the request), `CallResponse`
(the status and content type), `CallBody` pieces (each server event framed as one SSE event, so the Responses
adapter reads them as it reads a stream) and `CallEnd`. The caller stamps each with the time of the message that
made it.

Decisions where the wire leaves room:
- `"generate": false` (Codex's warm-up, sent before the first prompt) is no model call: it gives no event, but
  the response it gets still anchors the next create's `previous_response_id`.
- A create that continues `previous_response_id` sends only the new input items. The reader keeps each response's
  conversation (its request's whole input and the items it output) and gives the call the whole conversation as
  `input`, without `previous_response_id`: the body Codex's HTTP transport sends for the same call. A previous
  response this socket never saw leaves the body as it came (the id stays a hint for the session tracker).
- Headers: the upgrade request's, with the string entries of the create's `client_metadata` over them (Codex
  sends there what each HTTP call carries as headers: `x-codex-turn-metadata`, `session_id`, `traceparent`).
- Status: 200, unless the call's first server event is an `error` that carries an HTTP `status` of 400 or more
  (how the server wraps what a POST would have answered with that status): then that status, and the event is the
  error body.
- The server answers creates in order: each server event belongs to the oldest open call. An event with no call
  open (rate-limit notices between calls) belongs to none.
- The end of the socket ends the calls still open: `client_gone` or `upstream_stream_cut` as the side whose close
  frame came first, or, when none came, the cause the caller gives (the relay's, for the side that went away).
"""

from __future__ import annotations

import enum
import logging
import re
from collections import OrderedDict, deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
from multidict import CIMultiDict

from llm_gateway.protocols._json import text
from llm_gateway.protocols.base import HttpRequest, HttpResponseHead, Opcode, SocketMessage

log = logging.getLogger("llm_gateway.protocols")

#: responses whose conversation is kept for a later `previous_response_id` (Codex continues only the last one)
KEPT_CONVERSATIONS = 8
_TERMINAL = frozenset({"response.completed", "response.failed", "response.incomplete", "error"})
_LINE_END = re.compile(rb"\r\n|\r|\n")
_STREAM_HEAD = {"content-type": "text/event-stream"}
_ERROR_HEAD = {"content-type": "application/json"}


@dataclass(frozen=True, slots=True)
class CallRequest:
    """A `response.create` that asks for a model call: the request as a POST of the same call carries it."""

    call: int
    request: HttpRequest


@dataclass(frozen=True, slots=True)
class CallResponse:
    """The call's first server event came: its status and content type."""

    call: int
    head: HttpResponseHead


@dataclass(frozen=True, slots=True)
class CallBody:
    """A piece of the call's response body: one server event (SSE-framed), or a whole error document."""

    call: int
    data: bytes


@dataclass(frozen=True, slots=True)
class CallEnd:
    """The call is over: its terminal event came (`error` None), or the socket ended first."""

    call: int
    error: str | None = None
    message: str | None = None


SocketEvent = CallRequest | CallResponse | CallBody | CallEnd


class CallPhase(enum.Enum):
    #: sent; no server event for it yet
    WAITING = "waiting"
    #: its events are arriving
    STREAMING = "streaming"


@dataclass(slots=True)
class _Call:
    number: int
    silent: bool  # a warm-up: read for the chain, no events
    #: the whole conversation's input items, or None when an unknown response was continued
    input: list[Any] | None
    phase: CallPhase = CallPhase.WAITING
    response_id: str | None = None
    output: list[Any] = field(default_factory=list)  # items from `response.output_item.done`
    final_output: list[Any] | None = None  # the terminal response's `output`


class ResponsesSocket:
    """One WebSocket's model calls (see the module docstring). `upgrade`: the upgrade request."""

    __slots__ = ("_calls", "_closed_by", "_conversations", "_numbers", "_open", "_upgrade")

    def __init__(self, upgrade: HttpRequest) -> None:
        self._upgrade = upgrade
        self._calls: deque[_Call] = deque()
        self._conversations: OrderedDict[str, list[Any]] = OrderedDict()
        self._numbers = 0
        self._closed_by: tuple[bool, str] | None = None  # (from client, "code reason") of the first close frame
        self._open = True

    def __repr__(self) -> str:
        state = "open" if self._open else "closed"
        return f"<ResponsesSocket {state} calls_open={len(self._calls)} kept={len(self._conversations)}>"

    def message(self, message: SocketMessage) -> list[SocketEvent]:
        """The events one relayed message makes."""
        if not self._open:
            log.debug("%r: a message after the end is ignored", self)
            return []
        if message.opcode is Opcode.CLOSE:
            if self._closed_by is None:
                self._closed_by = (message.from_client, _close_text(message.payload))
            return []
        if message.opcode is not Opcode.TEXT:
            return []  # pings, pongs; binary messages are no part of this protocol
        if message.from_client:
            return self._client(message.payload)
        return self._server(message.payload)

    def close(self, error: str | None = None, detail: str | None = None) -> list[SocketEvent]:
        """The socket ended: the open calls end as the first close frame says (the side that sent it cut them),
        else with the caller's `error` and `detail` (how the connection ended without one)."""
        if not self._open:
            return []
        self._open = False
        if self._closed_by is not None or error is None:
            from_client, how = self._closed_by or (False, "")
            error = "client_gone" if from_client else "upstream_stream_cut"
            who = "client" if from_client else "upstream"
            detail = f"the {who} closed the WebSocket ({how}) before the response ended" if how else \
                f"the {who} closed the WebSocket before the response ended"
        out: list[SocketEvent] = [CallEnd(c.number, error, detail) for c in self._calls if not c.silent]
        self._calls.clear()
        return out

    # -----------------------------------------------------------------------------------------------------
    # Client messages

    def _client(self, payload: bytes) -> list[SocketEvent]:
        try:
            body = orjson.loads(payload)
        except orjson.JSONDecodeError:
            log.debug("%r: a client message that is not JSON is ignored", self)
            return []
        if not isinstance(body, dict) or body.get("type") != "response.create":
            return []  # response.processed acknowledgements, or messages of another protocol
        self._numbers += 1
        items = body.get("input")
        items = [{"type": "message", "role": "user", "content": items}] if isinstance(items, str) else (
            items if isinstance(items, list) else [])
        previous = text(body.get("previous_response_id"))
        whole: list[Any] | None = items
        request_body = payload
        if previous:
            earlier = self._conversations.get(previous)
            whole = earlier + items if earlier is not None else None
            if whole is not None:
                request_body = orjson.dumps({**{k: v for k, v in body.items() if k != "previous_response_id"},
                                             "input": whole})
        call = _Call(self._numbers, body.get("generate") is False, whole)
        self._calls.append(call)
        if call.silent:
            return []
        request = HttpRequest("POST", self._upgrade.path, _call_headers(self._upgrade.headers, body),
                              request_body, self._upgrade.upstream_url)
        return [CallRequest(call.number, request)]

    # -----------------------------------------------------------------------------------------------------
    # Server messages

    def _server(self, payload: bytes) -> list[SocketEvent]:
        if not self._calls:
            return []
        call = self._calls[0]
        try:
            doc = orjson.loads(payload)
        except orjson.JSONDecodeError:
            doc = None
        doc = doc if isinstance(doc, dict) else {}
        kind = text(doc.get("type")) or ""
        out: list[SocketEvent] = []
        if call.phase is CallPhase.WAITING:
            call.phase = CallPhase.STREAMING
            status = doc.get("status") if kind == "error" else None
            if isinstance(status, int) and not isinstance(status, bool) and status >= 400:
                self._calls.popleft()
                if call.silent:
                    return []
                return [CallResponse(call.number, HttpResponseHead(status, _ERROR_HEAD)),
                        CallBody(call.number, payload), CallEnd(call.number)]
            if not call.silent:
                out.append(CallResponse(call.number, HttpResponseHead(200, _STREAM_HEAD)))
        if not call.silent:
            out.append(CallBody(call.number, _sse(payload)))
        self._follow(call, kind, doc)
        if kind in _TERMINAL:
            self._calls.popleft()
            self._keep(call)
            if not call.silent:
                out.append(CallEnd(call.number))
        return out

    def _follow(self, call: _Call, kind: str, doc: dict[str, Any]) -> None:
        """Note what the chain needs: the response's id and the items it output."""
        response = doc.get("response")
        if isinstance(response, dict):
            call.response_id = text(response.get("id")) or call.response_id
            if kind in _TERMINAL and isinstance(response.get("output"), list):
                call.final_output = response["output"]
        elif kind == "response.output_item.done" and isinstance(doc.get("item"), dict):
            call.output.append(doc["item"])

    def _keep(self, call: _Call) -> None:
        if call.response_id is None or call.input is None:
            return
        output = call.output or call.final_output or []
        conversations = self._conversations
        conversations[call.response_id] = call.input + output
        conversations.move_to_end(call.response_id)
        while len(conversations) > KEPT_CONVERSATIONS:
            conversations.popitem(last=False)


def _call_headers(upgrade: Mapping[str, str], body: dict[str, Any]) -> CIMultiDict[str]:
    headers = CIMultiDict(upgrade)
    metadata = body.get("client_metadata")
    if isinstance(metadata, dict):
        for name, value in metadata.items():
            if isinstance(value, str) and name.isascii():
                headers[name] = value
    return headers


def _sse(payload: bytes) -> bytes:
    """A server event as the one SSE event a streamed POST carries it in (a line end in the JSON, which can only be
    whitespace, starts another `data:` line: SSE joins them again)."""
    if b"\n" not in payload and b"\r" not in payload:
        return b"data: " + payload + b"\n\n"
    return b"".join(b"data: " + line + b"\n" for line in _LINE_END.split(payload)) + b"\n"


def _close_text(payload: bytes) -> str:
    if len(payload) < 2:
        return ""
    reason = payload[2:].decode("utf-8", "replace")
    code = int.from_bytes(payload[:2], "big")
    return f"{code} {reason}".strip()
