"""Kiro / Amazon Q Developer `GenerateAssistantResponse`: AWS JSON 1.0 `POST /` with `x-amz-target`
`AmazonCodeWhispererStreamingService.GenerateAssistantResponse` (Q CLI, Kiro CLI V2),
`KiroRuntimeService.GenerateAssistantResponse` (Kiro CLI V3 / KAS) or `AmazonQDeveloperStreamingService.SendMessage`
(Q CLI in SigV4 mode), and the restJson form `POST /generateAssistantResponse` (older Kiro IDE). Every shape
below was seen in the cc-core Kiro CLI 2.4.1 capture unless it says otherwise.

Requests. The body is `{conversationState: {conversationId, history, currentMessage: {userInputMessage}}, profileArn,
agentMode?, additionalModelRequestFields?}`. There is no system field: the client sends its context (agent prompt
after `Follow this instruction: `, resource files, a conversation summary) as the first history pair, a user message
answered by the fixed acknowledgement "I will fully incorporate this information ...". That pair becomes
`system_instructions`; it is not repeated in `input_messages`. The agent fingerprint uses only the agent prompt
(the text after `Follow this instruction: `, without Kiro's "The current model is X." line): the same pair also
carries a summary that Kiro rewrites when it checkpoints the context, and the model line changes with `/model`, and
neither makes a new agent. Tools come from `currentMessage.userInputMessageContext.tools`; tool results from every
user message's `toolResults` (`status: "error"` marks a failed tool); earlier calls from `toolUses` of the history's
assistant messages. The automatic checkpoint call (same conversationId, empty history, no tools) therefore carries
no tool names and no results, which is how the session tracker knows a side call.

Hints: `conversation_id` (conversationState.conversationId), `root_conversation_id` (V3, where it parents a
subagent; read at the top level and in conversationState), `origin` (`KIRO_CLI`, `AI_EDITOR`, `CLI`), `agent_mode`
(body `agentMode`, or the restJson header `x-amzn-kiro-agent-mode`), `effort` (additionalModelRequestFields
`output_config.effort` for Claude, `reasoning.effort` for GPT) and `model_vendor`: the company behind the requested
model id (`claude-*` anthropic, `gpt-*` openai, `deepseek-*`, `minimax-*`, `glm-*` z_ai, `qwen*` alibaba_cloud;
`auto` and unknown ids give none), for whoever wants it as an attribute. `max_tokens` in
additionalModelRequestFields (Claude's shape) is a request parameter.

Provider name: the service that answers is AWS's, not the model vendor's (the vendor is a hint, above). Kiro
clients are served by the Kiro runtime service (even on the legacy `q.{region}.amazonaws.com` host its errors say
`com.amazon.kiro.runtimeservice`): `aws.kiro`. The open-source Amazon Q Developer CLI (SigV4 `SendMessage`, or a
1.x `md/appVersion` in its User-Agent) is Amazon Q Developer: `aws.q`. Both are lowercase custom values in the
conventions' `vendor.service` style, like `aws.bedrock`.

Responses are always an event stream (`application/vnd.amazon.eventstream`). The parser is chosen by the route (the
target or path), never by the content type: AWS's own generated KRS server labels the streaming 200 as
`application/x-amz-json-1.0`. Frames: `initial-response` (its conversationId is empty: ignored),
`messageMetadataEvent` (utteranceId: the response id), `assistantResponseEvent` (text; modelId echoes the requested
id, `auto` included), `reasoningContentEvent`, `toolUseEvent` (one call's frames in a row: a start with id and name,
string fragments of the JSON input, then `stop: true`; a call may also arrive whole in one frame),
`metadataEvent` (tokenUsage, stopReason), `contextUsageEvent` and `meteringEvent` (credits) as `llm_gateway.kiro.*`
extras, `invalidStateEvent` and exception / error frames as provider errors. Any other event type is counted in
`kiro.unknown_events` and read no further.

Completeness: a stream is complete once its tail has begun: a `meteringEvent` (the last frame of every 2.4.1
capture, which has no metadataEvent) or a `metadataEvent` (the first of the runtime host's tail `metadataEvent,
contextUsageEvent, meteringEvent`), and every tool call got its `stop`. An error frame also ends a stream. Anything
else that ends is `Truncated`.

Finish reason: `metadataEvent.stopReason` exactly as sent (`END_TURN`, `TOOL_USE`, ...) when there is one; else,
for a complete stream, `tool_use` when the model called a tool and `end_turn` otherwise; a truncated stream gets
none (how it would have ended is unknown).

Usage: `metadataEvent.tokenUsage` when present, with input = uncachedInputTokens + cacheReadInputTokens +
cacheWriteInputTokens (the conventions count cached input as input; the name says the first leaves the cache out).
No capture so far has a tokenUsage, and an estimate from the context percentage would depend on a per-account
context window, so without one no Usage is emitted and `kiro.usage_reported` is False.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from typing import Any

import orjson

from llm_gateway.protocols import events as ev
from llm_gateway.protocols._json import body_hints, integer, items, json_object, number, obj, text
from llm_gateway.protocols._parsers import EventStreamParser
from llm_gateway.protocols._parts import blob
from llm_gateway.protocols._response import Identity, usage_from_uncached
from llm_gateway.protocols.base import HttpRequest, HttpResponseHead, ResponseParser
from llm_gateway.protocols.errors import error_fields
from llm_gateway.protocols.exchange import ChatRequest, RequestParams, fingerprints
from llm_gateway.protocols.framing.eventstream import Frame
from llm_gateway.protocols.transcript import Transcript

__all__ = ["ADAPTER"]

#: how the client's acknowledgement of its own context message starts (Q CLI conversation.rs, Kiro CLI captures)
_CONTEXT_ACK = "I will fully incorporate this information"
_INSTRUCTION = "Follow this instruction: "
_CONTEXT_ENTRY = "--- CONTEXT ENTRY BEGIN ---"
#: Kiro writes the selected model into the default agent prompt; a model switch is not a new agent
_MODEL_LINE = re.compile(r"^The current model is .*$", re.MULTILINE)

#: model id prefix -> the company behind the model (lowercase, the conventions' provider-name style)
_MODEL_VENDORS = (
    ("claude", "anthropic"),
    ("gpt", "openai"),
    ("deepseek", "deepseek"),
    ("minimax", "minimax"),
    ("glm", "z_ai"),
    ("qwen", "alibaba_cloud"),
)

#: tokenUsage fields in `usage_from_uncached` order: input without the cache, output, cache read, cache write
_USAGE_FIELDS = ("uncachedInputTokens", "outputTokens", "cacheReadInputTokens", "cacheWriteInputTokens")


# ---------------------------------------------------------------------------------------------------------
# Request


def _parse_request(request: HttpRequest, capture: bool) -> ChatRequest:
    try:
        doc = json_object(request.body)
    except ValueError as exc:  # still a call: GenerateAssistantResponse always streams
        return ChatRequest(stream=True, parse_issue=f"request: {type(exc).__name__}: {exc}"[:300])
    state = obj(doc.get("conversationState"))
    current = obj(obj(state.get("currentMessage")).get("userInputMessage"))
    history = list(items(state.get("history")))
    transcript = Transcript(capture)
    offered = obj(current.get("userInputMessageContext")).get("tools")
    transcript.tools = [spec for tool in items(offered) if (spec := _tool_definition(tool))]
    context = _context_message(history)
    if context is not None:
        transcript.instruction(context)
        history = history[2:]
    for entry in history:
        if user := obj(entry.get("userInputMessage")):
            _user_message(transcript, user)
        else:
            _assistant_message(transcript, obj(entry.get("assistantResponseMessage")))
    _user_message(transcript, current)
    model = text(current.get("modelId"))
    chat = transcript.fill(ChatRequest(model=model, stream=True, params=_params(doc)))
    prompt = _agent_prompt(context)
    chat.conversation_fingerprint, chat.agent_fingerprint = fingerprints(prompt, transcript.first_user,
                                                                         sorted(chat.tool_names))
    chat.hints = _hints(doc, state, current, request.headers)
    return chat


def _tool_definition(tool: dict[str, Any]) -> dict[str, Any] | None:
    spec = obj(tool.get("toolSpecification"))
    name = text(spec.get("name"))
    if not name:
        return None  # a tool without a name names nothing; never invent one
    definition: dict[str, Any] = {"type": "function", "name": name}
    if text(spec.get("description")) is not None:
        definition["description"] = spec["description"]
    schema = obj(spec.get("inputSchema")).get("json")
    if schema is not None:
        definition["parameters"] = schema
    return definition


def _context_message(history: list[dict[str, Any]]) -> str | None:
    """The text of the client's context message (agent prompt, resources, summary): the first history pair, when
    the assistant half is the client's fixed acknowledgement."""
    if len(history) < 2:
        return None
    user = text(obj(history[0].get("userInputMessage")).get("content"))
    ack = text(obj(history[1].get("assistantResponseMessage")).get("content")) or ""
    return user if user is not None and ack.startswith(_CONTEXT_ACK) else None


