"""AWS Bedrock runtime: `POST /model/{modelId}/converse`, `/converse-stream`, `/invoke` and
`/invoke-with-response-stream` (botocore `bedrock-runtime` service model, rest-json + event-stream).

Requests: Converse bodies (and Nova's Converse-like `messages-v1` InvokeModel bodies) are rewritten into the
Anthropic Messages shape and read by `anthropic.parse_messages_body`, so both APIs are read by one parser;
Anthropic InvokeModel bodies go there as they are; prompt-style bodies (Llama, Mistral, Titan) are read as a
single user prompt. The model is the modelId from the path, URL-decoded and kept as sent (an id, an inference
profile id or an ARN).

Responses describe themselves, so the parser is chosen by content, not by route: an event stream carries
Converse events (`messageStart` ... `metadata`) or InvokeModel `chunk` events whose payload is
`{"bytes": base64(native JSON)}`; a JSON body is a Converse response, an Anthropic message, or another model's
native output (read minimally: text, finish reason, usage). A stream is complete at Converse's `metadata`,
Anthropic's `message_stop`, a chunk with `amazon-bedrock-invocationMetrics` (Bedrock adds it to the last
chunk), or an exception frame; otherwise it was cut.

Token usage: Converse's `inputTokens` leaves out the prompt cache; `cacheReadInputTokens` and
`cacheWriteInputTokens` are reported beside it (AWS prompt-caching guide; the same reading in Vercel ai-sdk's
`convertBedrockUsage` and opencode's Bedrock mapping). The conventions count cached input as input, so
input = inputTokens + cacheReadInputTokens + cacheWriteInputTokens. Invocation metrics (`inputTokenCount`,
`cacheRead/WriteInputTokenCount`, also sent as `X-Amzn-Bedrock-*-Token-Count` headers on InvokeModel) split
the same way. They serve only when the body itself reported no usage.

Response id: Converse has no completion id. `x-amzn-RequestId` names the HTTP request, not the completion, so
`gen_ai.response.id` stays unset (Anthropic InvokeModel responses do carry their `msg_bdrk_...` id). Converse
names no response model either; it is left unset rather than copied from the request.
"""

from __future__ import annotations

import base64
import contextlib
import enum
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote

import orjson

from llm_gateway.protocols import events as ev
from llm_gateway.protocols._json import integer, items, json_object, obj, text
from llm_gateway.protocols._parsers import EventStreamParser, JsonBodyParser
from llm_gateway.protocols._response import is_streamed, usage_from_uncached
from llm_gateway.protocols.anthropic import AnthropicStreamState, message_events, parse_messages_body
from llm_gateway.protocols.base import HttpRequest, HttpResponseHead, ResponseParser
from llm_gateway.protocols.errors import error_fields
from llm_gateway.protocols.exchange import ChatRequest
from llm_gateway.protocols.framing.eventstream import Frame

__all__ = ["ADAPTER"]

_ROUTE = re.compile(r"/model/([^/]+)/(converse-stream|converse|invoke-with-response-stream|invoke)/?$")
_METRICS = "amazon-bedrock-invocationMetrics"
_CONVERSE_EVENTS = frozenset(
    {"messageStart", "contentBlockStart", "contentBlockDelta", "contentBlockStop", "messageStop", "metadata"}
)
_MEDIA = ("image", "document", "video", "audio")
#: Bedrock's usage counts, in `usage_from_uncached` order: Converse `<name>Tokens`, invocation metrics
#: `<name>TokenCount`
_METRIC_NAMES = ("input", "output", "cacheReadInput", "cacheWriteInput")
#: requestMetadata keys (free-form caller tags) that name a session, conversation or agent
_HINT_KEY = re.compile(r"session|conversation|thread|user|agent", re.IGNORECASE)

# Sampling parameters under the names the model families use, at the top level of the body or in a config
# object (Converse / Nova `inferenceConfig`, Titan `textGenerationConfig`, Converse's pass-through fields).
_PARAM_SCOPES = ("inferenceConfig", "textGenerationConfig", "additionalModelRequestFields")
_PARAM_NAMES = {
    "max_tokens": ("maxTokens", "max_tokens", "max_new_tokens", "max_gen_len", "maxTokenCount"),
    "temperature": ("temperature",),
    "top_p": ("topP", "top_p"),
    "top_k": ("topK", "top_k"),
    "stop_sequences": ("stopSequences", "stop_sequences", "stop"),
}

# Other model families' native output, read minimally: where text and a finish reason may sit.
_NATIVE_LISTS = ("outputs", "results", "generations", "choices")
_NATIVE_TEXT = ("generation", "outputText", "completion", "text", "content")
_NATIVE_FINISH = ("stop_reason", "stopReason", "completionReason", "finish_reason")


