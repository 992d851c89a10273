"""OpenAI Responses (`POST .../responses`), as the OpenAI SDKs, the Agents SDK and Codex send it.

Streamed: SSE events named by their `type` (`response.created`, `response.output_text.delta`,
`response.output_item.added/.done`, `response.function_call_arguments.delta`, ..., and one terminal event
`response.completed`, `response.incomplete` or `response.failed`; or an `error` event). Not streamed: the
response object (`output` items, `usage`, `status`).

Decisions where the wire leaves room:
- Finish reason: the Responses API has none, only `response.status`. It is reported as is ("completed",
  "failed", "cancelled"), except "incomplete", which is reported as `incomplete_details.reason` (e.g.
  "max_output_tokens", "content_filter") when given, as that is the provider's own word for why it stopped.
- `response.failed` gives `ProviderError(error.code, error.message)` besides the finish reason "failed".
- Tool calls are keyed by `output_index`. A call begins at `output_item.added`; its arguments are the
  `function_call_arguments.delta` / `custom_tool_call_input.delta` fragments; `output_item.done` adds only the
  part of the whole arguments that was not streamed, so nothing is counted twice. Other `*_call` items
  (`local_shell_call`, `web_search_call`, ...) are read whole at `output_item.done`: with a `call_id` the client
  runs them (type "function"), without one the provider does (type "server").
- Codex sends tools inside `input` items of type `additional_tools`, grouped in `namespace` entries; their
  names count as offered tools like the top-level `tools`.
- Over a WebSocket (Codex's default transport), `responses_socket.ResponsesSocket` turns the messages into calls
  this adapter reads as POSTs (`socket_reader`).
- History: `system`/`developer` message items join `instructions` as system instructions; `*_call` items
  with a `call_id` are earlier tool calls, `*_call_output` items are tool results.
"""

from __future__ import annotations

import enum
from typing import Any

import orjson

from llm_gateway.protocols import events as ev
from llm_gateway.protocols._json import body_hints, integer, items, json_object, number, obj, text
from llm_gateway.protocols._openai import content_text, output_type, provider_for_url, tool_specs, usage_event
from llm_gateway.protocols._parsers import JsonBodyParser, SSEParser
from llm_gateway.protocols._response import Identity, is_streamed
from llm_gateway.protocols._states import unexpected
from llm_gateway.protocols.base import HttpRequest, HttpResponseHead, ResponseParser
from llm_gateway.protocols.exchange import ChatRequest, RequestParams
from llm_gateway.protocols.framing.sse import SSEEvent
from llm_gateway.protocols.responses_socket import ResponsesSocket
from llm_gateway.protocols.transcript import Transcript

#: body field -> hint name
_HINTS = {
    "prompt_cache_key": "prompt_cache_key",
    "previous_response_id": "previous_response_id",
    "user": "user_id",
}
_TERMINAL = frozenset({"response.completed", "response.incomplete", "response.failed"})
_STREAMED_CALLS = frozenset({"function_call", "custom_tool_call"})


class ResponsesAdapter:
    def parse_request(self, request: HttpRequest, capture: bool) -> ChatRequest:
        body = json_object(request.body)
        transcript = Transcript(capture, tools=list(tool_specs(body.get("tools"))))
        if text(body.get("instructions")):
            transcript.instruction(body["instructions"])
        if isinstance(body.get("input"), str):
            transcript.message("user", body["input"])
        for item in items(body.get("input")):
            _read_item(transcript, item)
        chat = ChatRequest(
            operation="chat",
            model=text(body.get("model")),
            stream=body.get("stream") is True,
            params=RequestParams(
                temperature=number(body.get("temperature")),
                top_p=number(body.get("top_p")),
                max_tokens=integer(body.get("max_output_tokens")),
            ),
            output_type=output_type(obj(obj(body.get("text")).get("format")).get("type")),
            hints=_hints(body),
        )
        return transcript.fill(chat)

    def response_parser(self, request: ChatRequest, head: HttpResponseHead) -> ResponseParser:
        if is_streamed(request, head):
            return SSEParser(_ResponsesStream())
        return JsonBodyParser(_response_events)

    def provider_name(self, request: HttpRequest) -> str:
        return provider_for_url(request.upstream_url)

    def socket_reader(self, upgrade: HttpRequest) -> ResponsesSocket:
        """The model calls inside a WebSocket opened with `upgrade` (Responses over WebSocket)."""
        return ResponsesSocket(upgrade)