def _agent_prompt(context: str | None) -> str | None:
    """The agent's own prompt inside the context message, stable across checkpoints and model switches."""
    _, found, prompt = (context or "").partition(_INSTRUCTION)
    if not found:
        return None
    prompt = prompt.partition(_CONTEXT_ENTRY)[0]  # context entries may follow the prompt
    return _MODEL_LINE.sub("", prompt).strip()


def _user_message(transcript: Transcript, message: dict[str, Any]) -> None:
    """A user message: its tool results (as tool messages), then its text and images."""
    for result in items(obj(message.get("userInputMessageContext")).get("toolResults")):
        output = _result_text(result.get("content")) if transcript.capture else None
        transcript.tool_result(result.get("toolUseId"), output)
        transcript.results[-1].is_error = result.get("status") == "error"
    content = text(message.get("content")) or ""
    images = list(items(message.get("images")))
    if not content and not images:
        return  # a tool-results-only turn sends content ""
    transcript.message("user", content or [])
    if transcript.capture and images:
        transcript.messages[-1]["parts"].extend(_image_part(image) for image in images)


def _image_part(image: dict[str, Any]) -> dict[str, Any]:
    fmt = text(image.get("format"))
    return blob(text(obj(image.get("source")).get("bytes")), f"image/{fmt}" if fmt else None, "image")