# ---------------------------------------------------------------------------------------------------------
# Request


def _route(path: str) -> tuple[str | None, str]:
    """(model id, operation) from the path; (None, "") when it is not a Bedrock runtime path."""
    match = _ROUTE.search(path.partition("?")[0])
    return (unquote(match.group(1)), match.group(2)) if match else (None, "")


def _parse_request(request: HttpRequest, capture: bool) -> ChatRequest:
    model, operation = _route(request.path)
    stream = operation.endswith("stream")
    try:
        doc = json_object(request.body)
        if operation.startswith("converse"):
            chat = parse_messages_body(_messages_doc(doc), capture)
        elif "anthropic_version" in doc or "anthropic." in (model or ""):
            chat = parse_messages_body(doc, capture)
        elif isinstance(doc.get("messages"), list):  # Nova messages-v1, or chat-style bodies
            chat = parse_messages_body(_messages_doc(doc), capture)
        else:
            chat = parse_messages_body(_prompt_doc(doc), capture)
            chat.operation = "text_completion"
    except Exception as exc:  # still a call: the path names the model and whether it streams
        problem = f"request: {type(exc).__name__}: {exc}"[:300]
        return ChatRequest(model=model, stream=stream, parse_issue=problem)
    chat.model = model
    chat.stream = stream
    chat.hints = {**chat.hints, **_hints(doc, request.headers)}
    return chat


def _messages_doc(doc: dict[str, Any]) -> dict[str, Any]:
    """A Converse request (or a Converse-like InvokeModel body) in the Anthropic Messages shape."""
    tools = [obj(tool.get("toolSpec")) for tool in items(obj(doc.get("toolConfig")).get("tools"))]
    text_format = obj(obj(doc.get("outputConfig")).get("textFormat"))
    return {
        **_params(doc),
        "system": [{"type": "text", "text": block.get("text")} for block in items(doc.get("system"))],
        "messages": [_message(message) for message in items(doc.get("messages"))],
        "tools": [
            {"name": spec["name"], "description": spec.get("description"),
             "input_schema": obj(spec.get("inputSchema")).get("json")}
            for spec in tools
            if "name" in spec
        ],
        "output_config": {"format": {"type": text_format.get("type")}},  # json_schema: structured output
    }


def _prompt_doc(doc: dict[str, Any]) -> dict[str, Any]:
    """A prompt-style body (Llama `prompt`, Titan `inputText`, ...) as one user message."""
    prompt = text(doc.get("prompt")) or text(doc.get("inputText")) or ""
    return {**_params(doc), "messages": [{"role": "user", "content": prompt}]}


def _params(doc: dict[str, Any]) -> dict[str, Any]:
    scopes = [doc, *(obj(doc.get(scope)) for scope in _PARAM_SCOPES)]
    found = {}
    for name, keys in _PARAM_NAMES.items():
        value = next((scope[key] for scope in scopes for key in keys if scope.get(key) is not None), None)
        if value is not None:
            found[name] = [value] if name == "stop_sequences" and isinstance(value, str) else value
    return found


def _message(message: dict[str, Any]) -> dict[str, Any]:
    content = message.get("content")
    if not isinstance(content, str):
        content = [block for raw in items(content) if (block := _block(raw)) is not None]
    return {"role": message.get("role"), "content": content}


def _block(block: dict[str, Any]) -> dict[str, Any] | None:
    """One Converse content block as the Anthropic block it corresponds to."""
    if (body := text(block.get("text"))) is not None:
        return {"type": "text", "text": body}
    if "json" in block:  # a tool result's JSON part: kept as its text
        return {"type": "text", "text": orjson.dumps(block["json"]).decode()}
    if use := obj(block.get("toolUse")):
        return {"type": "tool_use", "id": use.get("toolUseId"), "name": use.get("name"),
                "input": use.get("input")}
    if result := obj(block.get("toolResult")):
        content = [part for raw in items(result.get("content")) if (part := _block(raw)) is not None]
        return {"type": "tool_result", "tool_use_id": result.get("toolUseId"), "content": content,
                "is_error": result.get("status") == "error"}
    if reasoning := obj(block.get("reasoningContent")):
        thought = obj(reasoning.get("reasoningText"))
        if not thought:  # `redactedContent`: encrypted, nothing readable
            return {"type": "redacted_thinking"}
        return {"type": "thinking", "thinking": thought.get("text")}
    for kind in _MEDIA:
        if media := obj(block.get(kind)):
            return {"type": kind, "source": _source(kind, media)}
    if "cachePoint" in block:  # a cache marker, not content
        return None
    return {"type": next(iter(block), "unknown")}  # guardContent, citations, ...: named only