ADAPTER = ResponsesAdapter()


# ---------------------------------------------------------------------------------------------------------
# Request


def _hints(body: dict[str, Any]) -> dict[str, str]:
    hints = body_hints(body, _HINTS)
    conversation = body.get("conversation")  # a conversation id, or {"id": ...}
    conversation_id = text(conversation) or text(obj(conversation).get("id"))
    if conversation_id:
        hints["conversation_id"] = conversation_id
    return hints


def _read_item(transcript: Transcript, item: dict[str, Any]) -> None:
    kind = text(item.get("type")) or ("message" if "role" in item else "")
    if kind == "message":
        role = text(item.get("role")) or "user"
        if role in ("system", "developer"):
            transcript.instruction(item.get("content"))
        else:
            transcript.message(role, item.get("content"))
    elif kind == "reasoning":
        transcript.reasoning(_reasoning_text(item))
    elif kind == "additional_tools":
        transcript.tools.extend(tool_specs(item.get("tools")))
    elif kind.endswith("_call_output"):
        transcript.tool_result(item.get("call_id"), item.get("output"))
    elif kind.endswith("_call") and text(item.get("call_id")):
        start = _call_start(0, item)
        if start is not None:
            transcript.tool_call(start.call_id, start.name, start.arguments)


def _reasoning_text(item: dict[str, Any]) -> str:
    return content_text(item.get("summary")) or content_text(item.get("content"))


# ---------------------------------------------------------------------------------------------------------
# Response


def _call_start(key: int | str, item: dict[str, Any]) -> ev.ToolCallStart | None:
    """The tool call an output item is, whole (None for items that are not calls)."""
    kind = text(item.get("type")) or ""
    call_id = text(item.get("call_id"))
    if kind == "function_call":
        arguments, tool_type = text(item.get("arguments")), "function"
    elif kind == "custom_tool_call":
        arguments, tool_type = text(item.get("input")), "custom"
    elif kind.endswith("_call"):  # e.g. local_shell_call{action}, web_search_call{action}, mcp_call{arguments}
        action = item.get("action")
        arguments = text(item.get("arguments")) or (orjson.dumps(action).decode() if action else None)
        tool_type = "function" if call_id else "server"  # a call the client answers has a call_id
    else:
        return None
    name = text(item.get("name")) or ("" if kind in _STREAMED_CALLS else kind.removesuffix("_call"))
    return ev.ToolCallStart(key, call_id or text(item.get("id")), name, arguments or None, type=tool_type)


def _finish_reason(response: dict[str, Any]) -> str | None:
    status = text(response.get("status"))
    if status == "incomplete":
        return text(obj(response.get("incomplete_details")).get("reason")) or status
    return status if status in ("completed", "failed", "cancelled") else None


def _provider_error(error: dict[str, Any], fallback: str) -> ev.ProviderError:
    etype = error.get("code") or error.get("type")
    return ev.ProviderError(str(etype) if etype else fallback, text(error.get("message")))


def _response_end(response: dict[str, Any], identity: Identity) -> list[ev.Event]:
    """Identity, usage, finish reason and error of a finished response object."""
    out = identity.update(response.get("id"), response.get("model"))
    usage = usage_event(response.get("usage"), "input_tokens", "output_tokens")
    if usage is not None:
        out.append(usage)
    reason = _finish_reason(response)
    if reason:
        out.append(ev.Finish(reason))
    error = obj(response.get("error"))
    if error or response.get("status") == "failed":
        out.append(_provider_error(error, "failed"))
    return out


def _response_events(doc: dict[str, Any]) -> list[ev.Event]:
    """A whole response object (not streamed)."""
    out: list[ev.Event] = []
    for position, item in enumerate(items(doc.get("output"))):
        kind = item.get("type")
        if kind == "message":
            answer = content_text(item.get("content"))
            out += [ev.TextDelta(answer)] if answer else []
        elif kind == "reasoning":
            thought = _reasoning_text(item)
            out += [ev.ReasoningDelta(thought)] if thought else []
        else:
            start = _call_start(position, item)
            out += [start] if start is not None else []
    return _response_end(doc, Identity()) + out


