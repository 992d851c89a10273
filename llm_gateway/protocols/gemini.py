"""Gemini `generateContent` / `streamGenerateContent`: Google AI Studio (`/v1beta/models/{m}:...`), Vertex AI
(`/v1/projects/{p}/locations/{l}/publishers/google/models/{m}:...`, also `v1beta1`) and Gemini Code Assist
(`/v1internal:streamGenerateContent`, Gemini CLI's OAuth path, whose bodies wrap the request as
`{model, project, user_prompt_id, request: {...}}` and each response chunk as `{response: {...}, traceId}`).

A response body is one of three shapes, told apart by its content type and, failing that, by its first byte:
SSE with one `GenerateContentResponse` per `data:` (`?alt=sse`), a streamed JSON array of them (no `alt=sse`),
or one JSON object (`generateContent`). There is no terminal event: a stream is complete when a candidate
carries a `finishReason`, and cut (`Truncated`) when it ends without one.

Decisions where the wire leaves room:
- Provider name: `gcp.gen_ai` for Code Assist (`v1internal`, cloudcode-pa): the conventions keep that value
  for "any Google generative AI endpoint", and Code Assist is neither the AI Studio API (`gcp.gemini`,
  generativelanguage.googleapis.com) nor Vertex AI (`gcp.vertex_ai`, aiplatform.googleapis.com, whose paths
  name `projects/.../locations/...` or `publishers/...`).
- Usage: `usageMetadata` repeats in every chunk; the latest report wins. Gemini's `candidatesTokenCount`
  leaves out thinking (`totalTokenCount` = prompt + candidates + thoughts + tool-use prompt), while the
  conventions count reasoning inside the output, so output = candidates + thoughts and reasoning = thoughts.
  `promptTokenCount` already includes `cachedContentTokenCount` (cache_read); `toolUsePromptTokenCount`
  (results of provider-run tools fed back as input) is added to input. Gemini reports no cache writes.
- `promptFeedback.blockReason` (the prompt was refused, no candidate is generated) is a
  `ProviderError("blocked", reason)`: the call produced nothing, and it is the stream's last word.
- Tool results: the `functionResponse` parts after the last `model` turn, i.e. the answers to the previous
  response's calls (older ones in the history answered older calls). A part's `id` is its call id when the
  client sent one (Gemini CLI, pydantic-ai do); its `name` is always there. `is_error` when the response
  object carries `error` and no `output`, the shape the API documents for a failed function.
- Request fields are read in lowerCamel and in snake_case: the API accepts both, and clients send both.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from urllib.parse import unquote, urlsplit

import orjson

from llm_gateway.protocols import events as ev
from llm_gateway.protocols._json import integer, items, json_object, json_text, number, obj, text
from llm_gateway.protocols._parsers import ElementParser, SSEParser
from llm_gateway.protocols._parts import blob, modality
from llm_gateway.protocols._response import Identity, reported, total
from llm_gateway.protocols.base import HttpRequest, HttpResponseHead, ResponseParser
from llm_gateway.protocols.errors import error_fields
from llm_gateway.protocols.exchange import ChatRequest, RequestParams, ToolResult, fingerprints, tool_descriptions
from llm_gateway.protocols.framing.jsonarray import JsonArrayDecoder
from llm_gateway.protocols.framing.sse import SSEEvent

__all__ = ["ADAPTER"]

_MODEL_IN_PATH = re.compile(r"/models/([^/:]+):(\w+)")
_CODE_ASSIST_HOST = "cloudcode-pa.googleapis.com"
_VERTEX_HOST = "aiplatform.googleapis.com"
_ROLES = {"user": "user", "model": "assistant", "function": "tool", "system": "system"}


# ---------------------------------------------------------------------------------------------------------
# Field access (typed access to untrusted JSON is shared: `_json`)


@lru_cache(maxsize=128)
def _snake(camel: str) -> str:
    return re.sub(r"([A-Z])", r"_\1", camel).lower()


def _get(doc: dict[str, Any], camel: str) -> Any:
    """A request field by its lowerCamel name, or by the snake_case spelling the API also accepts."""
    value = doc.get(camel)
    return doc.get(_snake(camel)) if value is None else value


# ---------------------------------------------------------------------------------------------------------
# Request


@dataclass(frozen=True, slots=True)
class _Path:
    model: str | None
    method: str | None  # generateContent | streamGenerateContent | ...


def _read_path(path: str) -> _Path:
    bare = path.partition("?")[0]
    found = _MODEL_IN_PATH.search(bare)
    if found:
        return _Path(unquote(found.group(1)), found.group(2))
    method = bare.rpartition(":")[2] if ":" in bare.rpartition("/")[2] else None  # /v1internal:method
    return _Path(None, method)


def _model_name(value: object) -> str | None:
    name = text(value)
    return name.removeprefix("models/") if name else None


def _parse_request(request: HttpRequest, capture: bool) -> ChatRequest:
    path = _read_path(request.path)
    doc = orjson.loads(request.body) if request.body.strip() else {}
    if not isinstance(doc, dict):
        raise ValueError("the request body is not a JSON object")
    wrapped = isinstance(doc.get("request"), dict) and "contents" not in doc  # Code Assist
    body = doc["request"] if wrapped else doc
    contents = [_Content.read(item) for item in items(body.get("contents"))]
    system = _system_texts(_get(body, "systemInstruction"))
    tools = list(_tool_definitions(body.get("tools")))
    tool_names = [tool["name"] for tool in tools]
    config = obj(_get(body, "generationConfig"))
    system_text = "\n".join(system)
    conversation, agent = fingerprints(system_text, _first_user_text(contents), sorted(tool_names))
    chat = ChatRequest(
        operation="generate_content",
        model=path.model or _model_name(doc.get("model")),
        stream=path.method == "streamGenerateContent",
        params=_params(config),
        output_type=_output_type(config),
        tool_names=tool_names,
        tool_descriptions=tool_descriptions(tools),
        tool_results=_tool_results(contents, capture),  # only those after the model's last turn
        continues_tool_loop=any(True for c in contents[-1:] for _ in c.responses()),
        prompt_ordinal=sum(1 for c in contents if c.role == "user" and not any(True for _ in c.responses())) or None,
        history_tool_calls=_history_tool_calls(contents),
        hints=_hints(doc, body) if wrapped else {},
        conversation_fingerprint=conversation,
        agent_fingerprint=agent,
    )
    if capture:
        chat.system_instructions = [{"type": "text", "content": line} for line in system] or None
        chat.input_messages = [message for c in contents if (message := c.message()) is not None]
        chat.tool_definitions = tools or None
    return chat


@dataclass(frozen=True, slots=True)
class _Content:
    """One `contents[]` entry: a turn with its role and parts."""

    role: str
    parts: list[dict[str, Any]]

    @staticmethod
    def read(doc: dict[str, Any]) -> _Content:
        return _Content(text(doc.get("role")) or "user", list(items(doc.get("parts"))))

    def calls(self) -> Iterator[dict[str, Any]]:
        return (call for part in self.parts if (call := obj(_get(part, "functionCall"))))

    def responses(self) -> Iterator[dict[str, Any]]:
        return (resp for part in self.parts if (resp := obj(_get(part, "functionResponse"))))

    def plain_text(self) -> str:
        pieces = (text(part.get("text")) for part in self.parts if not part.get("thought"))
        return "".join(piece for piece in pieces if piece)

    def message(self) -> dict[str, Any] | None:
        parts = [genai for part in self.parts if (genai := _genai_part(part)) is not None]
        if not parts:
            return None
        role = _ROLES.get(self.role, self.role)
        if all(part["type"] == "tool_call_response" for part in parts):
            role = "tool"  # Gemini carries function results in user turns; the conventions give them a role
        return {"role": role, "parts": parts}


def _system_texts(system: object) -> list[str]:
    if isinstance(system, str):
        return [system]
    return [line for part in items(obj(system).get("parts")) if (line := text(part.get("text")))]


def _params(config: dict[str, Any]) -> RequestParams:
    stops = _get(config, "stopSequences")
    return RequestParams(
        temperature=number(config.get("temperature")),
        top_p=number(_get(config, "topP")),
        top_k=number(_get(config, "topK")),
        max_tokens=integer(_get(config, "maxOutputTokens")),
        stop_sequences=[s for s in stops if isinstance(s, str)] if isinstance(stops, list) else None,
        seed=integer(config.get("seed")),
        frequency_penalty=number(_get(config, "frequencyPenalty")),
        presence_penalty=number(_get(config, "presencePenalty")),
        choice_count=integer(_get(config, "candidateCount")),
    )


def _output_type(config: dict[str, Any]) -> str | None:
    mime = text(_get(config, "responseMimeType"))
    if mime == "application/json" or _get(config, "responseSchema") or _get(config, "responseJsonSchema"):
        return "json"
    modalities = _get(config, "responseModalities")
    modalities = {m.upper() for m in modalities if isinstance(m, str)} if isinstance(modalities, list) else set()
    if "AUDIO" in modalities:
        return "speech"
    if "IMAGE" in modalities:
        return "image"
    return "text" if mime == "text/plain" else None


def _tool_definitions(tools: object) -> Iterator[dict[str, Any]]:
    """Function declarations as function tools; the provider's own tools (`googleSearch`, `codeExecution`,
    `urlContext`, ...) by their key, since they have no other name."""
    for tool in items(tools):
        for key, value in tool.items():
            if _snake(key) != "function_declarations":
                yield {"type": key, "name": key}
                continue
            for decl in items(value):
                name = text(decl.get("name"))
                if name:
                    parameters = decl.get("parameters") or _get(decl, "parametersJsonSchema")
                    yield {"type": "function", "name": name, "description": text(decl.get("description")),
                           "parameters": parameters}


def _hints(doc: dict[str, Any], body: dict[str, Any]) -> dict[str, str]:
    """Code Assist names the CLI session (`request.session_id`) and the user prompt (`user_prompt_id`)."""
    found = {"session_id": text(body.get("session_id")), "user_prompt_id": text(doc.get("user_prompt_id"))}
    return {key: value for key, value in found.items() if value}


def _history_tool_calls(contents: list[_Content]) -> dict[str, str]:
    return {
        call_id: name
        for content in contents
        if content.role == "model"
        for call in content.calls()
        if (call_id := text(call.get("id"))) and (name := text(call.get("name")))
    }


def _tool_results(contents: list[_Content], capture: bool) -> list[ToolResult]:
    last_model = max((i for i, c in enumerate(contents) if c.role == "model"), default=-1)
    return [
        ToolResult(
            call_id=text(resp.get("id")) or None,
            name=text(resp.get("name")),
            is_error=_is_error(resp.get("response")),
            content=resp.get("response") if capture else None,
        )
        for content in contents[last_model + 1 :]
        for resp in content.responses()
    ]


def _is_error(response: object) -> bool:
    return isinstance(response, dict) and "error" in response and "output" not in response


def _first_user_text(contents: list[_Content]) -> str:
    return next((c.plain_text() for c in contents if c.role == "user"), "")


def _genai_part(part: dict[str, Any]) -> dict[str, Any] | None:
    """A request part in the conventions' shape; inline media as the base64 the request carried."""
    content = text(part.get("text"))
    if content is not None:
        return {"type": "reasoning" if part.get("thought") else "text", "content": content}
    if call := obj(_get(part, "functionCall")):
        return {"type": "tool_call", "id": text(call.get("id")), "name": text(call.get("name")),
                "arguments": call.get("args")}
    if resp := obj(_get(part, "functionResponse")):
        return {"type": "tool_call_response", "id": text(resp.get("id")), "response": resp.get("response")}
    if inline := obj(_get(part, "inlineData")):
        return blob(text(_get(inline, "data")), text(_get(inline, "mimeType")))
    if file := obj(_get(part, "fileData")):
        mime = text(_get(file, "mimeType"))
        uri = text(_get(file, "fileUri"))
        return {"type": "uri", "mime_type": mime, "modality": modality(mime), "uri": uri}
    return None  # thought signatures, executable code, ...: nothing the conventions name


