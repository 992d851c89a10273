"""What a model call cost, in USD, from the usage its adapter reported and a genai-prices table. No I/O: the table
is read at startup (`prices.py`), and cost is computed in the telemetry process, after the call.

Token rule. The record counts as the conventions do: `input_tokens` includes cache reads and writes, `output_tokens`
includes reasoning. genai-prices' `Usage` means the same (`cache_read_tokens`, `cache_write_tokens` refine
`input_tokens`, `output_reasoning_tokens` refines `output_tokens`; each token is charged once, at the most specific
price the model has), so the counts go over as they are. Long-context tiers are chosen by the total input.

A call is priced with the provider that served it (the gateway's `gen_ai.provider.name`, mapped to genai-prices'
id; an OpenAI-compatible server the conventions have no name for, named `openai`, by a provider with its host as id
from the price file, else by its URL as genai-prices knows provider URLs), the response model (what answered, often
a dated snapshot) or else the requested one, and the prices in force when the request arrived. Otherwise it is
unpriced, and says why: never a cost of 0.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from llm_gateway.protocols.exchange import ChatRecord
from llm_gateway.telemetry.prices import PriceTable
from llm_gateway.upstream.http1 import host_and_port

USAGE_COST = "gen_ai.usage.cost"  # the name OpenLIT and the GenAI dashboards read; not in the conventions yet
PRICE_SOURCE = "llm_gateway.cost.price_source"
UNPRICED_REASON = "llm_gateway.cost.unpriced_reason"
#: on turn and session spans: never `gen_ai.usage.cost`, so that backends summing it per span count each call once
TOTAL_COST = "llm_gateway.usage.cost"
UNPRICED_CALLS = "llm_gateway.cost.unpriced_calls"
KIRO_CREDITS = "llm_gateway.kiro.credits"

#: `gen_ai.provider.name` -> genai-prices provider id
_PROVIDER_IDS = {
    "anthropic": "anthropic",
    "openai": "openai",
    "azure.ai.openai": "azure",
    "aws.bedrock": "aws",
    "gcp.gemini": "google",
    "gcp.vertex_ai": "google",
    "gcp.gen_ai": "google",
    "groq": "groq",
    "deepseek": "deepseek",
    "mistral_ai": "mistral",
    "x_ai": "x-ai",
    "perplexity": "perplexity",
    "cohere": "cohere",
    "azure.ai.inference": "azure",
}
#: billed in credits (`llm_gateway.kiro.credits`), not per token
_CREDIT_PROVIDERS = frozenset({"aws.kiro", "aws.q"})


class Unpriced:
    """Why a call has no cost: the values of `llm_gateway.cost.unpriced_reason`."""

    CREDITS_ONLY = "credits_only"  # Kiro / Amazon Q: credits, no token prices
    NO_USAGE = "no_usage"  # the provider reported no token counts
    PARTIAL_USAGE = "partial_usage"  # input or output count missing: a price would be a part of the cost
    NO_MODEL = "no_model"
    UNKNOWN_PROVIDER = "unknown_provider"
    UNKNOWN_MODEL = "unknown_model"
    INVALID_USAGE = "invalid_usage"  # counts genai-prices rejects, e.g. more cached tokens than input tokens


@dataclass(frozen=True, slots=True)
class CallCost:
    """One call's cost: `usd` with its `source`, or the reason there is none; Kiro's credits either way."""

    usd: float | None = None
    source: str | None = None
    unpriced_reason: str | None = None
    kiro_credits: float | None = None

    def attributes(self) -> dict[str, Any]:
        """The chat span's cost attributes (Kiro's credits are already there, as the adapter's extra)."""
        if self.usd is not None:
            return {USAGE_COST: self.usd, PRICE_SOURCE: self.source}
        return {UNPRICED_REASON: self.unpriced_reason}


