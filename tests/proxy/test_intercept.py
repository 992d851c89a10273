"""The intercept list: the built-in provider hosts, LLM_GATEWAY_INTERCEPT additions, `none`, and patterns."""

from __future__ import annotations

import pytest

from llm_gateway.config import ConfigError
from llm_gateway.proxy.intercept import ADDED, PROVIDER_HOSTS, InterceptList


@pytest.mark.parametrize(("host", "upstream"), [
    ("api.anthropic.com", "anthropic"),
    ("API.ANTHROPIC.COM.", "anthropic"),
    ("api.openai.com", "openai"),
    ("chatgpt.com", "openai"),
    ("generativelanguage.googleapis.com", "gemini"),
    ("us-central1-aiplatform.googleapis.com", "gemini"),
    ("aiplatform.googleapis.com", "gemini"),
    ("cloudcode-pa.googleapis.com", "gemini"),
    ("bedrock-runtime.eu-west-3.amazonaws.com", "bedrock"),
    ("runtime.us-east-1.kiro.dev", "kiro"),
    ("management.eu-central-1.kiro.dev", "kiro"),
    ("q.us-east-1.amazonaws.com", "kiro"),
    ("codewhisperer.us-east-1.amazonaws.com", "kiro"),
    ("cps.prod-us-east-1.codewhisperer.ai.aws.dev", "kiro"),
    # not a provider's model endpoint: tunnelled
    ("github.com", None),
    ("statsig.anthropic.com", None),
    ("oidc.us-east-1.amazonaws.com", None),
    ("prod.us-east-1.auth.desktop.kiro.dev", None),
    ("bedrock-runtime.a.b.amazonaws.com", None),  # `*` stays inside one label
    ("evil-chatgpt.com", None),
    ("chatgpt.com.evil.example", None),
])
def test_builtin_hosts(host: str, upstream: str | None) -> None:
    assert InterceptList.from_env({}).upstream_of(host) == upstream


def test_added_hosts_go_to_default_and_leading_star_spans_labels() -> None:
    hosts = InterceptList.from_env({"LLM_GATEWAY_INTERCEPT": " llm.internal , *.example.com,127.0.0.1"})
    assert hosts.upstream_of("llm.internal") == ADDED
    assert hosts.upstream_of("a.example.com") == ADDED
    assert hosts.upstream_of("a.b.example.com") == ADDED
    assert hosts.upstream_of("example.com") is None
    assert hosts.upstream_of("127.0.0.1") == ADDED
    assert hosts.upstream_of("api.anthropic.com") == "anthropic"
    assert len(hosts) == len(PROVIDER_HOSTS) + 3


def test_none_drops_builtin_hosts_but_keeps_listed_ones() -> None:
    assert len(InterceptList.from_env({"LLM_GATEWAY_INTERCEPT": "none"})) == 0
    hosts = InterceptList.from_env({"LLM_GATEWAY_INTERCEPT": "none,llm.internal"})
    assert hosts.upstream_of("api.anthropic.com") is None
    assert hosts.upstream_of("llm.internal") == ADDED


@pytest.mark.parametrize("value", ["https://x.example", "a..b", "x.example/path", "x:443"])
def test_bad_entry_names_the_variable(value: str) -> None:
    with pytest.raises(ConfigError, match="LLM_GATEWAY_INTERCEPT"):
        InterceptList.from_env({"LLM_GATEWAY_INTERCEPT": value})
