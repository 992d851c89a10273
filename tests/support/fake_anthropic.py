"""A scripted Anthropic Messages upstream for driving real agents (Claude Code) in tests.

Recorded fixtures replay fixed exchanges; a real agent sends requests no recording matches (its own system
prompt, today's date, its tool list). This upstream answers any `/v1/messages` request the way a model would
in a one-tool task, and keeps what it sent so that a test reads its expectations from the upstream's own log:

- tools offered and no tool result in the last user message: a `tool_use` of `Read` on `read_path`
  (when the agent offers Read and a path was given), else a final text; an agent whose read tool has another name
  or argument (opencode: `read`, `filePath`) says so with `read_tool` and `path_argument`;
- a tool result in the last user message, or no tools offered (titles, summaries, classifiers): a final text.

Streams are Server-Sent Events in the Messages API's event order; token counts are derived from the request
size, so they differ per call and are known only from `answers`.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web


@dataclass(frozen=True, slots=True)
class Answer:
    """One model call as the upstream answered it."""

    path: str
    headers: dict[str, str]
    request: dict[str, Any]
    stop_reason: str
    input_tokens: int
    output_tokens: int
    cache_read: int
    tool_use_id: str | None
    message_id: str


class FakeAnthropic:
    def __init__(self, read_path: str | None = None, final_text: str = "Done.", *, read_tool: str = "Read",
                 path_argument: str = "file_path") -> None:
        self.read_path = read_path
        self.final_text = final_text
        self.read_tool = read_tool
        self.path_argument = path_argument
        self.answers: list[Answer] = []
        self.other_requests: list[str] = []  # paths of requests that were not model calls
        self._ids = itertools.count(1)

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        body = await request.content.read()
        path = request.path
        if request.method != "POST" or not path.startswith("/v1/messages"):
            self.other_requests.append(f"{request.method} {path}")
            return web.json_response({"type": "error", "error": {"type": "not_found_error", "message": path}},
                                     status=404)
        doc = orjson.loads(body)
        if path.endswith("/count_tokens"):
            self.other_requests.append(f"{request.method} {path}")
            return web.json_response({"input_tokens": len(body) // 4})
        n = next(self._ids)
        tool_use_id = None
        if self._wants_tool(doc):
            tool_use_id = f"toolu_fake{n:04d}"
            content: list[dict[str, Any]] = [
                {"type": "text", "text": "Reading the file."},
                {"type": "tool_use", "id": tool_use_id, "name": self.read_tool,
                 "input": {self.path_argument: self.read_path}},
            ]
            stop = "tool_use"
        else:
            content = [{"type": "text", "text": self.final_text}]
            stop = "end_turn"
        answer = Answer(path, dict(request.headers), doc, stop, 1 + len(body) // 40, 5 + n, (n % 3) * 7,
                        tool_use_id, f"msg_fake{n:04d}")
        self.answers.append(answer)
        message = {
            "id": answer.message_id, "type": "message", "role": "assistant", "model": doc.get("model", "claude"),
            "content": content, "stop_reason": stop, "stop_sequence": None,
            "usage": {"input_tokens": answer.input_tokens, "output_tokens": answer.output_tokens,
                      "cache_read_input_tokens": answer.cache_read, "cache_creation_input_tokens": 0},
        }
        if not doc.get("stream"):
            return web.json_response(message)
        return await _stream(request, message)

    def _wants_tool(self, doc: dict[str, Any]) -> bool:
        offered = {t.get("name") for t in doc.get("tools") or () if isinstance(t, dict)}
        if self.read_path is None or self.read_tool not in offered:
            return False
        messages = doc.get("messages") or []
        last = messages[-1] if messages else {}
        blocks = last.get("content") if isinstance(last, dict) else None
        has_result = isinstance(blocks, list) and any(
            isinstance(b, dict) and b.get("type") == "tool_result" for b in blocks)
        return not has_result


async def _stream(request: web.BaseRequest, message: dict[str, Any]) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
    await response.prepare(request)

    async def send(event: str, data: dict[str, Any]) -> None:
        await response.write(b"event: " + event.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n")

    usage = message["usage"]
    start = {**message, "content": [], "stop_reason": None,
             "usage": {**usage, "output_tokens": 1}}
    await send("message_start", {"type": "message_start", "message": start})
    for index, block in enumerate(message["content"]):
        if block["type"] == "text":
            await send("content_block_start", {"type": "content_block_start", "index": index,
                                               "content_block": {"type": "text", "text": ""}})
            await send("content_block_delta", {"type": "content_block_delta", "index": index,
                                               "delta": {"type": "text_delta", "text": block["text"]}})
        else:
            await send("content_block_start", {"type": "content_block_start", "index": index,
                                               "content_block": {**block, "input": {}}})
            await send("content_block_delta", {"type": "content_block_delta", "index": index,
                                               "delta": {"type": "input_json_delta",
                                                         "partial_json": orjson.dumps(block["input"]).decode()}})
        await send("content_block_stop", {"type": "content_block_stop", "index": index})
    await send("message_delta", {"type": "message_delta",
                                 "delta": {"stop_reason": message["stop_reason"], "stop_sequence": None},
                                 "usage": {"output_tokens": usage["output_tokens"]}})
    await send("message_stop", {"type": "message_stop"})
    await response.write_eof()
    return response