def _result_text(content: Any) -> str:
    """A tool result's content blocks (`{text}` or `{json}`) as one text."""
    parts = []
    for block in items(content):
        if (body := text(block.get("text"))) is not None:
            parts.append(body)
        elif "json" in block:
            parts.append(orjson.dumps(block["json"]).decode())
    return "\n".join(parts)


def _assistant_message(transcript: Transcript, message: dict[str, Any]) -> None:
    reasoning = obj(message.get("reasoningContent"))
    thought = text(obj(reasoning.get("reasoningText")).get("text")) or text(reasoning.get("text"))
    if thought:
        transcript.reasoning(thought)
    if content := text(message.get("content")):
        transcript.message("assistant", content)
    for use in items(message.get("toolUses")):
        transcript.tool_call(use.get("toolUseId"), use.get("name"), use.get("input"))


def _params(doc: dict[str, Any]) -> RequestParams:
    fields = obj(doc.get("additionalModelRequestFields"))
    return RequestParams(max_tokens=integer(fields.get("max_tokens")))


def _hints(
    doc: dict[str, Any], state: dict[str, Any], current: dict[str, Any], headers: Mapping[str, str]
) -> dict[str, str]:
    hints = {
        **body_hints(state, {"conversationId": "conversation_id", "rootConversationId": "root_conversation_id"}),
        **body_hints(doc, {"rootConversationId": "root_conversation_id", "agentMode": "agent_mode"}),
        **body_hints(current, {"origin": "origin"}),
    }
    if "agent_mode" not in hints and headers.get("x-amzn-kiro-agent-mode"):  # restJson sends it as a header
        hints["agent_mode"] = headers["x-amzn-kiro-agent-mode"]
    fields = obj(doc.get("additionalModelRequestFields"))
    effort = text(obj(fields.get("output_config")).get("effort")) or text(obj(fields.get("reasoning")).get("effort"))
    if effort:
        hints["effort"] = effort
    vendor = model_vendor(text(current.get("modelId")))
    if vendor:
        hints["model_vendor"] = vendor
    return hints


