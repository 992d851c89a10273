"""The normalized model call: what was asked (`ChatRequest`), what came back (`ChatRecord`), and the builder
that folds timed response events into a record. Plain data, no I/O.

Content (`system_instructions`, `input_messages`, `output_messages`, `tool_definitions`, tool arguments and
results) is kept only when the parser was asked to capture it; the shapes are the GenAI conventions' JSON
shapes: messages `{"role", "parts": [...]}` with parts `{"type": "text", "content"}`,
`{"type": "tool_call", "id", "name", "arguments"}`, `{"type": "tool_call_response", "id", "response"}`,
`{"type": "reasoning", "content"}`. An output message's `finish_reason` is in the conventions' words
(`finish.py`); the record's `finish_reasons` keep the provider's.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from llm_gateway.protocols import events as ev
from llm_gateway.protocols.finish import message_finish_reason


@dataclass(slots=True)
class RequestParams:
    """Sampling parameters the request set (None: not present in the request)."""

    temperature: float | None = None
    top_p: float | None = None
    top_k: float | None = None
    max_tokens: int | None = None
    stop_sequences: list[str] | None = None
    seed: int | None = None
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    choice_count: int | None = None


@dataclass(slots=True)
class ToolResult:
    """A tool's result carried in a request (answering a call made in an earlier response)."""

    call_id: str | None
    name: str | None = None
    is_error: bool = False
    content: Any = None  # only with content capture


@dataclass(slots=True)
class ToolCall:
    """A tool call the model made in a response, arguments joined."""

    call_id: str | None
    name: str
    arguments: str = ""
    type: str = "function"
    choice: int = 0


@dataclass(slots=True)
class ChatRequest:
    """What a model call asked for, parsed from the request alone."""

    operation: str = "chat"  # chat | generate_content | text_completion
    model: str | None = None
    stream: bool = False
    params: RequestParams = field(default_factory=RequestParams)
    output_type: str | None = None  # text | json | image | speech, when requested
    tool_names: list[str] = field(default_factory=list)  # tools offered (names only, always kept)
    #: offered tools' descriptions by name (always kept, each cut to MAX_TOOL_DESCRIPTION characters): the
    #: execute_tool spans' gen_ai.tool.description
    tool_descriptions: dict[str, str] = field(default_factory=dict)
    tool_results: list[ToolResult] = field(default_factory=list)
    #: the newest message answers tool calls (the agent's loop goes on); False: it brings a new prompt
    continues_tool_loop: bool = False
    #: how many user prompts the conversation holds up to the newest one (1 for the first): the same for every
    #: request of one agent turn, across gateway restarts. None when the request does not carry the whole
    #: conversation (a `previous_response_id` chain)
    prompt_ordinal: int | None = None
    #: tool calls the history says the model made earlier, by call id (for pairing results with names)
    history_tool_calls: dict[str, str] = field(default_factory=dict)
    #: ids the body carries that name the conversation, session or agent, e.g. {"conversation_id": ...},
    #: {"user_id": ...} (Anthropic metadata.user_id), {"prompt_cache_key": ...}, {"session_id": ...}
    hints: dict[str, str] = field(default_factory=dict)
    #: stable digests for grouping calls when the client sends no id (see `fingerprint`): the conversation's
    #: system prompt + first user message, and the agent's system prompt + tool names. Never exported.
    conversation_fingerprint: str | None = None
    agent_fingerprint: str | None = None
    # Opt-in content, in the conventions' JSON shapes:
    system_instructions: list[dict[str, Any]] | None = None
    input_messages: list[dict[str, Any]] | None = None
    tool_definitions: list[dict[str, Any]] | None = None
    #: the request body could not be read; the call is still relayed and traced with what is known
    parse_issue: str | None = None


@dataclass(slots=True)
class ChatRecord:
    """A finished model call, ready for a span."""

    request: ChatRequest
    status: int | None = None
    response_id: str | None = None
    response_model: str | None = None
    finish_reasons: list[str] = field(default_factory=list)
    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_read: int | None = None
    cache_write: int | None = None
    reasoning_tokens: int | None = None
    tool_calls: list[ToolCall] = field(default_factory=list)
    output_messages: list[dict[str, Any]] | None = None  # only with content capture
    first_chunk_ns: int | None = None  # first byte of the response body
    first_token_ns: int | None = None  # first text, reasoning or tool call event
    error_type: str | None = None
    error_message: str | None = None
    extras: dict[str, str | int | float | bool] = field(default_factory=dict)
    parse_issues: list[str] = field(default_factory=list)
    event_count: int = 0


