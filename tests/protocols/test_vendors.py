"""Vendors told by the upstream host (issue 14: `gen_ai.provider.name` is a well-known value, never a host)."""

from __future__ import annotations

import pytest
from opentelemetry.semconv._incubating.attributes.gen_ai_attributes import GenAiProviderNameValues

from llm_gateway.protocols import anthropic, vendors
from llm_gateway.protocols.base import HttpRequest


def test_every_vendor_name_is_a_well_known_provider_name() -> None:
    well_known = {value.value for value in GenAiProviderNameValues}
    named = {name for _, name in vendors._HOSTS}
    assert named <= well_known
    assert {vendors.vendor_for_host(url) for url in ("https://x.services.ai.azure.com",
                                                     "https://bedrock-runtime.eu-west-1.amazonaws.com")} <= well_known


@pytest.mark.parametrize(
    ("url", "provider"),
    [
        ("https://api.anthropic.com", "anthropic"),
        ("https://api.deepseek.com/anthropic", "deepseek"),
        ("http://127.0.0.1:9000", "anthropic"),  # a local Anthropic-compatible server: the protocol's vendor
        ("", "anthropic"),
    ],
)
def test_anthropic_protocol_at_a_vendor_host_is_that_vendor(url: str, provider: str) -> None:
    request = HttpRequest("POST", "/v1/messages", {}, b"{}", upstream_url=url)
    assert anthropic.ADAPTER.provider_name(request) == provider


@pytest.mark.parametrize("url", ["https://evil-openai.com", "https://openai.com.example.net", "https://aiplatform.googleapis.com.evil"])
def test_a_lookalike_host_is_not_the_vendor(url: str) -> None:
    assert vendors.vendor_for_host(url) is None