def model_vendor(model_id: str | None) -> str | None:
    """The company behind a Kiro model id, or None (`auto`, unknown ids)."""
    low = (model_id or "").lower()
    return next((vendor for prefix, vendor in _MODEL_VENDORS if low.startswith(prefix)), None)


def _provider_name(request: HttpRequest) -> str:
    target = request.headers.get("x-amz-target", "")
    agent = request.headers.get("user-agent", "").lower()
    if target.startswith("AmazonQDeveloperStreamingService.") or (
        "md/appversion-1." in agent and "kiro" not in agent
    ):
        return "aws.q"
    return "aws.kiro"


# ---------------------------------------------------------------------------------------------------------
# Response


class _Phase(enum.Enum):
    #: the answer is streaming (text, reasoning, tool calls)
    STREAMING = "streaming"
    #: the tail began (`metadataEvent` or `meteringEvent`): the answer is whole even if the body is cut now
    TAIL = "tail"
    #: an exception frame or `invalidStateEvent` came: it says how the response ended
    ERRORED = "errored"


class _StreamState:
    """What one response stream has said so far, frame by frame, and what its end means."""

    __slots__ = ("_identity", "_stop_reason", "_tools", "_unknown", "_usage_reported", "state")

    def __init__(self) -> None:
        self._identity = Identity()
        self._tools: dict[str, bool] = {}  # call id -> its `stop` arrived
        self._stop_reason: str | None = None
        self._usage_reported = False  # a metadataEvent carried token counts
        self._unknown = 0
        self.state = _Phase.STREAMING

    def __repr__(self) -> str:
        return f"<kiro._StreamState {self.state.name} tools={len(self._tools)}>"

    def frame(self, frame: Frame) -> list[ev.Event]:
        if frame.message_type in ("exception", "error"):
            self.state = _Phase.ERRORED
            return _stream_error(frame)
        kind = frame.event_type or ""
        if kind == "initial-response":
            return []  # its conversationId is empty on the wire; the request names the conversation
        if kind not in _READERS:
            self._unknown += 1
            return [ev.Extra("kiro.unknown_events", self._unknown)]
        return _READERS[kind](self, json_object(frame.payload))

    def _text(self, body: dict[str, Any]) -> list[ev.Event]:
        out = self._identity.update(None, body.get("modelId"))
        content = text(body.get("content"))
        return [*out, ev.TextDelta(content)] if content else out  # `content: ""` frames occur

    def _response_id(self, body: dict[str, Any]) -> list[ev.Event]:
        return self._identity.update(body.get("utteranceId"), None)

    def _tool_use(self, body: dict[str, Any]) -> list[ev.Event]:
        call_id = text(body.get("toolUseId"))
        if not call_id:
            raise ValueError("toolUseEvent without a toolUseId")
        out: list[ev.Event] = []
        if call_id not in self._tools:
            self._tools[call_id] = False
            out.append(ev.ToolCallStart(call_id, call_id, text(body.get("name")) or ""))
        if fragment := text(body.get("input")):
            out.append(ev.ToolCallDelta(call_id, fragment))
        if body.get("stop") is True:
            self._tools[call_id] = True
        return out

    def _metadata(self, body: dict[str, Any]) -> list[ev.Event]:
        self._tail_began()
        counts = obj(body.get("tokenUsage"))
        usage = usage_from_uncached(*(integer(counts.get(name)) for name in _USAGE_FIELDS))
        out: list[ev.Event] = []
        if usage is not None:
            self._usage_reported = True
            out += [usage, ev.Extra("kiro.usage_reported", True)]
        out += _percentage(counts)
        if reason := text(body.get("stopReason")):
            self._stop_reason = reason
            out.append(ev.Finish(reason))
        return out

    def _tail_began(self) -> None:
        if self.state is _Phase.STREAMING:
            self.state = _Phase.TAIL

    def _metering(self, body: dict[str, Any]) -> list[ev.Event]:
        self._tail_began()
        credits, unit = number(body.get("usage")), text(body.get("unit"))
        return [*([ev.Extra("kiro.credits", credits)] if credits is not None else []),
                *([ev.Extra("kiro.credits_unit", unit)] if unit else [])]

    def _context_usage(self, body: dict[str, Any]) -> list[ev.Event]:
        return _percentage(body)

    def _reasoning(self, body: dict[str, Any]) -> list[ev.Event]:
        if thought := text(body.get("text")):
            return [ev.ReasoningDelta(thought)]
        if body.get("redactedContent"):
            return [ev.ReasoningDelta("")]
        return []  # a signature alone

    def _invalid_state(self, body: dict[str, Any]) -> list[ev.Event]:
        self.state = _Phase.ERRORED
        return [ev.ProviderError(text(body.get("reason")) or "invalidStateEvent", text(body.get("message")))]

    def end(self, cut_in_frame: bool) -> list[ev.Event]:
        """The body ended: say whether usage was reported, and how the response finished (or that it was cut)."""
        out: list[ev.Event] = [] if self._usage_reported else [ev.Extra("kiro.usage_reported", False)]
        if self.state is _Phase.ERRORED:
            return out  # the error says how it ended
        open_calls = [call_id for call_id, stopped in self._tools.items() if not stopped]
        in_tail = self.state is _Phase.TAIL  # a body cut after the tail began still carried the whole answer
        if not in_tail or open_calls:
            where = " inside a frame" if cut_in_frame else ""
            problems = [] if in_tail else [f"the event stream ended{where} before its tail"]
            problems += [f"tool call {call_id} got no stop" for call_id in open_calls[:1]]
            return [*out, ev.Truncated("; ".join(problems))]
        if self._stop_reason is None:
            out.append(ev.Finish("tool_use" if self._tools else "end_turn"))
        return out


