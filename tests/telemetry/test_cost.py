"""Cost of a model call (issue 18), sans-IO: each recorded call's record, as its adapter builds it, priced by
`call_cost`, against genai-prices' own calculation from the recorded response's usage (`recorded_cost`); the
reasons a call stays unpriced; the price file; running totals."""

from __future__ import annotations

import dataclasses
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import genai_prices
import orjson
import pytest
import yaml
from genai_prices import Usage, calc_price
from genai_prices.types import ModelPrice, TieredPrices
from multidict import CIMultiDict

from llm_gateway.config import Settings
from llm_gateway.protocols.exchange import ChatRecord, ChatRequest
from llm_gateway.recordings import load
from llm_gateway.routing import Router, adapter_for
from llm_gateway.telemetry.cost import (
    KIRO_CREDITS,
    PRICE_SOURCE,
    TOTAL_COST,
    UNPRICED_CALLS,
    UNPRICED_REASON,
    USAGE_COST,
    CallCost,
    CostTotals,
    Unpriced,
    call_cost,
)
from llm_gateway.telemetry.prices import ENV_PRICES, PriceFileError, bundled_table, check_price_file, price_table
from tests.support import FIXTURES
from tests.support.recorded_cost import genai_prices_cost, recorded_usage
from tests.support.records import http_request, run_exchange

VERSION = f"genai-prices {genai_prices.__version__}"
NOW_NS = time.time_ns()


def _recorded_call(name: str, index: int) -> tuple[ChatRecord, str, str, str]:
    """(record, gen_ai.provider.name, protocol, upstream URL) of a recorded call sent to its default upstream."""
    exchange = load(FIXTURES / f"{name}.json").exchanges[index]
    request = exchange.request
    route = Router(Settings()).resolve(request.method, request.path, CIMultiDict(request.headers))
    assert route is not None and route.protocol is not None
    adapter = adapter_for(route.protocol.name)
    assert adapter is not None
    record = run_exchange(adapter, exchange, upstream_url=route.base_url)
    provider = adapter.provider_name(http_request(exchange, route.base_url))
    return record, provider, route.protocol.name, route.base_url


def _at(ns: int) -> datetime:
    return datetime.fromtimestamp(ns / 1e9, UTC)


# (fixture, exchange, genai-prices provider whose prices apply, the token kinds the recording has beyond input/output)
RECORDED = [
    ("anthropic/composed-cache-usage", 0, "anthropic", "cache read and write"),
    ("anthropic/composed-cache-usage", 2, "anthropic", "cache read and write, usage split over two events"),
    ("anthropic/thinking-streaming", 0, "anthropic", "thinking"),
    ("anthropic/tools-history-gzip", 0, "anthropic", "cache counts 0"),
    ("openai_chat/composed-n2-streaming", 0, "openai", "cached, reasoning 0"),
    ("openai_chat/tool-loop", 0, "openai", "cached and reasoning 0"),
    ("openai_responses/tool-loop-streaming", 0, "openai", "cached and reasoning 0"),
    ("gemini/vertex-streaming", 0, "google", "thoughts"),
    ("gemini/reasoning-parallel-tools", 0, "google", "thoughts"),
    ("gemini/composed-code-assist-stream", 1, "google", "cached and thoughts, tiered prices"),
    ("bedrock/converse-stream-tool-loop", 0, "aws", "Converse stream"),
    ("bedrock/converse-tool-loop", 0, "aws", "Converse"),
    ("bedrock/invoke-stream-anthropic-tool-loop", 0, "aws", "InvokeModel stream, Anthropic body"),
    ("bedrock/composed-reasoning-cache", 0, "aws", "cache read and write, inference profile ARN"),
]


@pytest.mark.parametrize(("name", "index", "prices", "kinds"), RECORDED, ids=[f"{n}#{i}" for n, i, *_ in RECORDED])
def test_recorded_call_costs_what_genai_prices_computes_from_the_recorded_usage(
    name: str, index: int, prices: str, kinds: str
) -> None:
    record, provider, protocol, upstream = _recorded_call(name, index)
    cost = call_cost(bundled_table(), provider, record, NOW_NS, upstream)
    exchange = load(FIXTURES / f"{name}.json").exchanges[index]
    expected = genai_prices_cost(exchange, protocol, prices, _at(NOW_NS))
    assert expected > 0
    assert cost == CallCost(usd=float(expected), source=VERSION)
    assert cost.attributes() == {USAGE_COST: float(expected), PRICE_SOURCE: VERSION}


