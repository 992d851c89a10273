"""Every provider protocol the gateway knows, one `Provider` entry each in `PROVIDERS`.

An entry names the wire protocol, the upstream it goes to (`--upstream NAME=URL` replaces that upstream's default
URL), a classifier that recognizes its requests, and the adapter module that parses them (`protocols/base.py`
says what an adapter is). Adding a provider is its adapter module plus one entry here (CONTRIBUTING.md).

Classifiers look at the method, the path and the `ROUTING_HEADERS` only (`X-Amz-Target` for AWS JSON protocols,
`anthropic-version` for the `/v1/` paths Anthropic shares with OpenAI, `Upgrade` for Codex's WebSocket), never the
body, so routing costs a few string comparisons, and the router can remember its answers by those alone. A path
may carry a prefix before the provider's own path (an OpenRouter- or Azure-style base URL on the client side), so
the OpenAI and Ollama rules match on the path's end.
"""

from __future__ import annotations

import enum
import functools
import importlib
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from llm_gateway.routing.kiro import KIRO_HOSTS, KiroUpstream

if TYPE_CHECKING:
    from llm_gateway.protocols.base import Adapter


class Kind(enum.Enum):
    #: a model call: traced as a chat span when tracing is on
    CALL = "call"
    #: another operation of the same API (model lists, token counts, telemetry): relayed, not traced as a call
    RELAY = "relay"


#: (method, raw path, headers) -> what the request is to this protocol, or None when it is not one of its requests;
#: of the headers it reads ROUTING_HEADERS alone
Classifier = Callable[[str, str, Mapping[str, str]], Kind | None]
ROUTING_HEADERS = ("x-amz-target", "anthropic-version", "upgrade")


class UpstreamChooser(Protocol):
    """Picks the base URL of each request, for an upstream that is more than one URL (Kiro's, per operation and
    region). Used only while the user has not set that upstream's URL."""

    def base_url(self, path: str, headers: Mapping[str, str]) -> tuple[str, bool]:
        """The base URL, and whether the request body may change it (then `base_url_from_body` is asked)."""
        ...

    def base_url_from_body(self, path: str, headers: Mapping[str, str], body: bytes) -> str | None:
        """The base URL the body tells, or None to keep the one `base_url` gave."""
        ...


@dataclass(frozen=True, slots=True)
class Provider:
    """One wire protocol the gateway recognizes. An MCP route carries one too (no URL, no adapter)."""

    #: the wire protocol, e.g. "anthropic.messages"; the `llm_gateway.protocol` span attribute
    name: str
    #: the upstream's name, shared by one vendor's protocols (both OpenAI APIs go to "openai")
    upstream: str
    classify: Classifier
    #: the upstream's default base URL (no trailing slash), or a function of the environment that gives it
    default_url: str | Callable[[Mapping[str, str]], str] = ""
    #: the module whose `ADAPTER` parses this protocol's model calls, imported on first use; None: never parsed
    adapter: str | None = None
    #: builds an `UpstreamChooser` from the environment; None: every request goes to the upstream's one URL
    chooser: Callable[[Mapping[str, str]], UpstreamChooser] | None = None
    #: the public hosts the HTTPS forward proxy reads for this upstream (`*` is part of one DNS label)
    hosts: tuple[str, ...] = ()


def _kiro_kind(method: str, path: str, headers: Mapping[str, str]) -> Kind | None:
    target = headers.get("x-amz-target", "")
    if target.startswith(("AmazonCodeWhisperer", "KiroRuntimeService", "AmazonQDeveloper", "KiroControlPlane",
                          "KiroManagement")):
        if target.endswith((".GenerateAssistantResponse", ".SendMessage")):
            return Kind.CALL
        return Kind.RELAY
    if path.startswith("/generateAssistantResponse"):
        return Kind.CALL
    return None


_BEDROCK_CALLS = ("/converse", "/converse-stream", "/invoke", "/invoke-with-response-stream")


def _bedrock_kind(method: str, path: str, headers: Mapping[str, str]) -> Kind | None:
    if path.startswith("/model/"):
        return Kind.CALL if method == "POST" and _path_only(path).endswith(_BEDROCK_CALLS) else Kind.RELAY
    if path.startswith(("/guardrail/", "/async-invoke")):
        return Kind.RELAY
    return None


# Vertex AI paths start with /v1/projects/: claimed here before OpenAI's broad /v1/ fallback takes them.
_GEMINI_PREFIXES = ("/v1beta/", "/v1alpha/", "/upload/v1beta/", "/v1/projects/", "/v1beta1/projects/")


def _gemini_kind(method: str, path: str, headers: Mapping[str, str]) -> Kind | None:
    bare = _path_only(path)
    if bare.endswith((":generateContent", ":streamGenerateContent")):
        return Kind.CALL if method == "POST" else Kind.RELAY
    if path.startswith(_GEMINI_PREFIXES) or ":" in bare.rpartition("/")[2]:
        return Kind.RELAY
    return None


def _anthropic_kind(method: str, path: str, headers: Mapping[str, str]) -> Kind | None:
    if path.startswith(("/v1/messages", "/v1/complete")):
        return Kind.CALL if method == "POST" and _path_only(path) == "/v1/messages" else Kind.RELAY
    if path.startswith("/v1/") and "anthropic-version" in headers:
        # /v1/models, /v1/files ... exist at OpenAI too; every Anthropic client sends this header, and without
        # it the OpenAI fallback below would send the Anthropic key to the OpenAI upstream.
        return Kind.RELAY
    return None


