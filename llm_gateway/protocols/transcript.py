"""The request transcript: what an adapter reads from a request's history (system text, messages, tool calls and
results, offered tools), put on the `ChatRequest` by `fill`. The OpenAI Chat and Responses adapters use it, and
Kiro's, whose messages are plain strings, which it reads as OpenAI string content.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from llm_gateway.protocols._json import text
from llm_gateway.protocols._openai import content_parts, content_text
from llm_gateway.protocols.exchange import ChatRequest, ToolResult, fingerprints, json_or_text, tool_descriptions


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
    answers_tools: bool = False  # the newest message so far is a tool result
    prompts: int = 0  # user messages so far

    def instruction(self, content: Any) -> None:
        body = content_text(content)
        if body:
            self.system.append(body)
        if self.capture:
            self.instructions.extend(content_parts(content))

    def message(self, role: str, content: Any) -> None:
        self.answers_tools = False
        if role == "user":
            self.prompts += 1
        if role == "user" and self.first_user is None:
            self.first_user = content_text(content)
        if self.capture:
            self._add(role, content_parts(content))

    def reasoning(self, body: str) -> None:
        if self.capture and body:
            self._add("assistant", [{"type": "reasoning", "content": body}])

    def tool_call(self, call_id: Any, name: Any, arguments: Any) -> None:
        call_id, name = text(call_id), text(name) or ""
        self.answers_tools = False
        if call_id:
            self.calls[call_id] = name
        if self.capture:
            args = json_or_text(arguments) if isinstance(arguments, str) else arguments
            self._add("assistant", [{"type": "tool_call", "id": call_id, "name": name, "arguments": args}])

    def tool_result(self, call_id: Any, output: Any, name: Any = None) -> None:
        call_id = text(call_id)
        self.answers_tools = True
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
        request.tool_descriptions = tool_descriptions(self.tools)
        request.tool_results = self.results
        request.continues_tool_loop = self.answers_tools
        request.prompt_ordinal = self.prompts or None
        request.history_tool_calls = self.calls
        request.conversation_fingerprint, request.agent_fingerprint = fingerprints(
            system_text, self.first_user, sorted(request.tool_names))
        if self.capture:
            request.system_instructions = self.instructions or None
            request.input_messages = self.messages
            request.tool_definitions = self.tools or None
        return request
