"""GenAI semantic-convention attributes for a chat span, from the normalized request and record.

Attributes come from (semconv constant, value) pairs with None filtered out; names the conventions do not have
are `llm_gateway.*` and listed in the README.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson
from opentelemetry import trace
from opentelemetry._logs import LogRecord, SeverityNumber
from opentelemetry.semconv._incubating.attributes import gen_ai_attributes as gen_ai
from opentelemetry.semconv.attributes import error_attributes as err
from opentelemetry.semconv.attributes import http_attributes as http
from opentelemetry.semconv.attributes import server_attributes as server

from llm_gateway.protocols.exchange import ChatRecord, ChatRequest
from llm_gateway.upstream.http1 import host_and_port

AttrPairs = Iterable[tuple[str, Any]]

GATEWAY_PROTOCOL = "llm_gateway.protocol"
GATEWAY_TIME_TO_FIRST_TOKEN = "llm_gateway.response.time_to_first_token"
GATEWAY_TOOL_CALL_NAMES = "llm_gateway.response.tool_calls"
GATEWAY_PARSE_ERROR = "llm_gateway.parse_error"
GATEWAY_ERROR_MESSAGE = "llm_gateway.error.message"


def cache_write_key(semconv: Any = gen_ai) -> str:
    """The cache-write token count's name in the installed conventions release: the conventions move
    `gen_ai.usage.cache_creation.input_tokens` to `gen_ai.usage.cache_write.input_tokens`; a release that has the
    new name deprecates the old one."""
    return getattr(semconv, "GEN_AI_USAGE_CACHE_WRITE_INPUT_TOKENS", None) or (
        semconv.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS
    )


USAGE_CACHE_WRITE = cache_write_key()


def _filtered(pairs: AttrPairs) -> dict[str, Any]:
    return {key: value for key, value in pairs if value is not None and value != []}


def server_pairs(upstream_url: str) -> AttrPairs:
    host, port = host_and_port(upstream_url)
    return ((server.SERVER_ADDRESS, host), (server.SERVER_PORT, port))



#: request hints worth a span attribute, as `llm_gateway.request.<hint>` (Kiro's model vendor, effort, mode)
_HINT_ATTRIBUTES = ("model_vendor", "effort", "agent_mode", "origin")


def request_attributes(request: ChatRequest, provider: str, protocol: str, upstream_url: str) -> dict[str, Any]:
    """Known when the request arrives; set at span start so samplers can see them."""
    params = request.params
    hints = ((f"llm_gateway.request.{key}", request.hints.get(key)) for key in _HINT_ATTRIBUTES)
    return _filtered(
        (
            (gen_ai.GEN_AI_OPERATION_NAME, request.operation),
            (gen_ai.GEN_AI_PROVIDER_NAME, provider),
            (gen_ai.GEN_AI_REQUEST_MODEL, request.model),
            (gen_ai.GEN_AI_REQUEST_STREAM, request.stream),
            (gen_ai.GEN_AI_OUTPUT_TYPE, request.output_type),
            (gen_ai.GEN_AI_REQUEST_TEMPERATURE, params.temperature),
            (gen_ai.GEN_AI_REQUEST_TOP_P, params.top_p),
            (gen_ai.GEN_AI_REQUEST_TOP_K, params.top_k),
            (gen_ai.GEN_AI_REQUEST_MAX_TOKENS, params.max_tokens),
            (gen_ai.GEN_AI_REQUEST_STOP_SEQUENCES, params.stop_sequences),
            (gen_ai.GEN_AI_REQUEST_SEED, params.seed),
            (gen_ai.GEN_AI_REQUEST_FREQUENCY_PENALTY, params.frequency_penalty),
            (gen_ai.GEN_AI_REQUEST_PRESENCE_PENALTY, params.presence_penalty),
            (gen_ai.GEN_AI_REQUEST_CHOICE_COUNT, params.choice_count if params.choice_count != 1 else None),
            (GATEWAY_PROTOCOL, protocol),
            *hints,
            *server_pairs(upstream_url),
        )
    )


def content_request_attributes(request: ChatRequest) -> dict[str, Any]:
    return _filtered(
        (
            (gen_ai.GEN_AI_SYSTEM_INSTRUCTIONS, _json(request.system_instructions)),
            (gen_ai.GEN_AI_INPUT_MESSAGES, _json(request.input_messages)),
            (gen_ai.GEN_AI_TOOL_DEFINITIONS, _json(request.tool_definitions)),
        )
    )


def response_attributes(
    record: ChatRecord, started_ns: int, error_type: str | None, error_message: str | None
) -> dict[str, Any]:
    """Known when the exchange ended."""
    # time to first chunk means a stream's first chunk: a whole JSON answer has no chunks to time
    streamed = record.request.stream
    ttfc = (record.first_chunk_ns - started_ns) / 1e9 if record.first_chunk_ns and streamed else None
    ttft = (record.first_token_ns - started_ns) / 1e9 if record.first_token_ns else None
    issues = record.parse_issues + ([record.request.parse_issue] if record.request.parse_issue else [])
    attrs = _filtered(
        (
            (http.HTTP_RESPONSE_STATUS_CODE, record.status),
            (gen_ai.GEN_AI_RESPONSE_ID, record.response_id),
            (gen_ai.GEN_AI_RESPONSE_MODEL, record.response_model),
            (gen_ai.GEN_AI_RESPONSE_FINISH_REASONS, record.finish_reasons or None),
            (gen_ai.GEN_AI_USAGE_INPUT_TOKENS, record.input_tokens),
            (gen_ai.GEN_AI_USAGE_OUTPUT_TOKENS, record.output_tokens),
            (gen_ai.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS, record.cache_read),
            (USAGE_CACHE_WRITE, record.cache_write),
            (gen_ai.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS, record.reasoning_tokens),
            (gen_ai.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK, ttfc),
            (GATEWAY_TIME_TO_FIRST_TOKEN, ttft),
            (GATEWAY_TOOL_CALL_NAMES, [c.name for c in record.tool_calls] or None),
            (GATEWAY_PARSE_ERROR, "; ".join(issues) or None),
            (err.ERROR_TYPE, error_type),
            (GATEWAY_ERROR_MESSAGE, error_message[:500] if error_type and error_message else None),
        )
    )
    for key, value in record.extras.items():
        attrs[f"llm_gateway.{key}"] = value
    return attrs


def content_response_attributes(record: ChatRecord) -> dict[str, Any]:
    return _filtered(((gen_ai.GEN_AI_OUTPUT_MESSAGES, _json(record.output_messages)),))


INFERENCE_DETAILS_EVENT = "gen_ai.client.inference.operation.details"
_CONTENT_JSON = frozenset({gen_ai.GEN_AI_SYSTEM_INSTRUCTIONS, gen_ai.GEN_AI_INPUT_MESSAGES,
                           gen_ai.GEN_AI_TOOL_DEFINITIONS, gen_ai.GEN_AI_OUTPUT_MESSAGES})


def inference_details_event(span: trace.SpanContext, attributes: dict[str, Any], record: ChatRecord,
                            at_ns: int) -> LogRecord:
    """The call's `gen_ai.client.inference.operation.details` event: the chat span's attributes, with the content
    as structured values (on a span it is JSON text), in the span's context, at DEBUG as the conventions ask."""
    request = record.request
    content = _filtered(
        (
            (gen_ai.GEN_AI_SYSTEM_INSTRUCTIONS, request.system_instructions),
            (gen_ai.GEN_AI_INPUT_MESSAGES, request.input_messages),
            (gen_ai.GEN_AI_TOOL_DEFINITIONS, request.tool_definitions),
            (gen_ai.GEN_AI_OUTPUT_MESSAGES, record.output_messages),
        )
    )
    plain = {key: value for key, value in attributes.items() if key not in _CONTENT_JSON}
    return LogRecord(timestamp=at_ns, context=trace.set_span_in_context(trace.NonRecordingSpan(span)),
                     severity_number=SeverityNumber.DEBUG,
                     event_name=INFERENCE_DETAILS_EVENT, attributes={**plain, **content})


def _json(value: Any) -> str | None:
    # Serialized before `_filtered` sees it, so an empty list is dropped here, as `_filtered` drops one.
    return orjson.dumps(value).decode() if value is not None and value != [] else None
