"""What the OpenAI Chat Completions and Responses adapters share: the provider name from the upstream host, the
requested output type, usage reading, content parts, offered tools and the request transcript (which Kiro's
adapter reuses: its messages are plain strings, which the transcript reads as OpenAI string content).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlsplit

from llm_gateway.protocols import events as ev
from llm_gateway.protocols._json import integer, items, obj, text
from llm_gateway.protocols._response import reported
from llm_gateway.protocols.exchange import ChatRequest, ToolResult, fingerprint, json_or_text

# ---------------------------------------------------------------------------------------------------------
# Provider name

#: (host suffix, gen_ai.provider.name); a host matches its suffix exactly or as a subdomain
_HOST_PROVIDERS = (
    ("openai.azure.com", "azure.ai.openai"),
    ("cognitiveservices.azure.com", "azure.ai.openai"),
    ("openai.com", "openai"),
    ("openrouter.ai", "openrouter"),
    ("groq.com", "groq"),
    ("deepseek.com", "deepseek"),
    ("mistral.ai", "mistral_ai"),
    ("x.ai", "x_ai"),
)
_OLLAMA_PORT = 11434


def provider_for_url(url: str) -> str:
    """`gen_ai.provider.name` for an OpenAI-style upstream: a known vendor by host, Ollama by port or name,
    otherwise the host itself (an OpenAI-compatible server we have no name for)."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if not host:
        return "openai"  # no upstream known: the protocol's own vendor is the best guess
    for suffix, name in _HOST_PROVIDERS:
        if host == suffix or host.endswith("." + suffix):
            return name
    try:
        port = parts.port
    except ValueError:  # a malformed port is no reason to fail a name
        port = None
    if port == _OLLAMA_PORT or "ollama" in host:
        return "ollama"
    return host


def output_type(format_type: Any) -> str | None:
    """`gen_ai.output.type` from a requested response format's type."""
    if format_type in ("json_schema", "json_object"):
        return "json"
    return "text" if format_type == "text" else None


# ---------------------------------------------------------------------------------------------------------
# Usage


def usage_event(usage: Any, input_key: str, output_key: str) -> ev.Usage | None:
    """`Usage` from an OpenAI usage object. `<input_key>` already counts cached tokens (OpenAI's rule), so it is
    the conventions' input total as is; `<input_key>_details.cached_tokens` is the cache-read part of it."""
    usage = obj(usage)
    in_details = obj(usage.get(f"{input_key}_details"))
    out_details = obj(usage.get(f"{output_key}_details"))
    event = ev.Usage(
        input_tokens=integer(usage.get(input_key)),
        output_tokens=integer(usage.get(output_key)),
        cache_read=integer(in_details.get("cached_tokens")),
        # compatible gateways that front Anthropic models report cache writes here (OpenRouter)
        cache_write=integer(in_details.get("cache_write_tokens")),
        reasoning=integer(out_details.get("reasoning_tokens")),
    )
    if event.cache_read is None:  # DeepSeek names its cache hits differently
        event = replace(event, cache_read=integer(usage.get("prompt_cache_hit_tokens")))
    return reported(event)


# ---------------------------------------------------------------------------------------------------------
# Content: message text and GenAI parts (Chat parts and Responses parts in one place)

#: parts whose `text` is text: Chat, Responses messages, and Responses reasoning summaries / content
_TEXT_PARTS = frozenset({"text", "input_text", "output_text", "summary_text", "reasoning_text"})


def content_text(content: Any) -> str:
    """The visible text of a content value: a string, or the text (and refusal) parts of a parts array."""
    if isinstance(content, str):
        return content
    return "".join(_part_text(part) or "" for part in items(content))


def _part_text(part: dict[str, Any]) -> str | None:
    ptype = part.get("type")
    if ptype == "refusal":
        return text(part.get("refusal"))
    if ptype in _TEXT_PARTS or ptype is None:
        return text(part.get("text"))
    return None


def content_parts(content: Any) -> list[dict[str, Any]]:
    """GenAI message parts for a content value. Media is described, never copied."""
    if isinstance(content, str):
        return [{"type": "text", "content": content}]
    return [_genai_part(part) for part in items(content)]


def _genai_part(part: dict[str, Any]) -> dict[str, Any]:
    ptype = part.get("type")
    body = _part_text(part)
    if body is not None:
        return {"type": "text", "content": body}
    if ptype == "image_url":  # Chat: {"image_url": {"url": ...}} (or a bare string from lenient clients)
        image = part.get("image_url")
        return _media(text(obj(image).get("url")) or text(image), "image")
    if ptype == "input_image":  # Responses: image_url string or an uploaded file
        if text(part.get("file_id")):
            return {"type": "file", "file_id": part["file_id"], "modality": "image"}
        return _media(text(part.get("image_url")), "image")
    if ptype == "input_audio":
        fmt = text(obj(part.get("input_audio")).get("format"))
        return {"type": "blob", "modality": "audio", **({"mime_type": f"audio/{fmt}"} if fmt else {})}
    if ptype in ("file", "input_file"):  # Chat nests under "file"; Responses is flat
        return _file(obj(part.get("file")) or part)
    return {"type": str(ptype)}