def _source(kind: str, media: dict[str, Any]) -> dict[str, Any]:
    """Where media comes from: an S3 URI, or the bytes as the body carried them (base64 in JSON)."""
    source = obj(media.get("source"))
    if uri := text(obj(source.get("s3Location")).get("uri")):
        return {"type": "url", "url": uri}
    fmt = text(media.get("format"))
    return {"type": "base64", "media_type": f"{kind}/{fmt}" if fmt and kind != "document" else None,
            "data": text(source.get("bytes"))}


def _hints(doc: dict[str, Any], headers: Mapping[str, str]) -> dict[str, str]:
    """Session-like ids from `requestMetadata` (Converse body) or `X-Amzn-Bedrock-Request-Metadata`
    (InvokeModel header, a JSON map)."""
    tags = obj(doc.get("requestMetadata"))
    header = headers.get("x-amzn-bedrock-request-metadata")
    if header:
        with contextlib.suppress(orjson.JSONDecodeError):
            tags = {**tags, **obj(orjson.loads(header))}
    return {key: value for key, value in tags.items() if _HINT_KEY.search(key) and text(value)}


# ---------------------------------------------------------------------------------------------------------
# Response events


def _converse_usage(usage: Any) -> list[ev.Event]:
    usage = obj(usage)
    found = usage_from_uncached(*(integer(usage.get(f"{name}Tokens")) for name in _METRIC_NAMES))
    return [found] if found else []


def _metrics_usage(metrics: Any) -> list[ev.Event]:
    metrics = obj(metrics)
    found = usage_from_uncached(*(integer(metrics.get(f"{name}TokenCount")) for name in _METRIC_NAMES))
    return [found] if found else []


def _header_usage(headers: Mapping[str, str]) -> list[ev.Event]:
    def count(name: str) -> int | None:
        value = headers.get(f"x-amzn-bedrock-{name}-token-count", "")
        return int(value) if value.isdigit() else None

    found = usage_from_uncached(count("input"), count("output"), count("cache-read-input"), count("cache-write-input"))
    return [found] if found else []


def _index(body: dict[str, Any]) -> int:
    index = body.get("contentBlockIndex")
    return index if isinstance(index, int) else -1


def _converse_event(name: str, body: dict[str, Any]) -> list[ev.Event]:
    """One ConverseStream event (also the shape of Nova's InvokeModel stream chunks)."""
    match name:
        case "contentBlockStart":
            use = obj(obj(body.get("start")).get("toolUse"))
            if not use:
                return []
            return [ev.ToolCallStart(_index(body), text(use.get("toolUseId")), text(use.get("name")) or "")]
        case "contentBlockDelta":
            return _delta_events(_index(body), obj(body.get("delta")))
        case "messageStop":
            reason = text(body.get("stopReason"))
            return [ev.Finish(reason)] if reason else []
        case "metadata":
            return _converse_usage(body.get("usage"))
    return []  # messageStart (the role), contentBlockStop, and event types added later


def _delta_events(index: int, delta: dict[str, Any]) -> list[ev.Event]:
    if body := text(delta.get("text")):
        return [ev.TextDelta(body)]
    if fragment := text(obj(delta.get("toolUse")).get("input")):
        return [ev.ToolCallDelta(index, fragment)]
    reasoning = obj(delta.get("reasoningContent"))
    if thought := text(reasoning.get("text")):
        return [ev.ReasoningDelta(thought)]
    if "redactedContent" in reasoning:
        return [ev.ReasoningDelta("")]
    return []  # empty text, reasoning signatures, citations


def _converse_response(doc: dict[str, Any]) -> list[ev.Event]:
    """A whole Converse response (also Nova's InvokeModel response)."""
    out: list[ev.Event] = []
    content = obj(obj(doc.get("output")).get("message")).get("content")
    for index, block in enumerate(items(content)):
        use = obj(block.get("toolUse"))
        thought = obj(obj(block.get("reasoningContent")).get("reasoningText"))
        if body := text(block.get("text")):
            out.append(ev.TextDelta(body))
        elif use:
            arguments = orjson.dumps(use.get("input", {})).decode()
            name = text(use.get("name")) or ""
            out.append(ev.ToolCallStart(index, text(use.get("toolUseId")), name, arguments))
        elif thought_text := text(thought.get("text")):
            out.append(ev.ReasoningDelta(thought_text))
    if reason := text(doc.get("stopReason")):
        out.append(ev.Finish(reason))
    return out + _converse_usage(doc.get("usage"))