def test_cache_and_reasoning_are_priced_apart_not_as_plain_input_and_output() -> None:
    """The token rule: the record's input holds the cache reads and writes; each is charged once, at its own price."""
    record, provider, _, upstream = _recorded_call("anthropic/composed-cache-usage", 0)
    assert record.cache_read and record.cache_write and record.input_tokens
    plain = calc_price(Usage(input_tokens=record.input_tokens, output_tokens=record.output_tokens),
                       record.response_model, provider_id="anthropic", genai_request_timestamp=_at(NOW_NS))
    cost = call_cost(bundled_table(), provider, record, NOW_NS, upstream)
    assert cost.usd is not None and cost.usd < float(plain.total_price)


def test_long_context_tier_is_chosen_by_the_whole_input_cache_included() -> None:
    record, provider, _, upstream = _recorded_call("gemini/composed-code-assist-stream", 1)
    long = dataclasses.replace(record, input_tokens=250_000, cache_read=240_000)
    usage = Usage(input_tokens=250_000, cache_read_tokens=240_000, output_tokens=record.output_tokens,
                  output_reasoning_tokens=record.reasoning_tokens)
    model_price = calc_price(usage, "gemini-2.5-pro", provider_id="google").model_price
    assert isinstance(model_price.input_mtok, TieredPrices)  # the table has a long-context tier for this model
    expected = calc_price(usage, "gemini-2.5-pro", provider_id="google", genai_request_timestamp=_at(NOW_NS))
    # Were only the 10,000 uncached tokens counted, the base rate would apply and the figures would differ.
    assert call_cost(bundled_table(), provider, long, NOW_NS, upstream).usd == float(expected.total_price)


def test_the_price_in_force_when_the_call_was_made_applies() -> None:
    """deepseek-chat has an off-peak price (UTC 16:30-00:30) and a standard one."""
    record = ChatRecord(ChatRequest(model="deepseek-chat"), input_tokens=1_000_000, output_tokens=0)
    peak = datetime(2025, 7, 1, 12, 0, tzinfo=UTC)
    off_peak = datetime(2025, 7, 1, 20, 0, tzinfo=UTC)
    costs = {at: call_cost(bundled_table(), "deepseek", record, int(at.timestamp() * 1e9)).usd
             for at in (peak, off_peak)}
    assert costs[peak] != costs[off_peak]
    for at, usd in costs.items():
        expected = calc_price(Usage(input_tokens=1_000_000, output_tokens=0), "deepseek-chat",
                              provider_id="deepseek", genai_request_timestamp=at)
        assert usd == float(expected.total_price)


@pytest.mark.parametrize(
    ("provider", "record", "reason"),
    [
        ("openai", ChatRecord(ChatRequest(model="gpt-5.6-codex"), input_tokens=10, output_tokens=5),
         Unpriced.UNKNOWN_MODEL),
        ("ollama", ChatRecord(ChatRequest(model="llama3.1"), input_tokens=10, output_tokens=5),
         Unpriced.UNKNOWN_PROVIDER),
        ("127.0.0.1", ChatRecord(ChatRequest(model="gpt-4o"), input_tokens=10, output_tokens=5),
         Unpriced.UNKNOWN_PROVIDER),
        ("openai", ChatRecord(ChatRequest(model="gpt-4o")), Unpriced.NO_USAGE),
        ("openai", ChatRecord(ChatRequest(model="gpt-4o"), input_tokens=10), Unpriced.PARTIAL_USAGE),
        ("openai", ChatRecord(ChatRequest(), input_tokens=10, output_tokens=5), Unpriced.NO_MODEL),
        ("anthropic", ChatRecord(ChatRequest(model="claude-sonnet-4-5"), input_tokens=10, output_tokens=5,
                                 cache_read=20), Unpriced.INVALID_USAGE),
        ("aws.kiro", ChatRecord(ChatRequest(model="claude-sonnet-4.5"), input_tokens=10, output_tokens=5),
         Unpriced.CREDITS_ONLY),
    ],
    ids=["unknown model", "ollama", "unnamed host", "no usage", "no output count", "no model", "cache > input",
         "kiro"],
)
def test_unpriced_call_has_a_reason_and_no_cost(provider: str, record: ChatRecord, reason: str) -> None:
    cost = call_cost(bundled_table(), provider, record, NOW_NS)
    assert (cost.usd, cost.unpriced_reason) == (None, reason)
    assert cost.attributes() == {UNPRICED_REASON: reason}