class ExchangeBuilder:
    """Folds response events, each with the time its bytes arrived, into a `ChatRecord`."""

    __slots__ = ("_calls", "_capture", "_finishes", "_reasoning", "_record", "_text")

    def __init__(self, request: ChatRequest, status: int | None, *, capture: bool = False) -> None:
        self._record = ChatRecord(request=request, status=status)
        self._capture = capture
        self._calls: dict[tuple[int, int | str], ToolCall] = {}
        self._text: dict[int, list[str]] = {}
        self._reasoning: dict[int, list[str]] = {}
        self._finishes: dict[int, str] = {}

    def add(self, t_ns: int, events: list[ev.Event]) -> None:
        record = self._record
        for event in events:
            record.event_count += 1
            match event:
                case ev.TextDelta(text=text, choice=choice):
                    self._first_token(t_ns)
                    if self._capture:
                        self._text.setdefault(choice, []).append(text)
                case ev.ReasoningDelta(text=text, choice=choice):
                    self._first_token(t_ns)
                    if self._capture:
                        self._reasoning.setdefault(choice, []).append(text)
                case ev.ToolCallStart():
                    self._first_token(t_ns)
                    call = ToolCall(event.call_id, event.name, event.arguments or "", event.type, event.choice)
                    self._calls[(event.choice, event.key)] = call
                    record.tool_calls.append(call)
                case ev.ToolCallDelta(key=key, arguments=fragment, choice=choice):
                    call = self._calls.get((choice, key))
                    if call is not None:
                        call.arguments += fragment
                case ev.Usage():
                    self._usage(event)
                case ev.Finish(reason=reason, choice=choice):
                    self._finishes[choice] = reason
                case ev.ResponseStart(response_id=rid, model=model):
                    record.response_id = rid or record.response_id
                    record.response_model = model or record.response_model
                case ev.ProviderError(type=etype, message=message):
                    record.error_type = record.error_type or etype
                    record.error_message = record.error_message or message
                case ev.Truncated(detail=detail):
                    record.error_type = record.error_type or "stream_truncated"
                    record.error_message = record.error_message or detail or None
                case ev.Extra(key=key, value=value):
                    record.extras[key] = value
                case ev.ParseIssue(detail=detail):
                    if len(record.parse_issues) < 8:
                        record.parse_issues.append(detail)

    def _first_token(self, t_ns: int) -> None:
        if self._record.first_token_ns is None:
            self._record.first_token_ns = t_ns

    def _usage(self, usage: ev.Usage) -> None:
        record = self._record
        for name, value in (
            ("input_tokens", usage.input_tokens),
            ("output_tokens", usage.output_tokens),
            ("cache_read", usage.cache_read),
            ("cache_write", usage.cache_write),
            ("reasoning_tokens", usage.reasoning),
        ):
            if value is not None:
                setattr(record, name, value)

    def finish(self, first_chunk_ns: int | None = None) -> ChatRecord:
        record = self._record
        record.first_chunk_ns = first_chunk_ns
        record.finish_reasons = [self._finishes[c] for c in sorted(self._finishes)]
        if self._capture:
            record.output_messages = self._output_messages()
        return record

    def _output_messages(self) -> list[dict[str, Any]]:
        choices = sorted(set(self._text) | set(self._reasoning) | set(self._finishes)
                         | {c.choice for c in self._record.tool_calls})
        messages = []
        for choice in choices:
            parts: list[dict[str, Any]] = []
            if self._reasoning.get(choice):
                parts.append({"type": "reasoning", "content": "".join(self._reasoning[choice])})
            if self._text.get(choice):
                parts.append({"type": "text", "content": "".join(self._text[choice])})
            for call in self._record.tool_calls:
                if call.choice == choice:
                    parts.append({"type": "tool_call", "id": call.call_id, "name": call.name,
                                  "arguments": json_or_text(call.arguments)})
            reason = message_finish_reason(self._finishes.get(choice), failed=self._record.error_type is not None,
                                           tool_calls=any(part["type"] == "tool_call" for part in parts))
            messages.append({"role": "assistant", "parts": parts, "finish_reason": reason})
        return messages


#: characters of a tool's description kept (agents' tool descriptions run to pages)
MAX_TOOL_DESCRIPTION = 1024


def tool_descriptions(tools: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """Name -> description of the offered tools (`{"name", "description", ...}` dicts) that have both, each cut to
    `MAX_TOOL_DESCRIPTION` characters."""
    return {name: description[:MAX_TOOL_DESCRIPTION] for tool in tools
            if isinstance(name := tool.get("name"), str) and name
            and isinstance(description := tool.get("description"), str) and description}


def fingerprint(*parts: object) -> str:
    """A short stable digest of the given parts (strings, lists of strings, None), for grouping only."""
    digest = hashlib.blake2b(digest_size=12)
    for part in parts:
        _add(digest, part)
    return digest.hexdigest()


def fingerprints(first: object, conversation: object, agent: object) -> tuple[str, str]:
    """`fingerprint(first, conversation)` and `fingerprint(first, agent)`, with `first` (a system prompt, often
    tens of KB that every request repeats) read once."""
    common = hashlib.blake2b(digest_size=12)
    _add(common, first)
    both = common.copy()
    _add(common, conversation)
    _add(both, agent)
    return common.hexdigest(), both.hexdigest()


def _add(digest: Any, part: object) -> None:
    text = "\x1f".join(map(str, part)) if isinstance(part, list | tuple) else str(part or "")
    digest.update(text.encode("utf-8", "replace"))
    digest.update(b"\x1e")


def json_or_text(arguments: str) -> Any:
    """Tool-call arguments as the JSON value they hold ({} when empty), or the text itself when it is not JSON
    (freeform input such as Codex custom tools)."""
    try:
        return orjson.loads(arguments) if arguments else {}
    except orjson.JSONDecodeError:
        return arguments