def _openai_chat_kind(method: str, path: str, headers: Mapping[str, str]) -> Kind | None:
    if _path_only(path).endswith("/chat/completions"):
        return Kind.CALL if method == "POST" else Kind.RELAY
    return None


def _openai_responses_kind(method: str, path: str, headers: Mapping[str, str]) -> Kind | None:
    bare = _path_only(path)
    if bare.endswith("/responses"):
        # Codex opens a WebSocket with GET on the same path: its messages carry model calls
        # (`protocols/responses_socket.py`).
        if method == "POST" or headers.get("upgrade", "").lower() == "websocket":
            return Kind.CALL
        return Kind.RELAY
    if path.startswith(("/v1/", "/openai/")):
        return Kind.RELAY  # models, embeddings, files, response retrieval ...; /openai/ is Azure's prefix
    return None


def _ollama_kind(method: str, path: str, headers: Mapping[str, str]) -> Kind | None:
    bare = _path_only(path)
    if bare.endswith(("/api/chat", "/api/generate")):  # Open WebUI serves Ollama under /ollama/api/
        return Kind.CALL if method == "POST" else Kind.RELAY
    if bare.startswith("/api/"):
        return Kind.RELAY
    return None


def _path_only(path: str) -> str:
    return path.partition("?")[0]


def _bedrock_url(env: Mapping[str, str]) -> str:
    region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1"
    return f"https://bedrock-runtime.{region}.amazonaws.com"


_OPENAI = "https://api.openai.com"  # both OpenAI protocols go to one upstream: one URL

# Order matters: header-routed Kiro first, then the specific paths, then the broad `/v1/` fallback of OpenAI, then
# Ollama's `/api/` (after OpenAI, which owns `/api/v1/chat/completions`).
PROVIDERS: tuple[Provider, ...] = (
    Provider("kiro", "kiro", _kiro_kind, KIRO_HOSTS, "llm_gateway.protocols.kiro", chooser=KiroUpstream,
             hosts=("runtime.*.kiro.dev",  # Kiro model calls
                    "management.*.kiro.dev",  # Kiro control plane: models, profiles, usage
                    "q.*.amazonaws.com",  # Amazon Q / older Kiro: model calls, model lists, telemetry
                    "codewhisperer.*.amazonaws.com",  # CodeWhisperer's older endpoint
                    "cps.*.codewhisperer.ai.aws.dev")),  # Kiro CLI's control plane in some versions
    Provider("bedrock", "bedrock", _bedrock_kind, _bedrock_url, "llm_gateway.protocols.bedrock",
             hosts=("bedrock-runtime.*.amazonaws.com", "bedrock-runtime-fips.*.amazonaws.com")),
    Provider("gemini", "gemini", _gemini_kind, "https://generativelanguage.googleapis.com",
             "llm_gateway.protocols.gemini",
             hosts=("generativelanguage.googleapis.com",
                    "aiplatform.googleapis.com",  # Vertex AI, global endpoint
                    "*-aiplatform.googleapis.com",  # Vertex AI, regional: us-central1-aiplatform...
                    "cloudcode-pa.googleapis.com")),  # Gemini CLI signed in with Google (Code Assist)
    Provider("anthropic.messages", "anthropic", _anthropic_kind, "https://api.anthropic.com",
             "llm_gateway.protocols.anthropic", hosts=("api.anthropic.com",)),
    Provider("openai.chat", "openai", _openai_chat_kind, _OPENAI, "llm_gateway.protocols.openai_chat",
             hosts=("api.openai.com",
                    "chatgpt.com")),  # Codex signed in with ChatGPT: /backend-api/codex/responses
    Provider("openai.responses", "openai", _openai_responses_kind, _OPENAI, "llm_gateway.protocols.openai_responses"),
    Provider("ollama", "ollama", _ollama_kind, "http://127.0.0.1:11434", "llm_gateway.protocols.ollama"),
)

#: the names `--upstream NAME=URL` accepts (besides "default")
UPSTREAM_NAMES: tuple[str, ...] = tuple(sorted({p.upstream for p in PROVIDERS}))
_BY_NAME = {p.name: p for p in PROVIDERS}


#: `/mcp/NAME...` relays to the streamable HTTP MCP server named NAME (`--mcp NAME=URL`): its route's provider is
#: named "mcp", with NAME as its upstream.
MCP_PROTOCOL = "mcp"


def _mcp_kind(method: str, path: str, headers: Mapping[str, str]) -> Kind | None:
    return Kind.RELAY  # relayed whole; the MCP observer reads the JSON-RPC inside


def mcp_provider(server: str) -> Provider:
    return Provider(MCP_PROTOCOL, server, _mcp_kind)


def protocol_named(name: str, upstream: str) -> Provider | None:
    """The provider a route names (its classifier is a function, so a route travels as names, not as objects)."""
    return mcp_provider(upstream) if name == MCP_PROTOCOL else _BY_NAME.get(name)


def default_upstreams(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """Upstream name -> its default base URL."""
    env = os.environ if env is None else env
    urls: dict[str, str] = {}
    for provider in PROVIDERS:
        url = provider.default_url
        urls.setdefault(provider.upstream, url(env) if callable(url) else url)
    return urls


@functools.cache  # every traced call asks: the import machinery's lookup is not free
def adapter_for(protocol: str) -> Adapter | None:
    """The adapter of the protocol named `protocol`, or None when it has none (or it cannot be loaded)."""
    provider = _BY_NAME.get(protocol)
    if provider is None or provider.adapter is None:
        return None
    try:
        return importlib.import_module(provider.adapter).ADAPTER
    except (ImportError, AttributeError):
        return None