def call_cost(table: PriceTable, provider: str, record: ChatRecord, started_ns: int,
              upstream_url: str | None = None) -> CallCost:
    """Price one finished call; `started_ns` is when its request arrived (wall clock, ns)."""
    credits = record.extras.get("kiro.credits")
    credits = float(credits) if isinstance(credits, int | float) and not isinstance(credits, bool) else None
    if provider in _CREDIT_PROVIDERS:
        return CallCost(unpriced_reason=Unpriced.CREDITS_ONLY, kiro_credits=credits)
    if record.input_tokens is None and record.output_tokens is None:
        return CallCost(unpriced_reason=Unpriced.NO_USAGE)
    if record.input_tokens is None or record.output_tokens is None:
        return CallCost(unpriced_reason=Unpriced.PARTIAL_USAGE)
    models = [m for m in dict.fromkeys((record.response_model, record.request.model)) if m]
    if not models:
        return CallCost(unpriced_reason=Unpriced.NO_MODEL)
    found = _provider(table, provider, upstream_url)
    if found is None:
        return CallCost(unpriced_reason=Unpriced.UNKNOWN_PROVIDER)
    model = _model(table, found, models)
    if model is None:
        return CallCost(unpriced_reason=Unpriced.UNKNOWN_MODEL)
    from genai_prices import Usage

    at = datetime.fromtimestamp(started_ns / 1e9, UTC)
    try:
        usage = Usage(input_tokens=record.input_tokens, output_tokens=record.output_tokens,
                      cache_read_tokens=record.cache_read, cache_write_tokens=record.cache_write,
                      output_reasoning_tokens=record.reasoning_tokens)
        price = model.calc_price(usage, found, genai_request_timestamp=at)
    except ValueError:
        return CallCost(unpriced_reason=Unpriced.INVALID_USAGE)
    return CallCost(usd=float(price.total_price), source=table.source(model))


def _provider(table: PriceTable, provider: str, upstream_url: str | None) -> Any:
    """genai-prices' provider: by the id the gateway's name maps to; a name the gateway has no id for, or `openai` at a
    host not OpenAI's (a compatible server: its host is the name here), by that exact id (a price file may give one),
    else by the upstream's URL."""
    providers = table.snapshot.providers
    host = (host_and_port(upstream_url)[0] or "") if upstream_url else ""
    if provider == "openai" and host and host != "openai.com" and not host.endswith(".openai.com"):
        provider = host
    provider_id = _PROVIDER_IDS.get(provider)
    if provider_id is not None:
        return next((p for p in providers if p.id == provider_id), None)
    found = next((p for p in providers if p.id == provider), None)
    if found is None and upstream_url:
        try:
            found = table.snapshot.find_provider(None, None, upstream_url)
        except LookupError:
            return None
    return found


#: (price snapshot, provider id, model ref) -> the model priced, or None: a model the table does not know was
#: looked up anew for every call, through every model's match clauses (about 0.2 ms per call in bench/)
_MODELS: dict[tuple[int, str, str], Any] = {}
_MODELS_MAX = 4096


def _model(table: PriceTable, provider: Any, refs: list[str]) -> Any:
    """The first of `refs` the provider prices (its fallback providers' models included), remembered."""
    for ref in refs:
        key = (id(table.snapshot), provider.id, ref)
        if key not in _MODELS:
            if len(_MODELS) >= _MODELS_MAX:
                _MODELS.clear()
            try:
                _MODELS[key] = table.snapshot.find_provider_model(ref, provider, None, None)[1]
            except LookupError:
                _MODELS[key] = None
        if _MODELS[key] is not None:
            return _MODELS[key]
    return None


@dataclass(slots=True)
class CostTotals:
    """A running total over calls, for turn and session spans: add each call's `CallCost`, then `attributes()`."""

    usd: float = 0.0
    priced_calls: int = 0
    unpriced_calls: int = 0
    kiro_credits: float | None = None

    def add(self, cost: CallCost) -> None:
        if cost.usd is not None:
            self.usd += cost.usd
            self.priced_calls += 1
        else:
            self.unpriced_calls += 1
        if cost.kiro_credits is not None:
            self.kiro_credits = (self.kiro_credits or 0.0) + cost.kiro_credits

    def attributes(self) -> Mapping[str, Any]:
        """`llm_gateway.usage.cost` (when any call was priced), `llm_gateway.cost.unpriced_calls` (when any was not),
        `llm_gateway.kiro.credits` (when any call reported credits)."""
        attributes: dict[str, Any] = {}
        if self.priced_calls:
            attributes[TOTAL_COST] = self.usd
        if self.unpriced_calls:
            attributes[UNPRICED_CALLS] = self.unpriced_calls
        if self.kiro_credits is not None:
            attributes[KIRO_CREDITS] = self.kiro_credits
        return attributes
