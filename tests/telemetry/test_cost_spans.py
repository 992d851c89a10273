"""Cost on chat spans end to end (issue 18): recorded calls through the traced gateway (real sockets, the telemetry
process, a real OTLP receiver); each span's `gen_ai.usage.cost` against genai-prices' own figure for the recorded
usage at the span's start, the `llm_gateway.client.cost` metric, unpriced calls, Kiro's credits, the price file,
and a bad price file stopping `serve`."""

from __future__ import annotations

import asyncio
import io
import os
import sys
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import genai_prices
import orjson
import pytest
from genai_prices.types import ModelPrice

from llm_gateway.demo import play
from llm_gateway.recordings import Fixture, header, load
from tests.support import FIXTURES
from tests.support.chat_spans import chat_spans, event_frames
from tests.support.exchanges import send_recorded
from tests.support.otlp import OTLPReceiver, ReceivedSpan
from tests.support.recorded_cost import genai_prices_cost, recorded_usage

VERSION = f"genai-prices {genai_prices.__version__}"
#: OpenAI's calls go to the replay server: `openai` at a host not OpenAI's; this file gives that host OpenAI's prices
REPLAY_HOST_PRICES = {"id": "127.0.0.1", "name": "replay upstream", "api_pattern": "http://127\\.0\\.0\\.1",
                      "fallback_model_providers": ["openai"], "models": []}
CODEX = {"id": "gpt-5.6-codex", "match": {"starts_with": "gpt-5.6-codex"},
         "prices": {"input_mtok": 1.25, "cache_read_mtok": 0.125, "output_mtok": 10}}


def _started(span: ReceivedSpan) -> datetime:
    return datetime.fromtimestamp(span.start_ns / 1e9, UTC)


def _price_file(tmp_path: Path, *providers: dict) -> dict[str, str]:
    path = tmp_path / "prices.json"
    path.write_bytes(orjson.dumps(list(providers)))
    return {"LLM_GATEWAY_PRICES": str(path)}


async def _chat_span(traced_gateway, receiver: OTLPReceiver, name: str, index: int, env: dict | None = None):
    exchange = load(FIXTURES / f"{name}.json").exchanges[index]
    async with traced_gateway([Fixture([exchange], name=name)], extra_env=env) as (gateway, _):
        status, _ = await send_recorded(gateway.url, exchange)
    assert status == exchange.response.status
    (span,) = chat_spans(receiver.spans)  # gateway.stop() flushed everything
    return exchange, span


# (fixture, exchange, protocol, genai-prices provider, gen_ai.provider.name, needs the replay host's prices)
PRICED = [
    ("anthropic/composed-cache-usage", 0, "anthropic.messages", "anthropic", "anthropic", False),
    ("openai_chat/composed-n2-streaming", 0, "openai.chat", "openai", "openai", True),
    ("openai_responses/tool-loop-streaming", 0, "openai.responses", "openai", "openai", True),
    ("gemini/vertex-streaming", 0, "gemini", "google", "gcp.vertex_ai", False),
    ("bedrock/composed-reasoning-cache", 0, "bedrock", "aws", "aws.bedrock", False),
    ("bedrock/invoke-stream-anthropic-tool-loop", 0, "bedrock", "aws", "aws.bedrock", False),
]


@pytest.mark.parametrize(("name", "index", "protocol", "prices", "provider", "host_prices"), PRICED,
                         ids=[f"{n}#{i}" for n, i, *_ in PRICED])
async def test_chat_span_cost_is_genai_prices_figure_for_the_recorded_usage(
    traced_gateway, receiver: OTLPReceiver, tmp_path: Path, name: str, index: int, protocol: str, prices: str,
    provider: str, host_prices: bool,
) -> None:
    env = _price_file(tmp_path, REPLAY_HOST_PRICES) if host_prices else None
    exchange, span = await _chat_span(traced_gateway, receiver, name, index, env)
    attrs = span.attributes
    assert attrs["gen_ai.provider.name"] == provider
    expected = genai_prices_cost(exchange, protocol, prices, _started(span))
    assert expected > 0
    assert (attrs["gen_ai.usage.cost"], attrs["llm_gateway.cost.price_source"]) == (float(expected), VERSION)
    assert "llm_gateway.cost.unpriced_reason" not in attrs