def test_recorded_unknown_model_is_unpriced() -> None:
    record, provider, _, upstream = _recorded_call("openai_responses/composed-custom-tool-call", 0)
    assert record.request.model == "gpt-5.6-codex" and record.input_tokens
    assert call_cost(bundled_table(), provider, record, NOW_NS, upstream).unpriced_reason == Unpriced.UNKNOWN_MODEL


def test_kiro_call_keeps_its_credits_and_gets_no_usd() -> None:
    record, provider, _, upstream = _recorded_call("kiro/cli-2.4.1-session", 1)
    credits = record.extras["kiro.credits"]
    assert provider == "aws.kiro" and isinstance(credits, float)
    assert call_cost(bundled_table(), provider, record, NOW_NS, upstream) == CallCost(
        unpriced_reason=Unpriced.CREDITS_ONLY, kiro_credits=credits)


def test_unnamed_host_is_priced_by_its_url_as_genai_prices_knows_it() -> None:
    """An OpenAI-compatible server the conventions have no name for is `openai` at its host (issue 14): OpenRouter
    is priced as OpenRouter, not as OpenAI."""
    record = ChatRecord(ChatRequest(model="openai/gpt-4o"), input_tokens=1000, output_tokens=100)
    cost = call_cost(bundled_table(), "openai", record, NOW_NS, "https://openrouter.ai/api")
    expected = calc_price(Usage(input_tokens=1000, output_tokens=100), "openai/gpt-4o", provider_id="openrouter",
                          genai_request_timestamp=_at(NOW_NS))
    assert cost.usd == float(expected.total_price)


def test_openai_at_an_unknown_host_is_not_priced_as_openai() -> None:
    record = ChatRecord(ChatRequest(model="gpt-4o"), input_tokens=1000, output_tokens=100)
    cost = call_cost(bundled_table(), "openai", record, NOW_NS, "http://vllm.lan:8000/v1")
    assert cost.unpriced_reason == Unpriced.UNKNOWN_PROVIDER
    assert call_cost(bundled_table(), "openai", record, NOW_NS, "https://api.openai.com").usd


# ------------------------------------------------------------------------------------------ the price file

CODEX_PRICES = {"input_mtok": 1.25, "cache_read_mtok": 0.125, "output_mtok": 10}


def _price_file(tmp_path: Path, document: object, name: str = "prices.yaml") -> dict[str, str]:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(document) if name.endswith(".yaml") else orjson.dumps(document).decode())
    return {ENV_PRICES: str(path)}


def test_price_file_adds_a_model_the_table_does_not_know(tmp_path: Path) -> None:
    env = _price_file(tmp_path, {"id": "openai", "models": [
        {"id": "gpt-5.6-codex", "match": {"starts_with": "gpt-5.6-codex"}, "prices": CODEX_PRICES}]})
    record, provider, protocol, upstream = _recorded_call("openai_responses/composed-custom-tool-call", 0)
    cost = call_cost(price_table(env), provider, record, NOW_NS, upstream)
    exchange = load(FIXTURES / "openai_responses/composed-custom-tool-call.json").exchanges[0]
    usage, _ = recorded_usage(exchange, protocol)
    assert usage.cache_read_tokens and usage.output_reasoning_tokens  # the recording has both
    expected = ModelPrice(**{k: Decimal(str(v)) for k, v in CODEX_PRICES.items()}).calc_price(usage)["total_price"]
    assert cost == CallCost(usd=float(expected), source=f"{VERSION} + {env[ENV_PRICES]}")


def test_price_file_overrides_a_price_the_table_has(tmp_path: Path) -> None:
    """A negotiated rate: the file's model comes first; other models of the provider keep the table's prices."""
    negotiated = {"input_mtok": 1, "output_mtok": 2, "cache_read_mtok": 0.1, "cache_write_mtok": 1.5}
    env = _price_file(tmp_path, [{"id": "anthropic", "models": [
        {"id": "sonnet-negotiated", "match": {"starts_with": "claude-sonnet-4-5"}, "prices": negotiated}]}],
        name="prices.json")
    record, provider, protocol, upstream = _recorded_call("anthropic/composed-cache-usage", 0)
    exchange = load(FIXTURES / "anthropic/composed-cache-usage.json").exchanges[0]
    usage, _ = recorded_usage(exchange, protocol)
    expected = ModelPrice(**{k: Decimal(str(v)) for k, v in negotiated.items()}).calc_price(usage)["total_price"]
    assert call_cost(price_table(env), provider, record, NOW_NS, upstream).usd == float(expected)
    other, provider, _, upstream = _recorded_call("anthropic/thinking-streaming", 0)
    assert call_cost(price_table(env), provider, other, NOW_NS, upstream) == call_cost(
        bundled_table(), provider, other, NOW_NS, upstream)


