"""A scripted OpenAI Responses upstream for driving real Codex in tests, over HTTP (SSE) and over a WebSocket.

It answers any `response.create` (a WebSocket message) or `POST .../responses` the way a model would in a one-tool
task, the same on both transports, so a run over SSE and one over a WebSocket can be compared:

- `"generate": false` (Codex's warm-up): `response.created` and `response.completed`, no output;
- the newest input item is not a tool result: a call of `exec_command` that reads `read_path`;
- the newest input item is a tool result: a final text.

Token counts are fixed per kind of answer, so both transports add up to the same sums. Everything received and
sent is kept: `answers` (one per model call), and for each WebSocket its messages both ways (`sockets`).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import WSMsgType, web

TOOL_USAGE = {"input_tokens": 1200, "output_tokens": 30, "input_tokens_details": {"cached_tokens": 400},
              "output_tokens_details": {"reasoning_tokens": 8}}
FINAL_USAGE = {"input_tokens": 1500, "output_tokens": 12, "input_tokens_details": {"cached_tokens": 1100},
               "output_tokens_details": {"reasoning_tokens": 0}}
CALL_ID = "call_read_notes"


@dataclass(frozen=True, slots=True)
class Answer:
    """One model call as the upstream answered it."""

    transport: str  # "http" or "websocket"
    request: dict[str, Any]
    response_id: str
    usage: dict[str, Any] | None
    tool_call_id: str | None


@dataclass(slots=True)
class Socket:
    """One WebSocket as the upstream saw it: the upgrade's headers and every message each way, as (type, data)."""

    headers: Mapping[str, str]  # case-insensitive
    received: list[tuple[WSMsgType, Any]] = field(default_factory=list)
    sent: list[tuple[WSMsgType, Any]] = field(default_factory=list)


class FakeResponses:
    def __init__(self, read_path: str, final_text: str = "Done.") -> None:
        self.read_path = read_path
        self.final_text = final_text
        self.answers: list[Answer] = []
        self.sockets: list[Socket] = []
        self.other_requests: list[str] = []
        self._ids = itertools.count(1)

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        if not request.path.endswith("/responses"):
            self.other_requests.append(f"{request.method} {request.path}")
            if request.path.endswith("/models"):
                return web.json_response({"object": "list", "data": []})
            return web.json_response({"error": {"message": request.path}}, status=404)
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return await self._socket(request)
        body = orjson.loads(await request.read())
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for event in self._events(body, "http"):
            await response.write(b"event: " + event["type"].encode() + b"\ndata: " + orjson.dumps(event) + b"\n\n")
        await response.write_eof()
        return response

    async def _socket(self, request: web.BaseRequest) -> web.StreamResponse:
        socket = Socket(request.headers)
        self.sockets.append(socket)
        ws = web.WebSocketResponse()
        ws.headers["x-codex-turn-state"] = "fake-turn-state"  # Codex reads it from the upgrade's response
        await ws.prepare(request)
        async for message in ws:
            socket.received.append((message.type, message.data))
            if message.type is not WSMsgType.TEXT:
                continue
            body = orjson.loads(message.data)
            if body.get("type") != "response.create":
                continue
            for event in self._events(body, "websocket"):
                data = orjson.dumps(event).decode()
                await ws.send_str(data)
                socket.sent.append((WSMsgType.TEXT, data))
        return ws

    def _events(self, body: dict[str, Any], transport: str) -> list[dict[str, Any]]:
        response_id = f"resp_fake{next(self._ids):04d}"
        base = {"id": response_id, "object": "response", "model": body.get("model"), "status": "in_progress",
                "output": [], "usage": None}
        events: list[dict[str, Any]] = [{"type": "response.created", "response": base}]
        if body.get("generate") is False:
            return [*events, {"type": "response.completed", "response": {**base, "status": "completed"}}]
        newest = (body.get("input") or [{}])[-1]
        answers_tool = isinstance(newest, dict) and newest.get("type") == "function_call_output"
        if answers_tool:
            item: dict[str, Any] = {"type": "message", "id": f"msg_{response_id}", "role": "assistant",
                                    "status": "completed",
                                    "content": [{"type": "output_text", "text": self.final_text, "annotations": []}]}
            usage, call_id = FINAL_USAGE, None
            events += [{"type": "response.output_item.added", "output_index": 0,
                        "item": {**item, "status": "in_progress", "content": []}},
                       {"type": "response.output_text.delta", "output_index": 0, "content_index": 0,
                        "delta": self.final_text}]
        else:
            arguments = orjson.dumps({"cmd": f"cat {self.read_path}"}).decode()
            item = {"type": "function_call", "id": f"fc_{response_id}", "call_id": CALL_ID, "name": "exec_command",
                    "arguments": arguments, "status": "completed"}
            usage, call_id = TOOL_USAGE, CALL_ID
            events += [{"type": "response.output_item.added", "output_index": 0,
                        "item": {**item, "arguments": "", "status": "in_progress"}},
                       {"type": "response.function_call_arguments.delta", "output_index": 0, "item_id": item["id"],
                        "delta": arguments}]
        usage = {**usage, "total_tokens": usage["input_tokens"] + usage["output_tokens"]}
        events += [{"type": "response.output_item.done", "output_index": 0, "item": item},
                   {"type": "response.completed",
                    "response": {**base, "status": "completed", "output": [item], "usage": usage}}]
        self.answers.append(Answer(transport, body, response_id, usage, call_id))
        return events