def _provider_name(request: HttpRequest) -> str:
    path = request.path.partition("?")[0]
    host = (urlsplit(request.upstream_url).hostname or "").lower()
    if "/v1internal" in path or host == _CODE_ASSIST_HOST:
        return "gcp.gen_ai"
    vertex_path = ("/projects/" in path and "/locations/" in path) or "/publishers/" in path
    if vertex_path or host == _VERTEX_HOST or host.endswith("-" + _VERTEX_HOST):
        return "gcp.vertex_ai"
    return "gcp.gemini"


# ---------------------------------------------------------------------------------------------------------
# Response: SSE goes through the shared `SSEParser`, JSON documents (array elements or one object) through the
# shared `ElementParser`. Both hand each document to `_GeminiStream`, which keeps the stream's state.


class _SniffParser:
    """No telling content type: SSE when the body starts like SSE, JSON (array or object) otherwise."""

    __slots__ = ("_handler", "_head", "_inner")

    def __init__(self, handler: _GeminiStream) -> None:
        self._handler = handler
        self._head = b""
        self._inner: SSEParser | ElementParser | None = None  # None until the first byte that is not space

    def __repr__(self) -> str:
        return f"<_SniffParser {self._inner!r}>" if self._inner is not None else "<_SniffParser SNIFFING>"

    def feed(self, data: bytes) -> list[ev.Event]:
        if self._inner is None:
            self._head += data
            start = self._head.lstrip()
            if not start:
                self._head = b""  # leading whitespace means nothing to either framing
                return []
            json_body = start[:1] in (b"[", b"{")
            self._inner = ElementParser(JsonArrayDecoder(), self._handler) if json_body else SSEParser(self._handler)
            data, self._head = self._head, b""
        return self._inner.feed(data)

    def close(self) -> list[ev.Event]:
        return self._inner.close() if self._inner is not None else self._handler.end()