def _fragment(doc: dict[str, Any]) -> str:
    return text(doc.get("delta")) or ""


class _Phase(enum.Enum):
    #: events are arriving
    STREAMING = "streaming"
    #: an `error` event said why the stream stops (its terminal `response.failed` may still follow)
    FAILED = "failed"
    #: a terminal event (`response.completed`, `.failed`, `.incomplete`) came: nothing follows it
    ENDED = "ended"


class _ResponsesStream:
    """Stream state: argument characters seen per tool call, and whether a terminal or error event came. An
    event after the terminal one is still read, and logged at debug."""

    __slots__ = ("_args", "_identity", "state")

    def __init__(self) -> None:
        self._identity = Identity()
        self._args: dict[int | str, int] = {}
        self.state = _Phase.STREAMING

    def __repr__(self) -> str:
        return f"<_ResponsesStream {self.state.name} calls={len(self._args)}>"

    def event(self, frame: SSEEvent) -> list[ev.Event]:
        if not frame.data.strip():
            return []
        doc = json_object(frame.data)
        kind = text(doc.get("type")) or frame.event
        if self.state is _Phase.ENDED:
            unexpected(self, f"{kind!r} event", self.state)
        if kind in _TERMINAL:
            self.state = _Phase.ENDED
            return _response_end(obj(doc.get("response")), self._identity)
        match kind:
            case "response.created" | "response.in_progress" | "response.queued":
                response = obj(doc.get("response"))
                return self._identity.update(response.get("id"), response.get("model"))
            case "response.output_text.delta" | "response.refusal.delta":
                return [ev.TextDelta(_fragment(doc))] if _fragment(doc) else []
            case "response.reasoning_summary_text.delta" | "response.reasoning_text.delta":
                return [ev.ReasoningDelta(_fragment(doc))] if _fragment(doc) else []
            case "response.output_item.added":
                return self._added(doc)
            case "response.function_call_arguments.delta" | "response.custom_tool_call_input.delta":
                return self._delta(doc)
            case "response.output_item.done":
                return self._item_done(doc)
            case "error":
                if self.state is _Phase.STREAMING:
                    self.state = _Phase.FAILED  # the provider said why it stops: not a cut stream
                return [_provider_error(obj(doc.get("error")) or doc, "error")]
        return []

    def _added(self, doc: dict[str, Any]) -> list[ev.Event]:
        item = obj(doc.get("item"))
        if item.get("type") not in _STREAMED_CALLS:
            return []  # other calls stream no arguments: read whole when done
        start = _call_start(_key(doc, item), item)
        if start is None:
            return []
        self._args[start.key] = len(start.arguments or "")
        return [start]

    def _delta(self, doc: dict[str, Any]) -> list[ev.Event]:
        key, fragment = _key(doc, {}), _fragment(doc)
        if key not in self._args or not fragment:
            return []  # no start seen: the whole arguments come with output_item.done
        self._args[key] += len(fragment)
        return [ev.ToolCallDelta(key, fragment)]

    def _item_done(self, doc: dict[str, Any]) -> list[ev.Event]:
        item = obj(doc.get("item"))
        start = _call_start(_key(doc, item), item)
        if start is None:
            return []
        seen = self._args.get(start.key)
        if seen is None:  # never announced (or not a streamed kind): the item is the whole call
            self._args[start.key] = len(start.arguments or "")
            return [start]
        whole = start.arguments or ""
        if len(whole) <= seen:
            return []
        self._args[start.key] = len(whole)
        return [ev.ToolCallDelta(start.key, whole[seen:])]

    def end(self) -> list[ev.Event]:
        if self.state is not _Phase.STREAMING:
            return []
        return [ev.Truncated("the stream ended before response.completed")]


def _key(doc: dict[str, Any], item: dict[str, Any]) -> int | str:
    """A call's key within the response: its `output_index`, or else its item id."""
    index = integer(doc.get("output_index"))
    if index is not None:
        return index
    return text(doc.get("item_id")) or text(item.get("id")) or 0
