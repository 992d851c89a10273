"""Mixed traffic for the soak test: a fake provider whose every answer is a pure function of the call (so a client
can tell whether a single byte was altered on the way), and agents that drive it through the gateway.

Each call carries `x-soak-id` (unique) and `x-soak-kind`; the gateway relays both as it relays any header. Kinds:
`stream` and `plain` (an Anthropic answer, streamed or not), `tool` then `result` (a tool loop: a tool_use, then the
answer to its result), `openai` (a streamed Chat Completion), `error` (a 500 or 429 from the provider), `abort`
(a long stream the client leaves early) and `unreachable` (a provider nobody listens for: the gateway's 502)."""

from __future__ import annotations

import asyncio
import random
import zlib
from collections import Counter
from dataclasses import dataclass, field

import aiohttp
import orjson
from aiohttp import web

MODEL = "claude-sonnet-4-5"
#: the share of each way an agent's turn goes
TURNS = {"stream": 30, "plain": 10, "tool": 20, "openai": 15, "error": 10, "abort": 10, "unreachable": 5}


def _sse(name: str, data: object) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


def answer_chunks(kind: str, key: str) -> list[bytes]:
    """What the provider writes for call `key`, chunk by chunk: the same bytes for the same call, always."""
    seed = zlib.crc32(key.encode())
    text = f"answer {key}: " + "lorem ipsum dolor sit amet " * (20 + seed % 120)
    if kind == "openai":
        head = {"id": f"chatcmpl-{key}", "object": "chat.completion.chunk", "created": 1_700_000_000, "model": "gpt-4o"}
        pieces = [text[i : i + 80] for i in range(0, len(text), 80)]
        chunks = [b"data: " + orjson.dumps({**head, "choices": [{"index": 0, "delta": {"content": p}}]}) + b"\n\n"
                  for p in pieces]
        usage = {"prompt_tokens": 12, "completion_tokens": len(pieces), "total_tokens": 12 + len(pieces)}
        chunks.append(b"data: " + orjson.dumps({**head, "choices": [{"index": 0, "delta": {},
                                                                     "finish_reason": "stop"}], "usage": usage})
                      + b"\n\n")
        return [*chunks, b"data: [DONE]\n\n"]
    if kind == "error":
        status = 429 if seed % 2 else 500
        return [orjson.dumps({"type": "error", "error": {"type": "rate_limit_error" if status == 429 else "api_error",
                                                          "message": f"{status} for {key}"}})]
    if kind == "plain":
        return [orjson.dumps({"id": f"msg_{key}", "type": "message", "role": "assistant", "model": MODEL,
                              "content": [{"type": "text", "text": text}], "stop_reason": "end_turn",
                              "stop_sequence": None, "usage": {"input_tokens": 12, "output_tokens": 40}})]
    message = {"id": f"msg_{key}", "type": "message", "role": "assistant", "model": MODEL, "content": [],
               "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": 12, "output_tokens": 0}}
    chunks = [_sse("message_start", {"type": "message_start", "message": message})]
    if kind == "tool":
        chunks += [_sse("content_block_start", {"type": "content_block_start", "index": 0, "content_block": {
                       "type": "tool_use", "id": f"toolu_{key}", "name": "read_file", "input": {}}}),
                   _sse("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {
                       "type": "input_json_delta", "partial_json": '{"path": "src/' + key + '.py"}'}}),
                   _sse("content_block_stop", {"type": "content_block_stop", "index": 0})]
        stop = "tool_use"
    else:
        step = 60 if kind != "abort" else 20
        chunks.append(_sse("content_block_start", {"type": "content_block_start", "index": 0,
                                                   "content_block": {"type": "text", "text": ""}}))
        chunks += [_sse("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {
                       "type": "text_delta", "text": text[i : i + step]}}) for i in range(0, len(text), step)]
        chunks.append(_sse("content_block_stop", {"type": "content_block_stop", "index": 0}))
        stop = "end_turn"
    chunks += [_sse("message_delta", {"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": None},
                                      "usage": {"output_tokens": 40}}),
               _sse("message_stop", {"type": "message_stop"})]
    return chunks


def status_of(kind: str, key: str) -> int:
    if kind == "error":
        return 429 if zlib.crc32(key.encode()) % 2 else 500
    return 502 if kind == "unreachable" else 200


