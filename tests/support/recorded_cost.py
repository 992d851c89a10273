"""genai-prices' own figure for a recorded model call, for the cost tests to compare the gateway's with: the usage
document of the recorded response (the provider's numbers) read by genai-prices' extractor for that API, priced
with genai-prices' `calc_price` at the given time. Nothing here goes through the gateway's adapters."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any
from urllib.parse import unquote

import orjson
from genai_prices import Usage, calc_price
from genai_prices.data_snapshot import get_snapshot

from llm_gateway.recordings import Exchange
from tests.support.chat_spans import anthropic_usage, event_frames, invoke_chunks, sse_json
from tests.support.exchanges import decoded_body

#: the gateway's protocol -> (genai-prices provider whose extractor reads its usage, that extractor's API flavor)
_EXTRACTORS = {
    "anthropic.messages": ("anthropic", "default"),
    "openai.chat": ("openai", "chat"),
    "openai.responses": ("openai", "responses"),
    "gemini": ("google", "default"),
    "bedrock.converse": ("aws", "default"),
    "bedrock.invoke": ("aws", "anthropic"),  # Anthropic models' native body
}


def recorded_usage(exchange: Exchange, protocol: str) -> tuple[Usage, str]:
    """genai-prices' `Usage` from the recorded response, and the model it names (for Bedrock, whose responses name
    none or the vendor's name, the model id in the request path)."""
    if protocol == "bedrock":
        protocol = "bedrock.invoke" if "/invoke" in exchange.request.path else "bedrock.converse"
    document = _usage_document(exchange, protocol)
    provider_id, flavor = _EXTRACTORS[protocol]
    # The provider's extractor, not `extract_usage`, which also looks the model up (it may be one the table lacks).
    _, usage = get_snapshot().find_provider(None, provider_id, None).extract_usage(document, api_flavor=flavor)
    return usage, _recorded_model(exchange, document)


def genai_prices_cost(exchange: Exchange, protocol: str, provider_id: str, at: datetime) -> Decimal:
    """The recorded call's cost at `at`, as genai-prices computes it with `provider_id`'s prices."""
    usage, model = recorded_usage(exchange, protocol)
    return calc_price(usage, model, provider_id=provider_id, genai_request_timestamp=at).total_price


def _usage_document(exchange: Exchange, protocol: str) -> dict[str, Any]:
    body = decoded_body(exchange)
    streamed = body.lstrip()[:5] == b"data:" or body.lstrip()[:6] == b"event:"
    if protocol == "anthropic.messages":
        return _anthropic_stream(sse_json(body)) if streamed else orjson.loads(body)
    if protocol == "openai.chat":
        return [e for e in sse_json(body) if e.get("usage")][-1] if streamed else orjson.loads(body)
    if protocol == "openai.responses":
        completed = [e["response"] for e in sse_json(body) if e.get("type") == "response.completed"]
        return completed[-1] if streamed else orjson.loads(body)
    if protocol == "gemini":
        elements = sse_json(body) if streamed else orjson.loads(body)
        elements = elements if isinstance(elements, list) else [elements]
        elements = [e.get("response", e) for e in elements]  # Code Assist wraps each in {"response": ...}
        return [e for e in elements if e.get("usageMetadata", {}).get("promptTokenCount") is not None][-1]
    path = exchange.request.path.partition("?")[0]
    model = {"model": unquote(path.split("/")[2])}
    if path.endswith("/converse-stream"):
        return {**model, "usage": next(p["usage"] for kind, p in event_frames(body) if kind == "metadata")}
    if path.endswith("/invoke-with-response-stream"):
        return {**model, **_anthropic_stream(invoke_chunks(body)), **model}
    return {**model, **orjson.loads(body), **model}


def _anthropic_stream(events: list[dict[str, Any]]) -> dict[str, Any]:
    start = next(e["message"] for e in events if e["type"] == "message_start")
    return {"model": start["model"], "usage": anthropic_usage(events)}


def _recorded_model(exchange: Exchange, document: dict[str, Any]) -> str:
    return document.get("model") or document.get("modelVersion") or orjson.loads(exchange.request.body)["model"]
