"""Ollama's native API: `POST /api/chat` and `POST /api/generate` (ollama/ollama docs/api.md).

A response is NDJSON (`application/x-ndjson`), one object a line, `done: false` until a last line with
`done: true`, `done_reason`, `prompt_eval_count` (input) and `eval_count` (output); chat lines carry
`message{role, content, thinking?, tool_calls?}`, generate lines `response` and `thinking`. With
`stream: false` the body is one such object. A body without its `done: true` line was cut (`Truncated`); an
`{"error": "..."}` line is a `ProviderError` of type `error` (Ollama gives no type). Lines and the one
document are read by the shared `ElementParser` (JSON documents in, a handler's events out).

Decisions where the wire leaves room:
- `stream` defaults to true when the request leaves it out (Ollama's default, unlike other APIs).
- `/api/generate` is a prompt-in, text-out completion API: operation `text_completion`, the conventions'
  name for completion-style (not chat) calls; `/api/chat` is `chat`.
- Tool calls carry no ids: `call_id` None and the key a counter (an `id`, should a newer server send one, is
  taken). A `tool` message names its tool by `tool_name` (newer clients); without it the name is that of the
  call at the same position in the preceding assistant turn, the order clients answer calls in.
- Tool results are the `tool` messages after the last assistant message: the answers to the previous call.
- `options.num_predict` < 0 means "no limit" (-1) or "fill the context" (-2): not a max_tokens value.
- Images are base64 without a type: recorded (under content capture) as image blobs with no MIME type.
- Usage as reported: Ollama's `prompt_eval_count` counts the prompt tokens it evaluated, so a prompt served
  from its KV cache may count low; there is no separate cache figure to add.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from llm_gateway.protocols import events as ev
from llm_gateway.protocols._json import integer, items, json_object, json_text, number, obj, text
from llm_gateway.protocols._parsers import ElementParser
from llm_gateway.protocols._parts import blob
from llm_gateway.protocols._response import Identity, reported
from llm_gateway.protocols._states import unexpected
from llm_gateway.protocols.base import HttpRequest, HttpResponseHead
from llm_gateway.protocols.exchange import ChatRequest, RequestParams, ToolResult, fingerprints, tool_descriptions
from llm_gateway.protocols.framing.jsonarray import JsonArrayDecoder
from llm_gateway.protocols.framing.lines import LineDecoder

__all__ = ["ADAPTER"]


# ---------------------------------------------------------------------------------------------------------
# Request


@dataclass(frozen=True, slots=True)
class _Message:
    role: str
    doc: dict[str, Any]

    def content(self) -> str:
        return text(self.doc.get("content")) or ""

    def calls(self) -> list[dict[str, Any]]:
        return list(items(self.doc.get("tool_calls")))

    def call_names(self) -> list[str | None]:
        return [text(obj(call.get("function")).get("name")) for call in self.calls()]


def _parse_request(request: HttpRequest, capture: bool) -> ChatRequest:
    doc = json_object(request.body)
    generate = request.path.partition("?")[0].endswith("/api/generate")
    if generate:  # one prompt, its system text beside it
        system = text(doc.get("system"))
        messages = [_Message("user", {"content": doc.get("prompt"), "images": doc.get("images")})]
    else:
        messages = [_Message(text(m.get("role")) or "user", m) for m in items(doc.get("messages"))]
        system = "\n".join(m.content() for m in messages if m.role == "system") or None
    tools = [obj(tool.get("function")) for tool in items(doc.get("tools"))]
    tool_names = [name for tool in tools if (name := text(tool.get("name")))]
    first_user = next((m.content() for m in messages if m.role == "user"), "")
    conversation, agent = fingerprints(system, first_user, sorted(tool_names))
    chat = ChatRequest(
        operation="text_completion" if generate else "chat",
        model=text(doc.get("model")),
        stream=doc.get("stream") is not False,
        params=_params(obj(doc.get("options"))),
        output_type="json" if doc.get("format") == "json" or isinstance(doc.get("format"), dict) else None,
        tool_names=tool_names,
        tool_descriptions=tool_descriptions(tools),
        tool_results=_tool_results(messages, capture),
        continues_tool_loop=bool(messages) and messages[-1].role == "tool",
        prompt_ordinal=sum(1 for m in messages if m.role == "user") or None,
        history_tool_calls=_history_tool_calls(messages),
        conversation_fingerprint=conversation,
        agent_fingerprint=agent,
    )
    if capture:
        chat.system_instructions = [{"type": "text", "content": system}] if system else None
        chat.input_messages = [_input_message(m) for m in messages if m.role != "system"]
        chat.tool_definitions = [_tool_definition(tool) for tool in tools] or None
    return chat


def _params(options: dict[str, Any]) -> RequestParams:
    max_tokens = integer(options.get("num_predict"))
    return RequestParams(
        temperature=number(options.get("temperature")),
        top_p=number(options.get("top_p")),
        top_k=number(options.get("top_k")),
        max_tokens=max_tokens if max_tokens is not None and max_tokens >= 0 else None,
        stop_sequences=_stops(options.get("stop")),
        seed=integer(options.get("seed")),
        frequency_penalty=number(options.get("frequency_penalty")),
        presence_penalty=number(options.get("presence_penalty")),
    )


def _stops(stop: object) -> list[str] | None:
    if isinstance(stop, str):
        return [stop]
    return [s for s in stop if isinstance(s, str)] if isinstance(stop, list) else None


def _history_tool_calls(messages: list[_Message]) -> dict[str, str]:
    """Only calls with an id can be paired by id; Ollama's usually have none."""
    return {
        call_id: name
        for m in messages
        if m.role == "assistant"
        for call in m.calls()
        if (call_id := text(call.get("id"))) and (name := text(obj(call.get("function")).get("name")))
    }


