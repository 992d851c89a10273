"""Anthropic Messages request bodies (`POST /v1/messages`): parameters, tools, history, tool results, ids and,
under content capture, the messages in the GenAI conventions' shapes. The Bedrock adapter reads InvokeModel
bodies for Anthropic models and Converse bodies (rewritten into this shape) with `parse_messages_body`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from llm_gateway.protocols._json import integer, items, obj, text
from llm_gateway.protocols._parts import blob
from llm_gateway.protocols.exchange import ChatRequest, RequestParams, ToolResult, fingerprints, tool_descriptions

__all__ = ["parse_messages_body"]

#: content blocks in which the model calls a tool: its own (`tool_use`) or one the provider runs
_TOOL_CALL_BLOCKS = frozenset({"tool_use", "server_tool_use", "mcp_tool_use"})
#: Claude Code's attribution block heads `system`; its `cch=` field changes on every request
_BILLING_PREFIX = "x-anthropic-billing-header:"
_JSON_FORMATS = frozenset({"json_schema", "json_object", "json"})


# ---------------------------------------------------------------------------------------------------------
# Typed access to untrusted JSON is shared (`_json`); these read what only this module reads


def _number(value: object) -> float | None:
    """A number as sent: unlike `_json.number`, an int stays an int (`top_k: 40` is reported as 40, not 40.0)."""
    return value if isinstance(value, int | float) and not isinstance(value, bool) else None


def _type(doc: dict[str, Any]) -> str | None:
    return text(doc.get("type"))


def _compact(**fields: Any) -> dict[str, Any]:
    return {key: value for key, value in fields.items() if value is not None}


# ---------------------------------------------------------------------------------------------------------
# Request


@dataclass(frozen=True, slots=True)
class _Message:
    role: str
    blocks: list[dict[str, Any]]


def parse_messages_body(doc: dict[str, Any], capture: bool) -> ChatRequest:
    """A Messages request body (parsed JSON) as a `ChatRequest`. Bedrock-native bodies (`anthropic_version`,
    no `model`, no `stream`) give model None and stream False; the caller fills those from the URL."""
    if not isinstance(doc, dict):
        raise ValueError("the request body is not a JSON object")
    tools = list(items(doc.get("tools")))
    tool_names = [name for tool in tools if (name := text(tool.get("name")))]
    system = _system_texts(doc.get("system"))
    scan = _scan_messages(doc.get("messages"), keep_all=capture)
    messages, history = scan.messages, scan.history_tool_calls
    # the attribution block would make every request of a session look new
    system_text = "\n".join(line for line in system if not line.startswith(_BILLING_PREFIX))
    conversation, agent = fingerprints(system_text, _first_user_text(messages), sorted(tool_names))
    request = ChatRequest(
        operation="chat",
        model=text(doc.get("model")),
        stream=doc.get("stream") is True,
        params=_params(doc),
        output_type=_output_type(doc),
        tool_names=tool_names,
        tool_descriptions=tool_descriptions(tools),
        tool_results=[_tool_result(block, history, capture) for block in scan.tool_results],
        continues_tool_loop=scan.ends_with_tool_result,
        prompt_ordinal=scan.prompts or None,
        history_tool_calls=history,
        hints=_hints(doc),
        conversation_fingerprint=conversation,
        agent_fingerprint=agent,
    )
    if capture:
        request.system_instructions = [{"type": "text", "content": line} for line in system] or None
        request.input_messages = _input_messages(messages)
        request.tool_definitions = [_tool_definition(tool) for tool in tools] or None
    return request


@dataclass(slots=True)
class _Scan:
    """What one pass over the history finds. An agent sends its whole conversation with every call, often hundreds
    of messages: each block is looked at once."""

    messages: list[_Message]  # all of them, or only the first user message (`_scan_messages`)
    history_tool_calls: dict[str, str]  # call id -> tool name, of every tool call in the history
    tool_results: list[dict[str, Any]]  # the tool_result blocks, in order
    prompts: int  # user messages that are not tool results
    ends_with_tool_result: bool


def _scan_messages(value: object, keep_all: bool) -> _Scan:
    """One pass over the messages. `keep_all`: every message's blocks are kept (content capture); otherwise only
    the first user message's, for the conversation's fingerprint."""
    scan = _Scan([], {}, [], 0, False)
    if not isinstance(value, list):
        return scan
    history, results, messages = scan.history_tool_calls, scan.tool_results, scan.messages
    for doc in value:
        if not isinstance(doc, dict):
            continue
        role = doc.get("role")
        if not isinstance(role, str) or not role:
            role = "user"
        content = doc.get("content")
        has_result = False
        if isinstance(content, list):
            for block in content:
                if not isinstance(block, dict):
                    continue
                kind = block.get("type")
                if kind == "tool_result":
                    has_result = True
                    results.append(block)
                elif isinstance(kind, str) and kind in _TOOL_CALL_BLOCKS:
                    call_id, name = block.get("id"), block.get("name")
                    if call_id and name and isinstance(call_id, str) and isinstance(name, str):
                        history[call_id] = name
        if role == "user" and not has_result:
            scan.prompts += 1
        scan.ends_with_tool_result = has_result
        if keep_all or (role == "user" and not messages):
            messages.append(_Message(role, _blocks(content)))
    return scan


def _blocks(content: object) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    return [block for block in content if isinstance(block, dict)] if isinstance(content, list) else []


def _system_texts(system: object) -> list[str]:
    if isinstance(system, str):
        return [system]
    return [body for block in items(system) if (body := text(block.get("text"))) is not None]


def _params(doc: dict[str, Any]) -> RequestParams:
    stops = doc.get("stop_sequences")
    return RequestParams(
        temperature=_number(doc.get("temperature")),
        top_p=_number(doc.get("top_p")),
        top_k=_number(doc.get("top_k")),
        max_tokens=integer(doc.get("max_tokens")),
        stop_sequences=[s for s in stops if isinstance(s, str)] if isinstance(stops, list) else None,
    )


def _output_type(doc: dict[str, Any]) -> str | None:
    """`json` for structured outputs: `output_format` (beta), `output_config.format`, or an OpenAI-style
    `response_format` that some gateways accept."""
    config = obj(doc.get("output_config"))
    formats = (doc.get("output_format"), config.get("format"), doc.get("response_format"))
    return "json" if any(_type(obj(fmt)) in _JSON_FORMATS for fmt in formats) else None


def _hints(doc: dict[str, Any]) -> dict[str, str]:
    hints: dict[str, str] = {}
    # kept raw: Claude Code sends a JSON string here (or a legacy `user_..._session_<uuid>`), parsed elsewhere
    user_id = text(obj(doc.get("metadata")).get("user_id"))
    if user_id:
        hints["user_id"] = user_id
    # A server-side thread (`{"type": "continue", "previous_message_id"}`, sent by the SDK's tool runner):
    # the request carries only the new turn, so the previous message id is what ties it to its conversation.
    previous = text(obj(doc.get("thread")).get("previous_message_id"))
    if previous:
        hints["previous_response_id"] = previous
    return hints


def _tool_result(block: dict[str, Any], history: dict[str, str], capture: bool) -> ToolResult:
    call_id = text(block.get("tool_use_id"))
    return ToolResult(
        call_id=call_id,
        name=history.get(call_id) if call_id else None,
        is_error=block.get("is_error") is True,
        content=_result_content(block.get("content")) if capture else None,
    )


def _first_user_text(messages: list[_Message]) -> str:
    first = next((m for m in messages if m.role == "user"), None)
    if first is None:
        return ""
    return "\n".join(text(b.get("text")) or "" for b in first.blocks if _type(b) == "text")


def _tool_definition(tool: dict[str, Any]) -> dict[str, Any]:
    kind = _type(tool)
    if kind in (None, "custom"):  # a client tool; typed ones (web_search_..., bash_...) run elsewhere
        return _compact(
            type="function",
            name=text(tool.get("name")),
            description=text(tool.get("description")),
            parameters=tool.get("input_schema"),
        )
    return _compact(type=text(kind), name=text(tool.get("name")))


def _input_messages(messages: list[_Message]) -> list[dict[str, Any]]:
    """Messages in the conventions' shape. `tool_result` blocks ride in user messages on this API; they become
    `tool` messages, the user's other blocks staying a `user` message, in order."""
    out: list[dict[str, Any]] = []
    for message in messages:
        groups: list[dict[str, Any]] = []
        for block in message.blocks:
            part = _part(block)
            if part is None:
                continue
            role = "tool" if _type(block) == "tool_result" else message.role
            if not groups or groups[-1]["role"] != role:
                groups.append({"role": role, "parts": []})
            groups[-1]["parts"].append(part)
        out.extend(groups or [{"role": message.role, "parts": []}])
    return out


