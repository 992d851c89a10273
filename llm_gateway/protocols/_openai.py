"""What the OpenAI Chat Completions and Responses adapters share: the provider name from the upstream host, the
requested output type, usage reading, content parts and offered tools. The request history they read goes into a
`transcript.Transcript`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Any

from llm_gateway.protocols import events as ev
from llm_gateway.protocols._json import integer, items, obj, text
from llm_gateway.protocols._parts import blob, data_url_blob
from llm_gateway.protocols._response import reported
from llm_gateway.protocols.vendors import vendor_for_host

# ---------------------------------------------------------------------------------------------------------
# Provider name


def provider_for_url(url: str) -> str:
    """`gen_ai.provider.name` for an OpenAI-protocol upstream: the well-known vendor its host tells, else `openai`
    (a compatible server the conventions have no name for: OpenRouter, Ollama, vLLM ...; its host is in
    `server.address`)."""
    return vendor_for_host(url) or "openai"


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
    """GenAI message parts for a content value; inline media as the base64 the request carried."""
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
        audio = obj(part.get("input_audio"))
        fmt = text(audio.get("format"))
        return blob(text(audio.get("data")), f"audio/{fmt}" if fmt else None, "audio")
    if ptype in ("file", "input_file"):  # Chat nests under "file"; Responses is flat
        return _file(obj(part.get("file")) or part)
    return {"type": str(ptype)}


def _media(url: str | None, kind: str) -> dict[str, Any]:
    if url is None or url.startswith("data:"):
        return data_url_blob(url, kind)
    return {"type": "uri", "uri": url, "modality": kind}


def _file(spec: dict[str, Any]) -> dict[str, Any]:
    """A file by id, by URL, or inline (a data URL): a document unless its MIME type says otherwise."""
    if text(spec.get("file_id")):
        return {"type": "file", "file_id": spec["file_id"], "modality": "document"}
    if text(spec.get("file_url")):
        return {"type": "uri", "uri": spec["file_url"], "modality": "document"}
    return data_url_blob(text(spec.get("file_data")))


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
