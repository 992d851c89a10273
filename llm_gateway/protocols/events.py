"""Normalized response events, the same for every provider protocol.

A protocol's response parser turns provider bytes into these; `ExchangeBuilder` turns them into a
`ChatRecord`. Nothing downstream of a parser ever sees provider JSON.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ResponseStart:
    """The response's identity, as soon as the provider states it. Later values of a field replace earlier ones;
    None leaves a field as it was."""

    response_id: str | None = None
    model: str | None = None


@dataclass(frozen=True, slots=True)
class TextDelta:
    """A piece of the answer's visible text (the first one marks the first token)."""

    text: str
    choice: int = 0


@dataclass(frozen=True, slots=True)
class ReasoningDelta:
    """A piece of thinking / reasoning text (redacted thinking gives an empty text)."""

    text: str
    choice: int = 0


@dataclass(frozen=True, slots=True)
class ToolCallStart:
    """A tool call begins. `key` tells calls of one response apart (a block or item index, or the call id);
    its `ToolCallDelta`s carry the same key. `arguments` is set when the protocol sends them whole."""

    key: int | str
    call_id: str | None
    name: str
    arguments: str | None = None
    choice: int = 0
    type: str = "function"  # function | custom (OpenAI custom tools) | server (provider-run tools)


@dataclass(frozen=True, slots=True)
class ToolCallDelta:
    """A fragment of a tool call's JSON arguments; fragments are joined in order."""

    key: int | str
    arguments: str
    choice: int = 0


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts with the semantic conventions' meaning (see README "Token usage"):
    `input_tokens` counts every input token, cached ones included; `cache_read` / `cache_write` are parts of it;
    `reasoning` is part of `output_tokens`. A later event replaces the fields it sets; None keeps the old value."""

    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_read: int | None = None
    cache_write: int | None = None
    reasoning: int | None = None


@dataclass(frozen=True, slots=True)
class Finish:
    """A choice ended, with the finish reason exactly as the provider reported it."""

    reason: str
    choice: int = 0


@dataclass(frozen=True, slots=True)
class ProviderError:
    """The provider reported an error: an error event mid-stream, or an error body. `type` is the provider's
    error type (e.g. "overloaded_error") or, when it gives none, the HTTP status as a string."""

    type: str
    message: str | None = None


@dataclass(frozen=True, slots=True)
class Truncated:
    """The body ended before the protocol's terminal event: the stream was cut."""

    detail: str = ""


@dataclass(frozen=True, slots=True)
class Extra:
    """A fact the conventions have no name for, recorded as `llm_gateway.<key>` (e.g. Kiro's context usage)."""

    key: str
    value: str | int | float | bool


@dataclass(frozen=True, slots=True)
class ParseIssue:
    """The parser met bytes it could not read. Traffic is unaffected; the span says so."""

    detail: str


Event = (
    ResponseStart
    | TextDelta
    | ReasoningDelta
    | ToolCallStart
    | ToolCallDelta
    | Usage
    | Finish
    | ProviderError
    | Truncated
    | Extra
    | ParseIssue
)