class _Phase(enum.Enum):
    #: chunks are arriving; no candidate has finished yet
    STREAMING = "streaming"
    #: a candidate reported its finishReason (others may still be streaming)
    FINISHED = "finished"
    #: an error or a blocked prompt ended the response
    ENDED = "ended"


class _GeminiStream:
    """`GenerateContentResponse` chunks (Code Assist's wrapped ones too) in, events out."""

    __slots__ = ("_calls", "_identity", "state")

    def __init__(self) -> None:
        self._identity = Identity()
        self._calls = 0  # tool calls so far: each call's key
        self.state = _Phase.STREAMING

    def __repr__(self) -> str:
        return f"<_GeminiStream {self.state.name} calls={self._calls}>"

    def event(self, frame: SSEEvent) -> list[ev.Event]:
        return self.document(frame.data) if frame.data.strip() else []

    def end(self) -> list[ev.Event]:
        if self.state is not _Phase.STREAMING:
            return []
        return [ev.Truncated("the response ended before any candidate reported a finishReason")]

    def document(self, raw: bytes | str) -> list[ev.Event]:
        doc = json_object(raw)
        if "error" in doc:
            self.state = _Phase.ENDED
            etype, message = error_fields(raw.encode() if isinstance(raw, str) else raw)
            return [ev.ProviderError(etype or "error", message)]
        if isinstance(doc.get("response"), dict) and "candidates" not in doc:
            doc = doc["response"]  # Code Assist: {response: {...}, traceId}
        out = self._identity.update(doc.get("responseId"), doc.get("modelVersion"))
        for candidate in items(doc.get("candidates")):
            out += self._candidate(candidate)
        usage = _usage(obj(doc.get("usageMetadata")))
        if usage is not None:
            out.append(usage)
        feedback = obj(doc.get("promptFeedback"))
        blocked = text(feedback.get("blockReason"))
        if blocked:
            self.state = _Phase.ENDED
            detail = text(feedback.get("blockReasonMessage"))
            out.append(ev.ProviderError("blocked", f"{blocked}: {detail}" if detail else blocked))
        return out

    def _candidate(self, candidate: dict[str, Any]) -> list[ev.Event]:
        choice = integer(candidate.get("index")) or 0
        out: list[ev.Event] = []
        for part in items(obj(candidate.get("content")).get("parts")):
            content = text(part.get("text"))
            call = obj(part.get("functionCall"))
            if content and part.get("thought"):
                out.append(ev.ReasoningDelta(content, choice))
            elif content:
                out.append(ev.TextDelta(content, choice))
            elif call:
                out.append(self._tool_call(call, choice))
        reason = text(candidate.get("finishReason"))
        if reason:
            if self.state is _Phase.STREAMING:
                self.state = _Phase.FINISHED
            out.append(ev.Finish(reason, choice))
        return out

    def _tool_call(self, call: dict[str, Any], choice: int) -> ev.ToolCallStart:
        """Gemini sends a call whole: name and arguments in one part."""
        key, self._calls = self._calls, self._calls + 1
        return ev.ToolCallStart(key, text(call.get("id")) or None, text(call.get("name")) or "",
                                json_text(call.get("args")), choice)


