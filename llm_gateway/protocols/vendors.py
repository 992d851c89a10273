"""`gen_ai.provider.name` of a vendor that serves another vendor's wire protocol, told by the upstream's host.

Many vendors answer the OpenAI protocol (and some the Anthropic one) at their own hosts. The conventions have a
well-known name for several of them; a host none of those is has no name of its own: its adapter names the
protocol's vendor (as the official OpenAI instrumentation names any server its client talks to), and the host stays
in `server.address`. A host is never a provider name.
"""

from __future__ import annotations

import functools
from urllib.parse import urlsplit

#: (host suffix, gen_ai.provider.name); a host matches its suffix exactly or as a subdomain. The names are the
#: conventions' well-known values (`GenAiProviderNameValues`; adapters import no OpenTelemetry, a test compares).
_HOSTS = (
    ("openai.azure.com", "azure.ai.openai"),
    ("cognitiveservices.azure.com", "azure.ai.openai"),
    ("openai.com", "openai"),
    ("anthropic.com", "anthropic"),
    ("groq.com", "groq"),
    ("deepseek.com", "deepseek"),
    ("mistral.ai", "mistral_ai"),
    ("x.ai", "x_ai"),
    ("perplexity.ai", "perplexity"),
    ("cohere.ai", "cohere"),
    ("cohere.com", "cohere"),
    ("ml.cloud.ibm.com", "ibm.watsonx.ai"),
    ("generativelanguage.googleapis.com", "gcp.gemini"),  # Gemini's OpenAI-compatible endpoint
    ("aiplatform.googleapis.com", "gcp.vertex_ai"),  # also regional: us-central1-aiplatform.googleapis.com
)
#: Azure AI Foundry hosts: the Azure AI Inference API, or Azure OpenAI under an `/openai/` path
_FOUNDRY_HOSTS = ("services.ai.azure.com", "models.ai.azure.com")


@functools.lru_cache(maxsize=256)  # twice per model call, with the few upstream URLs a gateway has
def vendor_for_host(url: str, path: str = "") -> str | None:
    """The well-known provider name the upstream base `url` (and the request `path`) tells, or None."""
    host = (urlsplit(url).hostname or "").lower()
    if not host:
        return None
    for suffix, name in _HOSTS:
        if _under(host, suffix):
            return name
    if any(_under(host, suffix) for suffix in _FOUNDRY_HOSTS):
        openai_path = "/openai/" in f"{urlsplit(url).path}/{path}"
        return "azure.ai.openai" if openai_path else "azure.ai.inference"
    if host.startswith(("bedrock-runtime.", "bedrock-mantle.")):  # Bedrock's OpenAI-compatible endpoints
        return "aws.bedrock"
    return None


def _under(host: str, suffix: str) -> bool:
    return host == suffix or host.endswith(("." + suffix, "-" + suffix) if suffix.startswith("aiplatform.") else
                                           "." + suffix)