class SoakUpstream:
    """The provider: answers each call with `answer_chunks`, one write per chunk (an abort's stream slowly)."""

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        await request.read()
        kind, key = request.headers["x-soak-kind"], request.headers["x-soak-id"]
        chunks = answer_chunks(kind, key)
        if kind in ("error", "plain"):
            return web.Response(status=status_of(kind, key), body=chunks[0], content_type="application/json")
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for chunk in chunks:
            await response.write(chunk)
            if kind == "abort":
                await asyncio.sleep(0.01)
        await response.write_eof()
        return response


@dataclass
class Tally:
    """What the agents did and saw."""

    calls: Counter = field(default_factory=Counter)  # by kind: requests the gateway received
    altered: list[str] = field(default_factory=list)  # keys of calls whose bytes differ from what was sent
    wrong_status: list[tuple[str, int]] = field(default_factory=list)
    response_ids: set[str] = field(default_factory=set)  # of the answers, for matching chat spans

    @property
    def total(self) -> int:
        return sum(self.calls.values())


class Agents:
    """`count` agents, each taking turns in one of 1,000 sessions until told to stop, `pause_s` apart on average
    (a model's answer takes time; and the machine has to trace what it relays: with tracing at the lowest priority,
    a relay that keeps the cores busy sheds tracing, as designed, rather than slow down)."""

    def __init__(self, gateway: str, count: int = 6, sessions: int = 1000, seed: int = 20,
                 pause_s: float = 0.1) -> None:
        self.gateway = gateway
        self.count = count
        self.pause_s = pause_s
        self.sessions = sessions
        self.seed = seed
        self.tally = Tally()
        self.stop = asyncio.Event()
        self._numbers = iter(range(1 << 62))

    async def run(self) -> None:
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector, auto_decompress=False) as http:
            await asyncio.gather(*(self._agent(http, random.Random(self.seed + i)) for i in range(self.count)))

    async def _agent(self, http: aiohttp.ClientSession, rng: random.Random) -> None:
        kinds, weights = list(TURNS), list(TURNS.values())
        while not self.stop.is_set():
            session = f"soak-{rng.randrange(self.sessions)}"
            kind = rng.choices(kinds, weights)[0]
            key = f"{next(self._numbers)}"
            prompt = {"role": "user", "content": f"{kind} {key}"}
            if kind == "tool":
                await self._call(http, "tool", key, session, [prompt])
                use = {"role": "assistant", "content": [{"type": "tool_use", "id": f"toolu_{key}",
                                                         "name": "read_file", "input": {"path": f"src/{key}.py"}}]}
                result = {"role": "user", "content": [{"type": "tool_result", "tool_use_id": f"toolu_{key}",
                                                       "content": "def main(): pass"}]}
                await self._call(http, "stream", f"{key}r", session, [prompt, use, result])
            else:
                await self._call(http, kind, key, session, [prompt])
            await asyncio.sleep(rng.uniform(0, 2 * self.pause_s))

    async def _call(self, http: aiohttp.ClientSession, kind: str, key: str, session: str, messages: list) -> None:
        headers = {"x-soak-id": key, "x-soak-kind": kind, "x-session-id": session, "content-type": "application/json"}
        if kind == "openai":
            headers["authorization"] = "Bearer sk-soak"
            path, body = "/v1/chat/completions", {"model": "gpt-4o", "stream": True, "messages": messages,
                                                  "stream_options": {"include_usage": True}}
        elif kind == "unreachable":
            path, body = "/v1beta/models/gemini-2.5-flash:generateContent", {"contents": [
                {"role": "user", "parts": [{"text": messages[0]["content"]}]}]}
        else:
            path = "/v1/messages"
            headers.update({"x-api-key": "sk-ant-soak", "anthropic-version": "2023-06-01"})
            body = {"model": MODEL, "max_tokens": 1024, "messages": messages, "stream": kind != "plain"}
        self.tally.calls[kind] += 1
        async with http.post(self.gateway + path, data=orjson.dumps(body), headers=headers) as response:
            if response.status != status_of(kind, key):
                self.tally.wrong_status.append((key, response.status))
            if kind == "abort":
                received = await response.content.readexactly(600)
                response.close()  # the client leaves mid-stream
            else:
                received = await response.read()
        if kind == "unreachable":
            return  # the gateway's own answer
        sent = b"".join(answer_chunks(kind, key))
        if received != sent[: len(received)] or (kind != "abort" and len(received) != len(sent)):
            self.tally.altered.append(key)
        if kind not in ("error", "unreachable"):
            self.tally.response_ids.add(f"chatcmpl-{key}" if kind == "openai" else f"msg_{key}")