def _usage(meta: dict[str, Any]) -> ev.Usage | None:
    prompt, tool_prompt = integer(meta.get("promptTokenCount")), integer(meta.get("toolUsePromptTokenCount"))
    candidates, thoughts = integer(meta.get("candidatesTokenCount")), integer(meta.get("thoughtsTokenCount"))
    usage = ev.Usage(
        input_tokens=total(prompt, tool_prompt),
        output_tokens=total(candidates, thoughts),
        cache_read=integer(meta.get("cachedContentTokenCount")),
        reasoning=thoughts,
    )
    return reported(usage)


def _response_parser(head: HttpResponseHead) -> ResponseParser:
    """The content type says which body this is; without one the first byte does."""
    ctype = head.headers.get("content-type", "").lower()
    stream = _GeminiStream()
    if "text/event-stream" in ctype:
        return SSEParser(stream)
    if "json" in ctype:
        return ElementParser(JsonArrayDecoder(), stream)
    return _SniffParser(stream)


class GeminiAdapter:
    def parse_request(self, request: HttpRequest, capture: bool) -> ChatRequest:
        return _parse_request(request, capture)

    def response_parser(self, request: ChatRequest, head: HttpResponseHead) -> ResponseParser:
        return _response_parser(head)

    def provider_name(self, request: HttpRequest) -> str:
        return _provider_name(request)


ADAPTER = GeminiAdapter()
