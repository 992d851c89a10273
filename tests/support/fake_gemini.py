"""A scripted Gemini API upstream (`generateContent`, `streamGenerateContent`) for driving real Gemini CLI in tests.

It answers any model call the way a model would in a one-tool task, and keeps what it sent so that a test reads its
expectations from the upstream's own log:

- a request for JSON (`generationConfig.responseJsonSchema` or `responseSchema`: Gemini CLI's side calls, such as the
  model router's complexity classifier and the next-speaker check) gets an object that fits the schema: each
  property the schema names, the first value of an enum, a small number, `false`, a short text;
- tools offered and the newest content no function response: a `functionCall` of `read_file` on `read_path` (when the
  client offers read_file and a path was given), else a final text;
- a function response in the newest content: a final text.

A streamed answer is one Server-Sent Event per chunk, text and usage in the last (the API sends no [DONE]). Token
counts derive from the request's size, so they differ per call and are known only from `answers`.
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
    model: str
    streamed: bool
    kind: str  # "json" (a side call's structured answer), "tool" (a functionCall) or "text"
    prompt_tokens: int
    output_tokens: int
    thoughts_tokens: int
    call_id: str | None
    response_id: str


class FakeGemini:
    def __init__(self, read_path: str | None = None, final_text: str = "Done.") -> None:
        self.read_path = read_path
        self.final_text = final_text
        self.answers: list[Answer] = []
        self.other_requests: list[str] = []  # requests that were not model calls
        self._ids = itertools.count(1)

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        body = await request.read()
        path = request.path
        operation = path.rpartition(":")[2]
        if request.method != "POST" or operation not in ("generateContent", "streamGenerateContent"):
            self.other_requests.append(f"{request.method} {path}")
            if operation == "countTokens":
                return web.json_response({"totalTokens": len(body) // 4})
            return web.json_response({"error": {"code": 404, "message": path, "status": "NOT_FOUND"}}, status=404)
        doc = orjson.loads(body)
        n = next(self._ids)
        model = path.rpartition("/models/")[2].partition(":")[0]
        config = doc.get("generationConfig") or {}
        schema = config.get("responseJsonSchema") or config.get("responseSchema")
        call_id = None
        if schema is not None:
            kind, parts = "json", [{"text": orjson.dumps(_fitting(schema)).decode()}]
        elif self._wants_tool(doc):
            kind, call_id = "tool", f"call_fake{n:04d}"
            parts = [{"functionCall": {"id": call_id, "name": "read_file", "args": {"file_path": self.read_path}}}]
        else:
            kind, parts = "text", [{"text": self.final_text}]
        streamed = operation == "streamGenerateContent"
        answer = Answer(path, dict(request.headers), doc, model, streamed, kind, 1 + len(body) // 40, 3 + n, n % 4,
                        call_id, f"resp_fake{n:04d}")
        self.answers.append(answer)
        usage = {"promptTokenCount": answer.prompt_tokens, "candidatesTokenCount": answer.output_tokens,
                 "thoughtsTokenCount": answer.thoughts_tokens,
                 "totalTokenCount": answer.prompt_tokens + answer.output_tokens + answer.thoughts_tokens}
        final = {"candidates": [{"content": {"role": "model", "parts": parts}, "finishReason": "STOP", "index": 0}],
                 "usageMetadata": usage, "modelVersion": model, "responseId": answer.response_id}
        if not streamed:
            return web.json_response(final)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        if kind == "text":  # a first chunk of thought, as thinking models stream it
            thought = {"candidates": [{"content": {"role": "model", "parts": [{"text": "Answering.", "thought": True}]},
                                       "index": 0}], "modelVersion": model, "responseId": final["responseId"]}
            await response.write(b"data: " + orjson.dumps(thought) + b"\r\n\r\n")
        await response.write(b"data: " + orjson.dumps(final) + b"\r\n\r\n")
        await response.write_eof()
        return response

    def _wants_tool(self, doc: dict[str, Any]) -> bool:
        offered = {f.get("name") for t in doc.get("tools") or () for f in t.get("functionDeclarations") or ()}
        if self.read_path is None or "read_file" not in offered:
            return False
        contents = doc.get("contents") or [{}]
        return not any("functionResponse" in part for part in contents[-1].get("parts") or ())


def _fitting(schema: dict[str, Any]) -> Any:
    """A value that fits a JSON schema (either spelling of its types: OBJECT or object)."""
    if schema.get("enum"):
        return schema["enum"][0]
    kind = str(schema.get("type", "object")).lower()
    if kind == "object":
        return {name: _fitting(sub) for name, sub in (schema.get("properties") or {}).items()}
    if kind == "array":
        return [_fitting(schema.get("items") or {"type": "string"})]
    return {"integer": 10, "number": 0.5, "boolean": False}.get(kind, "simple")