def _native_events(doc: dict[str, Any]) -> list[ev.Event]:
    """Another model family's output or stream chunk: its text and finish reason, under the usual keys."""
    places = [doc]
    for key in _NATIVE_LISTS:
        for entry in items(doc.get(key)):
            places += [entry, obj(entry.get("message")), obj(entry.get("delta"))]
    body = next((v for place in places for key in _NATIVE_TEXT if (v := text(place.get(key)))), None)
    reason = next((v for place in places for key in _NATIVE_FINISH if (v := text(place.get(key)))), None)
    return [*([ev.TextDelta(body)] if body else []), *([ev.Finish(reason)] if reason else [])]


def _document_events(doc: dict[str, Any], headers: Mapping[str, str]) -> list[ev.Event]:
    """A non-streamed body: Converse, an Anthropic message, or another model's native JSON."""
    if "output" in doc or "stopReason" in doc:
        out = _converse_response(doc)
    elif doc.get("type") in ("message", "error"):
        out = message_events(doc)
    else:
        out = _native_events(doc)
    if not any(isinstance(event, ev.Usage) for event in out):
        out += _header_usage(headers)
    return out


class _Phase(enum.Enum):
    #: frames are arriving; the final event has not come
    STREAMING = "streaming"
    #: the final event came (Converse `metadata`, the Anthropic stream's end, invocation metrics, an exception)
    DONE = "done"


class _StreamState:
    """The events of one event-stream body, frame by frame, and `Truncated` at the end of a body that ended
    before its final event."""

    __slots__ = ("_anthropic", "_usage_seen", "state")

    def __init__(self) -> None:
        self._anthropic = AnthropicStreamState()
        self._usage_seen = False  # a frame reported usage: invocation metrics are not needed
        self.state = _Phase.STREAMING

    def __repr__(self) -> str:
        return f"<bedrock._StreamState {self.state.name} {self._anthropic!r}>"

    def frame(self, frame: Frame) -> list[ev.Event]:
        if frame.message_type != "event":  # `exception` (or `error`): the stream ends with it
            self.state = _Phase.DONE
            return [_stream_error(frame)]
        body = json_object(frame.payload) if frame.payload else {}
        if frame.event_type == "chunk":
            out = self._chunk(json_object(base64.b64decode(text(body.get("bytes")) or "", validate=True)))
        else:
            if frame.event_type == "metadata":
                self.state = _Phase.DONE
            out = _converse_event(frame.event_type or "", body)
        self._usage_seen = self._usage_seen or any(isinstance(event, ev.Usage) for event in out)
        return out

    def _chunk(self, doc: dict[str, Any]) -> list[ev.Event]:
        """An InvokeModel chunk: an Anthropic event, Converse-shaped events (Nova), or another native JSON."""
        if isinstance(doc.get("type"), str):
            out = self._anthropic.events(doc)
            if self._anthropic.ended:
                self.state = _Phase.DONE
        elif names := [name for name in doc if name in _CONVERSE_EVENTS]:
            out = [event for name in names for event in _converse_event(name, obj(doc[name]))]
        else:
            out = _native_events(doc)
        if _METRICS in doc:
            self.state = _Phase.DONE
            has_usage = self._usage_seen or any(isinstance(event, ev.Usage) for event in out)
            out += [] if has_usage else _metrics_usage(doc[_METRICS])
        return out

    def end(self, cut_in_frame: bool) -> list[ev.Event]:
        if self.state is _Phase.DONE:
            return []
        where = " inside a frame" if cut_in_frame else ""
        return [ev.Truncated(f"the event stream ended{where} before its final event")]


def _stream_error(frame: Frame) -> ev.ProviderError:
    etype = frame.exception_type or text(frame.headers.get(":error-code")) or "exception"
    message = error_fields(frame.payload)[1] if frame.payload else None
    return ev.ProviderError(etype, message or text(frame.headers.get(":error-message")))


# ---------------------------------------------------------------------------------------------------------
# Adapter


class _BedrockAdapter:
    def parse_request(self, request: HttpRequest, capture: bool) -> ChatRequest:
        return _parse_request(request, capture)

    def response_parser(self, request: ChatRequest, head: HttpResponseHead) -> ResponseParser:
        if is_streamed(request, head, "vnd.amazon.eventstream"):
            return EventStreamParser(_StreamState())
        headers = head.headers
        return JsonBodyParser(lambda doc: _document_events(doc, headers))

    def provider_name(self, request: HttpRequest) -> str:
        return "aws.bedrock"


ADAPTER = _BedrockAdapter()