async def test_cost_metric_sums_the_calls_with_the_token_usage_dimensions(traced_gateway, receiver: OTLPReceiver):
    fixture = load(FIXTURES / "anthropic/composed-cache-usage.json")
    async with traced_gateway([fixture]) as (gateway, _):
        for exchange in fixture.exchanges:
            await send_recorded(gateway.url, exchange)
    spans = chat_spans(receiver.spans)
    assert len(spans) == len(fixture.exchanges)
    metric = receiver.metrics["llm_gateway.client.cost"][-1]  # cumulative: the last export has the totals
    assert metric.unit == "USD" and metric.sum.is_monotonic
    points = {tuple(sorted((kv.key, kv.value.string_value or kv.value.int_value) for kv in p.attributes)): p.as_double
              for p in metric.sum.data_points}
    token_dims = {kv.key for m in receiver.metrics["gen_ai.client.token.usage"] for p in m.histogram.data_points
                  for kv in p.attributes} - {"gen_ai.token.type"}
    assert {key for dims in points for key, _ in dims} == token_dims
    assert sum(points.values()) == pytest.approx(sum(s.attributes["gen_ai.usage.cost"] for s in spans), rel=1e-12)


async def test_unnamed_host_without_prices_is_unpriced(traced_gateway, receiver: OTLPReceiver) -> None:
    _, span = await _chat_span(traced_gateway, receiver, "openai_chat/composed-n2-streaming", 0)
    assert span.attributes["llm_gateway.cost.unpriced_reason"] == "unknown_provider"
    assert "gen_ai.usage.cost" not in span.attributes and "llm_gateway.cost.price_source" not in span.attributes
    # No SDK instrument recorded the call (no cost): its histograms, which the gateway aggregates itself, are
    # exported anyway, beside the sessions open, which the SDK reads at every collection
    assert "llm_gateway.client.cost" not in receiver.metric_names
    (duration,) = receiver.metrics["gen_ai.client.operation.duration"][-1].histogram.data_points
    assert duration.count == 1 and 0 < duration.sum < 60
    (sessions,) = receiver.metrics["llm_gateway.sessions.open"][-1].sum.data_points
    assert sessions.as_int == 0  # the export at shutdown, which ended the session


async def test_unknown_model_is_unpriced_with_its_reason(traced_gateway, receiver: OTLPReceiver, tmp_path: Path):
    env = _price_file(tmp_path, REPLAY_HOST_PRICES)
    _, span = await _chat_span(traced_gateway, receiver, "openai_responses/composed-custom-tool-call", 0, env)
    assert span.attributes["gen_ai.request.model"] == "gpt-5.6-codex"
    assert span.attributes["gen_ai.usage.input_tokens"] > 0
    assert span.attributes["llm_gateway.cost.unpriced_reason"] == "unknown_model"
    assert "gen_ai.usage.cost" not in span.attributes


async def test_price_file_prices_a_model_the_table_lacks(traced_gateway, receiver: OTLPReceiver, tmp_path: Path):
    env = _price_file(tmp_path, {**REPLAY_HOST_PRICES, "models": [CODEX]})
    exchange, span = await _chat_span(traced_gateway, receiver, "openai_responses/composed-custom-tool-call", 0, env)
    usage, _ = recorded_usage(exchange, "openai.responses")
    prices = {key: Decimal(str(value)) for key, value in CODEX["prices"].items()}
    expected = ModelPrice(**prices).calc_price(usage)["total_price"]
    assert span.attributes["gen_ai.usage.cost"] == float(expected)
    assert span.attributes["llm_gateway.cost.price_source"] == f"{VERSION} + {env['LLM_GATEWAY_PRICES']}"


async def test_kiro_calls_carry_their_credits_and_no_usd(traced_gateway, receiver: OTLPReceiver) -> None:
    fixture = load(FIXTURES / "kiro/cli-2.4.1-session.json")
    async with traced_gateway([fixture]) as (gateway, _):
        await play(gateway.url, fixture, io.StringIO())
    calls = [e for e in fixture.exchanges
             if (header(e.request.headers, "x-amz-target") or "").endswith("GenerateAssistantResponse")]
    credits = [next((p["usage"] for kind, p in event_frames(e.response.body) if kind == "meteringEvent"), None)
               for e in calls]
    spans = chat_spans(receiver.spans)
    assert len(spans) == len(calls) and any(credits)
    for span, recorded in zip(spans, credits, strict=True):
        assert span.attributes.get("llm_gateway.kiro.credits") == recorded
        assert span.attributes["llm_gateway.cost.unpriced_reason"] == "credits_only"
        assert "gen_ai.usage.cost" not in span.attributes


async def test_bad_price_file_stops_serve_with_the_file_and_the_problem(tmp_path: Path) -> None:
    prices = tmp_path / "prices.yaml"
    prices.write_text("id: openai\nmodels:\n- {id: m, match: {equals: m}, prices: {input_mtoks: 1}}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "LLM_GATEWAY_"))}
    env.update({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9", "LLM_GATEWAY_PRICES": str(prices)})
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "llm_gateway", "serve", "--port", "0", env=env, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    _, stderr = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 2
    assert stderr.decode() == (f"llm-gateway: LLM_GATEWAY_PRICES={prices}: provider 'openai', model 'm': "
                               "Unsupported price key for standard pricing: input_mtoks\n")