_READERS = {
    "assistantResponseEvent": _StreamState._text,
    "reasoningContentEvent": _StreamState._reasoning,
    "toolUseEvent": _StreamState._tool_use,
    "messageMetadataEvent": _StreamState._response_id,
    "metadataEvent": _StreamState._metadata,
    "contextUsageEvent": _StreamState._context_usage,
    "meteringEvent": _StreamState._metering,
    "invalidStateEvent": _StreamState._invalid_state,
}


def _percentage(body: dict[str, Any]) -> list[ev.Event]:
    value = number(body.get("contextUsagePercentage"))
    return [ev.Extra("kiro.context_usage_percentage", value)] if value is not None else []


def _stream_error(frame: Frame) -> list[ev.Event]:
    """An exception frame: the type from the payload's `__type` (as the HTTP error bodies name it), else the
    frame's `:exception-type` / `:error-code`; Kiro's `reason` beside it."""
    etype, message = error_fields(frame.payload) if frame.payload else (None, None)
    etype = etype or frame.exception_type or text(frame.headers.get(":error-code")) or "exception"
    out: list[ev.Event] = [ev.ProviderError(etype, message or text(frame.headers.get(":error-message")))]
    try:
        reason = text(obj(orjson.loads(frame.payload)).get("reason"))
    except orjson.JSONDecodeError:
        reason = None
    return [*out, ev.Extra("kiro.error_reason", reason)] if reason else out


# ---------------------------------------------------------------------------------------------------------
# Adapter


class _KiroAdapter:
    def parse_request(self, request: HttpRequest, capture: bool) -> ChatRequest:
        return _parse_request(request, capture)

    def response_parser(self, request: ChatRequest, head: HttpResponseHead) -> ResponseParser:
        # Routing sends only GenerateAssistantResponse / SendMessage here, and those always stream.
        return EventStreamParser(_StreamState())

    def provider_name(self, request: HttpRequest) -> str:
        return _provider_name(request)


ADAPTER = _KiroAdapter()