def test_price_file_adds_a_provider_for_an_unnamed_host(tmp_path: Path) -> None:
    """A host the gateway has no name for gets OpenAI's list prices from a provider of that id."""
    env = _price_file(tmp_path, {"id": "llm.corp.example", "name": "Corp proxy", "api_pattern": "https://llm\\.corp",
                                 "fallback_model_providers": ["openai"], "models": []})
    record = ChatRecord(ChatRequest(model="gpt-4o"), input_tokens=1000, output_tokens=100)
    cost = call_cost(price_table(env), "openai", record, NOW_NS, "https://llm.corp.example/v1")
    expected = calc_price(Usage(input_tokens=1000, output_tokens=100), "gpt-4o", provider_id="openai",
                          genai_request_timestamp=_at(NOW_NS))
    assert cost == CallCost(usd=float(expected.total_price), source=VERSION)


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("id: [unclosed\n", "not YAML: expected ',' or ']'"),
        ("42\n", "expected a provider"),
        ("- name: no id\n", "provider 1 has no id"),
        ("id: newco\nmodels: []\n", "provider 'newco': name: Field required"),
        ("id: openai\nmodels:\n- {id: m, match: {equals: m}, prices: {input_mtok: abc}}\n",
         "provider 'openai', model 'm': input_mtok"),
        ("id: openai\nmodels:\n- {id: m, match: {equals: m}, prices: {input_mtoks: 1}}\n",
         "provider 'openai', model 'm': Unsupported price key for standard pricing: input_mtoks"),
        ("id: openai\nmodels:\n- {id: m, match: {equals: m}, prices: {cache_read_mtok: 1}}\n",
         "provider 'openai', model 'm': Missing ancestor price for cache_read_tokens: input_tokens"),
        ("id: openai\nmodels:\n- {id: m, prices: {input_mtok: 1}}\n", "provider 'openai', model 'm': match"),
    ],
    ids=["yaml syntax", "not a provider", "no id", "new provider without name", "price not a number",
         "unknown price key", "cache price without input price", "model without match"],
)
def test_bad_price_file_is_refused_with_the_file_and_the_problem(tmp_path: Path, content: str, problem: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(content)
    with pytest.raises(PriceFileError) as refused:
        check_price_file({ENV_PRICES: str(path)})
    assert str(refused.value).startswith(f"{ENV_PRICES}={path}: ")
    assert problem in str(refused.value)
    assert "\n" not in str(refused.value)


def test_missing_or_invalid_json_price_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(PriceFileError, match=r"missing\.yaml: No such file"):
        check_price_file({ENV_PRICES: str(tmp_path / "missing.yaml")})
    (tmp_path / "bad.json").write_text('{"id": ')
    with pytest.raises(PriceFileError, match=r"bad\.json: not JSON"):
        check_price_file({ENV_PRICES: str(tmp_path / "bad.json")})


def test_no_price_file_is_the_bundled_table() -> None:
    assert price_table({}) is bundled_table() and price_table({ENV_PRICES: " "}) is bundled_table()
    assert bundled_table().version == VERSION


# ------------------------------------------------------------------------------------------ totals


def test_totals_add_priced_calls_count_unpriced_ones_and_sum_kiro_credits() -> None:
    totals = CostTotals()
    assert totals.attributes() == {}
    for cost in (CallCost(usd=0.25, source=VERSION), CallCost(unpriced_reason=Unpriced.UNKNOWN_MODEL),
                 CallCost(usd=0.5, source=VERSION)):
        totals.add(cost)
    assert totals.attributes() == {TOTAL_COST: 0.75, UNPRICED_CALLS: 1}
    kiro = CostTotals()
    for credits in (0.5, None, 0.25):
        kiro.add(CallCost(unpriced_reason=Unpriced.CREDITS_ONLY, kiro_credits=credits))
    assert kiro.attributes() == {UNPRICED_CALLS: 3, KIRO_CREDITS: 0.75}