def _part(block: dict[str, Any]) -> dict[str, Any] | None:
    kind = _type(block)
    match kind:
        case "text":
            return {"type": "text", "content": text(block.get("text")) or ""}
        case "thinking":
            return {"type": "reasoning", "content": text(block.get("thinking")) or ""}
        case "redacted_thinking":  # encrypted: nothing readable to keep
            return {"type": "reasoning", "content": ""}
        case "tool_use" | "server_tool_use" | "mcp_tool_use":
            call_id, name = text(block.get("id")), text(block.get("name"))
            return _compact(type="tool_call", id=call_id, name=name, arguments=block.get("input"))
        case "tool_result":
            return {
                "type": "tool_call_response",
                "id": text(block.get("tool_use_id")),
                "response": _result_content(block.get("content")),
            }
        case "image" | "document":
            return _media_part(kind, obj(block.get("source")))
    # other blocks (web_search_tool_result, search_result, ...): named, their content left out
    return {"type": kind} if isinstance(kind, str) else None


def _media_part(kind: str, source: dict[str, Any]) -> dict[str, Any]:
    """Media by reference, or inline as the base64 the request carried."""
    modality = "image" if kind == "image" else "document"
    match _type(source):
        case "base64":
            return blob(text(source.get("data")), text(source.get("media_type")), modality)
        case "url":
            return _compact(type="uri", uri=text(source.get("url")), modality=modality)
        case "file":
            return _compact(type="file", file_id=text(source.get("file_id")), modality=modality)
        case "text":  # a plain-text document is text
            return {"type": "text", "content": text(source.get("data")) or ""}
    return {"type": kind}


def _result_content(content: object) -> Any:
    """A tool result's content: its string as is; text blocks joined into one string; otherwise parts."""
    if not isinstance(content, list):
        return content
    blocks = list(items(content))
    if all(_type(block) == "text" for block in blocks):
        return "\n".join(text(block.get("text")) or "" for block in blocks)
    return [part for block in blocks if (part := _part(block)) is not None]