def _media(url: str | None, modality: str) -> dict[str, Any]:
    if url is None or url.startswith("data:"):
        return _blob(url, modality)
    return {"type": "uri", "uri": url, "modality": modality}


def _blob(data_url: str | None, modality: str | None = None) -> dict[str, Any]:
    part: dict[str, Any] = {"type": "blob"}
    mime = (data_url or "")[5:].partition(",")[0].partition(";")[0] if (data_url or "").startswith("data:") else ""
    if mime:
        part["mime_type"] = mime
    if modality:
        part["modality"] = modality
    return part


def _file(spec: dict[str, Any]) -> dict[str, Any]:
    if text(spec.get("file_id")):
        return {"type": "file", "file_id": spec["file_id"]}
    if text(spec.get("file_url")):
        return {"type": "uri", "uri": spec["file_url"]}
    return _blob(text(spec.get("file_data")))


# ---------------------------------------------------------------------------------------------------------
# Tools offered


def tool_specs(tools: Any) -> Iterator[dict[str, Any]]:
    """Offered tools as flat `{"type", "name", "description"?, "parameters"?}` dicts. Chat nests a tool under its
    type (`{"type": "function", "function": {...}}`), Responses does not; Codex groups tools in `namespace`
    entries (the model calls the inner names); built-in tools are known by their type name."""
    for tool in items(tools):
        ttype = text(tool.get("type")) or "function"
        if ttype == "namespace":
            yield from tool_specs(tool.get("tools"))
            continue
        spec = obj(tool.get(ttype)) or tool
        name = text(spec.get("name"))
        if not name and ttype in ("function", "custom"):
            continue  # a function without a name names nothing
        definition: dict[str, Any] = {"type": ttype, "name": name or ttype}
        for key in ("description", "parameters"):
            if spec.get(key) is not None:
                definition[key] = spec[key]
        yield definition


# ---------------------------------------------------------------------------------------------------------
# The request transcript


@dataclass(slots=True)
class Transcript:
    """Collects what both adapters read from a request's history. Names, ids and the fingerprint texts are
    always kept; message content is built only when `capture` is set."""

    capture: bool
    system: list[str] = field(default_factory=list)
    first_user: str | None = None
    instructions: list[dict[str, Any]] = field(default_factory=list)  # capture only
    messages: list[dict[str, Any]] = field(default_factory=list)  # capture only
    calls: dict[str, str] = field(default_factory=dict)
    results: list[ToolResult] = field(default_factory=list)
    tools: list[dict[str, Any]] = field(default_factory=list)

    def instruction(self, content: Any) -> None:
        body = content_text(content)
        if body:
            self.system.append(body)
        if self.capture:
            self.instructions.extend(content_parts(content))

    def message(self, role: str, content: Any) -> None:
        if role == "user" and self.first_user is None:
            self.first_user = content_text(content)
        if self.capture:
            self._add(role, content_parts(content))

    def reasoning(self, body: str) -> None:
        if self.capture and body:
            self._add("assistant", [{"type": "reasoning", "content": body}])

    def tool_call(self, call_id: Any, name: Any, arguments: Any) -> None:
        call_id, name = text(call_id), text(name) or ""
        if call_id:
            self.calls[call_id] = name
        if self.capture:
            args = json_or_text(arguments) if isinstance(arguments, str) else arguments
            self._add("assistant", [{"type": "tool_call", "id": call_id, "name": name, "arguments": args}])

    def tool_result(self, call_id: Any, output: Any, name: Any = None) -> None:
        call_id = text(call_id)
        response = output if isinstance(output, str) or output is None else content_parts(output)
        known = self.calls.get(call_id) if call_id else None
        self.results.append(ToolResult(call_id, known or text(name), content=response if self.capture else None))
        if self.capture:
            self.messages.append(
                {"role": "tool", "parts": [{"type": "tool_call_response", "id": call_id, "response": response}]}
            )

    def _add(self, role: str, parts: list[dict[str, Any]]) -> None:
        # an assistant turn's text, reasoning and tool calls are one message, however the wire splits them
        last = self.messages[-1] if self.messages else None
        if role == "assistant" and last is not None and last["role"] == "assistant":
            last["parts"].extend(parts)
        else:
            self.messages.append({"role": role, "parts": parts})

    def fill(self, request: ChatRequest) -> ChatRequest:
        """Put what was collected on `request` (tools, results, fingerprints, and content when capturing)."""
        system_text = "\n".join(self.system) or None
        request.tool_names = [tool["name"] for tool in self.tools]
        request.tool_results = self.results
        request.history_tool_calls = self.calls
        request.conversation_fingerprint = fingerprint(system_text, self.first_user)
        request.agent_fingerprint = fingerprint(system_text, sorted(request.tool_names))
        if self.capture:
            request.system_instructions = self.instructions or None
            request.input_messages = self.messages
            request.tool_definitions = self.tools or None
        return request
