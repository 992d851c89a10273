"""The finish reason of an output message in the conventions' words (their JSON schema's `FinishReason`: `stop`,
`length`, `content_filter`, `tool_call`, `error`), from what the provider reported. `gen_ai.response.finish_reasons`
keeps the provider's own words; only the messages in `gen_ai.output.messages` get these.
"""

from __future__ import annotations

STOP, LENGTH, CONTENT_FILTER, TOOL_CALL, ERROR = "stop", "length", "content_filter", "tool_call", "error"

#: a provider's reason, lower-cased -> the conventions' (Gemini and Kiro report upper case)
_REASONS = {
    # OpenAI Chat Completions and compatible servers (OpenRouter adds "error"), Ollama
    "stop": STOP,
    "length": LENGTH,
    "content_filter": CONTENT_FILTER,
    "tool_calls": TOOL_CALL,
    "function_call": TOOL_CALL,
    "error": ERROR,
    # OpenAI Responses: the status, or why it is incomplete
    "completed": STOP,
    "max_output_tokens": LENGTH,
    "incomplete": LENGTH,
    "failed": ERROR,
    "cancelled": ERROR,
    # Anthropic (also in Bedrock InvokeModel bodies), Bedrock Converse, Kiro
    "end_turn": STOP,
    "stop_sequence": STOP,
    "pause_turn": STOP,  # a server tool loop paused: the answer so far is whole
    "max_tokens": LENGTH,
    "model_context_window_exceeded": LENGTH,
    "tool_use": TOOL_CALL,
    "refusal": CONTENT_FILTER,
    "guardrail_intervened": CONTENT_FILTER,
    "content_filtered": CONTENT_FILTER,
    "malformed_model_output": ERROR,
    "malformed_tool_use": ERROR,
    # other models on Bedrock (Titan's completionReason, Mistral's, Llama's)
    "finish": STOP,
    # Gemini
    "safety": CONTENT_FILTER,
    "recitation": CONTENT_FILTER,
    "blocklist": CONTENT_FILTER,
    "prohibited_content": CONTENT_FILTER,
    "spii": CONTENT_FILTER,
    "image_safety": CONTENT_FILTER,
    "image_prohibited_content": CONTENT_FILTER,
    "language": CONTENT_FILTER,
    "malformed_function_call": ERROR,
    "unexpected_tool_call": ERROR,
    "too_many_tool_calls": ERROR,
    "other": ERROR,
    "finish_reason_unspecified": ERROR,
}


def message_finish_reason(reported: str | None, *, tool_calls: bool, failed: bool) -> str:
    """The conventions' finish reason of one output message: the provider's `reported` reason mapped; a plain stop
    of a message that calls tools is `tool_call` (Gemini, for one, says STOP then); no reason is `error` when the call
    failed (cut short, or a provider error), else a stop."""
    mapped = _REASONS.get(reported.lower()) if reported else None
    if mapped is None:
        mapped = ERROR if failed else STOP
    return TOOL_CALL if mapped == STOP and tool_calls else mapped