def _tool_results(messages: list[_Message], capture: bool) -> list[ToolResult]:
    last = max((i for i, m in enumerate(messages) if m.role == "assistant"), default=-1)
    called = messages[last].call_names() if last >= 0 else []
    results = []
    for position, message in enumerate(m for m in messages[last + 1 :] if m.role == "tool"):
        name = text(message.doc.get("tool_name")) or (called[position] if position < len(called) else None)
        results.append(
            ToolResult(
                call_id=text(message.doc.get("tool_call_id")),
                name=name,
                content=message.doc.get("content") if capture else None,
            )
        )
    return results


def _input_message(message: _Message) -> dict[str, Any]:
    parts: list[dict[str, Any]] = []
    thinking = text(message.doc.get("thinking"))
    if thinking:
        parts.append({"type": "reasoning", "content": thinking})
    if message.role == "tool":
        parts.append({"type": "tool_call_response", "id": text(message.doc.get("tool_call_id")),
                      "response": message.doc.get("content")})
    elif message.content():
        parts.append({"type": "text", "content": message.content()})
    images = message.doc.get("images")
    parts += [blob(text(image), None, "image") for image in images] if isinstance(images, list) else []
    for call in message.calls():
        function = obj(call.get("function"))
        parts.append({"type": "tool_call", "id": text(call.get("id")), "name": text(function.get("name")),
                      "arguments": function.get("arguments")})
    return {"role": message.role, "parts": parts}


def _tool_definition(function: dict[str, Any]) -> dict[str, Any]:
    return {"type": "function", "name": text(function.get("name")),
            "description": text(function.get("description")), "parameters": function.get("parameters")}


# ---------------------------------------------------------------------------------------------------------
# Response


class _Phase(enum.Enum):
    #: response objects are arriving
    STREAMING = "streaming"
    #: the `done: true` object came: nothing follows it
    DONE = "done"
    #: an error object came
    FAILED = "failed"


class _OllamaStream:
    """Response objects (NDJSON lines, or the one document) in, events out. An object after the `done: true`
    one is still read, and logged at debug."""

    __slots__ = ("_calls", "_identity", "state")

    def __init__(self) -> None:
        self._identity = Identity()
        self._calls = 0  # tool calls so far: each call's key
        self.state = _Phase.STREAMING

    def __repr__(self) -> str:
        return f"<_OllamaStream {self.state.name} calls={self._calls}>"

    def end(self) -> list[ev.Event]:
        if self.state is not _Phase.STREAMING:
            return []
        return [ev.Truncated("the response ended before its done:true line")]

    def document(self, raw: bytes | str) -> list[ev.Event]:
        doc = json_object(raw)
        if self.state is _Phase.DONE:
            unexpected(self, "an object", self.state)
        if "error" in doc:
            if self.state is _Phase.STREAMING:
                self.state = _Phase.FAILED
            error = doc["error"]
            return [ev.ProviderError("error", text(error) or text(obj(error).get("message")))]
        out = self._identity.update(None, doc.get("model"))
        message = obj(doc.get("message"))
        thinking = text(message.get("thinking")) or text(doc.get("thinking"))
        content = text(message.get("content")) or text(doc.get("response"))
        if thinking:
            out.append(ev.ReasoningDelta(thinking))
        if content:
            out.append(ev.TextDelta(content))
        out += [self._tool_call(call) for call in items(message.get("tool_calls"))]
        if doc.get("done") is True:
            out += self._done_events(doc)
        return out

    def _tool_call(self, call: dict[str, Any]) -> ev.ToolCallStart:
        """Ollama sends a call whole, arguments as an object."""
        key, self._calls = self._calls, self._calls + 1
        function = obj(call.get("function"))
        return ev.ToolCallStart(key, text(call.get("id")) or None, text(function.get("name")) or "",
                                json_text(function.get("arguments")))

    def _done_events(self, doc: dict[str, Any]) -> list[ev.Event]:
        self.state = _Phase.DONE
        usage = reported(ev.Usage(integer(doc.get("prompt_eval_count")), integer(doc.get("eval_count"))))
        out: list[ev.Event] = [usage] if usage is not None else []
        reason = text(doc.get("done_reason"))
        if reason:  # older servers send none: no reason is invented
            out.append(ev.Finish(reason))
        return out


def _is_whole(request: ChatRequest, head: HttpResponseHead) -> bool:
    """One JSON document (`stream: false`) or NDJSON lines: the content type says, else the request."""
    ctype = head.headers.get("content-type", "").lower()
    if "ndjson" in ctype or "jsonl" in ctype:
        return False
    if "application/json" in ctype:
        return True
    return not request.stream


class OllamaAdapter:
    def parse_request(self, request: HttpRequest, capture: bool) -> ChatRequest:
        return _parse_request(request, capture)

    def response_parser(self, request: ChatRequest, head: HttpResponseHead) -> ElementParser:
        # one document may be pretty-printed over several lines: it is framed by its braces, not by lines
        decoder = JsonArrayDecoder() if _is_whole(request, head) else LineDecoder()
        return ElementParser(decoder, _OllamaStream())

    def provider_name(self, request: HttpRequest) -> str:
        return "ollama"


ADAPTER = OllamaAdapter()
