"""OpenAI Chat Completions (`POST .../chat/completions`), as OpenAI and the many compatible servers speak it.

Streamed: SSE `data: {chunk}` events ending with `data: [DONE]`; each chunk has `choices[].delta` (content,
tool_calls fragments keyed by `index`, finish_reason) and, with `stream_options.include_usage`, a last
`choices: []` chunk carrying `usage`. Not streamed: one `chat.completion` document.

Decisions where the wire leaves room:
- Reasoning: `delta.reasoning_content` (DeepSeek, vLLM) or else `delta.reasoning` (OpenRouter, Ollama, newer
  vLLM); a server that sends both sends the same text twice, so only one is read.
- A stream without `[DONE]` is `Truncated`, unless every choice it started reported a finish_reason: some
  compatible servers (and proxies in front of them) never send `[DONE]`, and a finished answer is not a cut one.
  The cost: a stream cut between the finish chunk and the usage chunk reads as complete, without usage.
- No usage in the stream (no `include_usage`) means no `Usage` event: nothing is estimated.
- An `{"error": {...}}` chunk is a `ProviderError`; the chunk's choices (OpenRouter adds finish_reason "error")
  are still read. After an error, a missing `[DONE]` is not reported again as a truncation.
- Tool call fragments are keyed by (choice, `index`); servers that omit `index` are keyed by call id, then by
  position in the chunk.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Any

import orjson

from llm_gateway.protocols import events as ev
from llm_gateway.protocols._json import body_hints, integer, items, json_object, number, obj, text
from llm_gateway.protocols._openai import content_text, output_type, provider_for_url, tool_specs, usage_event
from llm_gateway.protocols._parsers import JsonBodyParser, SSEParser
from llm_gateway.protocols._response import Identity, is_streamed
from llm_gateway.protocols._states import unexpected
from llm_gateway.protocols.base import HttpRequest, HttpResponseHead, ResponseParser
from llm_gateway.protocols.errors import error_fields
from llm_gateway.protocols.exchange import ChatRequest, RequestParams
from llm_gateway.protocols.framing.sse import SSEEvent
from llm_gateway.protocols.transcript import Transcript

#: body field -> hint name
_HINTS = {"user": "user_id", "prompt_cache_key": "prompt_cache_key"}

#: one tool call of a choice -> its events: (choice index, position in the list, the call object)
CallReader = Callable[[int, int, dict[str, Any]], list[ev.Event]]


class ChatCompletionsAdapter:
    def parse_request(self, request: HttpRequest, capture: bool) -> ChatRequest:
        body = json_object(request.body)
        transcript = Transcript(capture, tools=list(tool_specs(body.get("tools"))))
        for message in items(body.get("messages")):
            _read_message(transcript, message)
        chat = ChatRequest(
            operation="chat",
            model=text(body.get("model")),
            stream=body.get("stream") is True,
            params=_params(body),
            output_type=output_type(obj(body.get("response_format")).get("type")),
            hints=body_hints(body, _HINTS),
        )
        return transcript.fill(chat)

    def response_parser(self, request: ChatRequest, head: HttpResponseHead) -> ResponseParser:
        if is_streamed(request, head):
            return SSEParser(_ChatStream())
        return JsonBodyParser(lambda doc: _chunk_events(doc, Identity(), "message", _whole_call))

    def provider_name(self, request: HttpRequest) -> str:
        return provider_for_url(request.upstream_url)


ADAPTER = ChatCompletionsAdapter()


# ---------------------------------------------------------------------------------------------------------
# Request


def _params(body: dict[str, Any]) -> RequestParams:
    stop = body.get("stop")
    max_tokens = integer(body.get("max_completion_tokens"))  # the newer name wins when both are sent
    return RequestParams(
        temperature=number(body.get("temperature")),
        top_p=number(body.get("top_p")),
        top_k=number(body.get("top_k")),  # not OpenAI's, but vLLM, OpenRouter and others accept it
        max_tokens=max_tokens if max_tokens is not None else integer(body.get("max_tokens")),
        stop_sequences=[stop] if isinstance(stop, str) else _strings(stop),
        seed=integer(body.get("seed")),
        frequency_penalty=number(body.get("frequency_penalty")),
        presence_penalty=number(body.get("presence_penalty")),
        choice_count=integer(body.get("n")),
    )


def _strings(value: Any) -> list[str] | None:
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else None


def _read_message(transcript: Transcript, message: dict[str, Any]) -> None:
    role = text(message.get("role")) or "user"
    content = message.get("content")
    if role in ("system", "developer"):
        transcript.instruction(content)
    elif role == "tool":
        transcript.tool_result(message.get("tool_call_id"), content, name=message.get("name"))
    elif role == "assistant":
        transcript.reasoning(_reasoning(message) or "")
        calls = list(items(message.get("tool_calls")))
        if content is not None or not calls:
            transcript.message(role, content)
        for call in calls:
            spec = _call_spec(call)[1]
            transcript.tool_call(call.get("id"), spec.get("name"), _arguments(spec))
    else:
        transcript.message(role, content)


# ---------------------------------------------------------------------------------------------------------
# Response: the same reader serves stream chunks ("delta") and whole completions ("message")


def _chunk_events(doc: dict[str, Any], identity: Identity, part: str, read_call: CallReader) -> list[ev.Event]:
    out: list[ev.Event] = [_provider_error(doc["error"])] if doc.get("error") is not None else []
    out += identity.update(doc.get("id"), doc.get("model"))
    for position, choice in enumerate(items(doc.get("choices"))):
        index = _index(choice, position)
        message = obj(choice.get(part))
        reasoning = _reasoning(message)
        if reasoning:
            out.append(ev.ReasoningDelta(reasoning, index))
        answer = content_text(message.get("content"))
        if answer:
            out.append(ev.TextDelta(answer, index))
        for n, call in enumerate(items(message.get("tool_calls"))):
            out += read_call(index, n, call)
        reason = text(choice.get("finish_reason"))
        if reason:
            out.append(ev.Finish(reason, index))
    # Groq once reported stream usage only under its own `x_groq` key
    usage = usage_event(doc.get("usage") or obj(doc.get("x_groq")).get("usage"), "prompt_tokens", "completion_tokens")
    if usage is not None:
        out.append(usage)
    return out


def _index(choice: dict[str, Any], position: int) -> int:
    index = integer(choice.get("index"))
    return position if index is None else index


def _reasoning(message: dict[str, Any]) -> str | None:
    return text(message.get("reasoning_content")) or text(message.get("reasoning"))


def _provider_error(error: Any) -> ev.ProviderError:
    etype, message = error_fields(orjson.dumps({"error": error}))
    return ev.ProviderError(etype or "error", message)


def _call_spec(call: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """(type, spec): a function call nests under "function", a custom tool call under "custom"."""
    kind = "custom" if call.get("type") == "custom" else "function"
    return kind, obj(call.get(kind)) or obj(call.get("function"))


def _arguments(spec: dict[str, Any]) -> str | None:
    value = spec.get("arguments", spec.get("input"))  # custom tool calls carry `input`, free text
    if isinstance(value, dict | list):  # some compatible servers send the arguments as an object
        return orjson.dumps(value).decode()
    return text(value)


def _start(key: int | str, choice: int, call: dict[str, Any]) -> ev.ToolCallStart:
    kind, spec = _call_spec(call)
    name = text(spec.get("name")) or ""
    return ev.ToolCallStart(key, text(call.get("id")), name, _arguments(spec) or None, choice, kind)


def _whole_call(choice: int, position: int, call: dict[str, Any]) -> list[ev.Event]:
    return [_start(position, choice, call)]


class _Phase(enum.Enum):
    #: chunks are arriving
    STREAMING = "streaming"
    #: `data: [DONE]` came: nothing follows it
    DONE = "done"
    #: a chunk carried an error: the stream says why it stops (a `[DONE]` may still follow)
    FAILED = "failed"


class _ChatStream:
    """Stream state: the tool calls begun, the choices seen and finished, and whether `[DONE]` or an error came.
    A chunk after `[DONE]` is still read, and logged at debug."""

    __slots__ = ("_choices", "_finished_choices", "_identity", "_tools", "state")

    def __init__(self) -> None:
        self._identity = Identity()
        self._tools: set[tuple[int, int | str]] = set()
        self._choices: set[int] = set()
        self._finished_choices: set[int] = set()  # choices that reported a finish reason
        self.state = _Phase.STREAMING

    def __repr__(self) -> str:
        return f"<_ChatStream {self.state.name} choices={sorted(self._choices)}>"

    def event(self, frame: SSEEvent) -> list[ev.Event]:
        data = frame.data.strip()
        if data == "[DONE]":
            self.state = _Phase.DONE
            return []
        if not data:
            return []
        if self.state is _Phase.DONE:
            unexpected(self, "a chunk", self.state)
        doc = json_object(data)
        out = _chunk_events(doc, self._identity, "delta", self._call)
        self._choices.update(_index(choice, n) for n, choice in enumerate(items(doc.get("choices"))))
        self._finished_choices.update(e.choice for e in out if isinstance(e, ev.Finish))
        if self.state is _Phase.STREAMING and any(isinstance(e, ev.ProviderError) for e in out):
            self.state = _Phase.FAILED
        return out

    def _call(self, choice: int, position: int, call: dict[str, Any]) -> list[ev.Event]:
        index, call_id = integer(call.get("index")), text(call.get("id"))
        key: int | str = index if index is not None else call_id or position
        if (choice, key) not in self._tools:  # first sight: id and name come with it
            self._tools.add((choice, key))
            return [_start(key, choice, call)]
        fragment = _arguments(_call_spec(call)[1])
        return [ev.ToolCallDelta(key, fragment, choice)] if fragment else []

    def end(self) -> list[ev.Event]:
        if self.state is not _Phase.STREAMING:
            return []
        if self._choices and self._choices <= self._finished_choices:
            return []  # every choice finished: a server that omits [DONE], not a cut stream
        return [ev.Truncated("the stream ended before data: [DONE]")]
