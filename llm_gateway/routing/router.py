"""Which upstream a request goes to, and whether it is a model call worth tracing.

Each provider protocol declares the requests it recognizes and its default upstream. Matching looks at the
method, the path and two headers only (`X-Amz-Target` for AWS JSON protocols, `anthropic-version` for the
`/v1/` paths Anthropic shares with OpenAI), never the body, so routing costs a few string comparisons. A path
may carry a prefix before the provider's own path (an OpenRouter- or Azure-style base URL on the client side),
so the OpenAI and Ollama rules match on the path's end.
"""

from __future__ import annotations

import enum
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol as _Interface

from llm_gateway.config import ConfigError, Settings
from llm_gateway.routing.kiro import KiroUpstream


class Kind(enum.Enum):
    #: a model call: traced as a chat span when tracing is on
    CALL = "call"
    #: another operation of the same API (model lists, token counts, telemetry): relayed, not traced as a call
    RELAY = "relay"


class UpstreamChooser(_Interface):
    """Picks the base URL of each request, for an upstream that is more than one URL (Kiro's, per operation and
    region). Used only while the user has not set that upstream's URL."""

    def base_url(self, path: str, headers: Mapping[str, str]) -> tuple[str, bool]:
        """The base URL, and whether the request body may change it (then `base_url_from_body` is asked)."""
        ...

    def base_url_from_body(self, path: str, headers: Mapping[str, str], body: bytes) -> str | None:
        """The base URL the body tells, or None to keep the one `base_url` gave."""
        ...


@dataclass(frozen=True, slots=True)
class Protocol:
    name: str  # the wire protocol, e.g. "anthropic.messages"
    upstream: str  # the upstream it shares with its siblings, e.g. "anthropic"
    classify: Callable[[str, str, Mapping[str, str]], Kind | None]  # (method, path, headers)
    #: builds the chooser from the environment; None: every request goes to the upstream's one URL
    chooser: Callable[[Mapping[str, str]], UpstreamChooser] | None = None


@dataclass(frozen=True, slots=True)
class Route:
    protocol: Protocol | None  # None: the catch-all upstream, protocol unknown
    kind: Kind
    base_url: str  # upstream base URL, no trailing slash; the request's raw path is appended
    prefix: str = ""  # the start of the path that base_url replaces (an MCP relay's /mcp/NAME)
    #: the upstream depends on the body (a Kiro call whose region only its profileArn tells): `Router.with_body`
    needs_body: bool = False

    def upstream_url(self, raw_path: str) -> str:
        return self.base_url + raw_path[len(self.prefix) :]


#: `/mcp/NAME...` relays to the streamable HTTP MCP server named NAME (`--mcp NAME=URL`); the protocol's
#: `upstream` is that name.
MCP_PROTOCOL = "mcp"
MCP_PATH = "/mcp/"


def _mcp_kind(method: str, path: str, headers: Mapping[str, str]) -> Kind | None:
    return Kind.RELAY  # relayed whole; the MCP observer reads the JSON-RPC inside


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
        # Codex opens a WebSocket with GET on the same path: relayed, never a model call.
        return Kind.CALL if method == "POST" else Kind.RELAY
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


# Order matters: header-routed Kiro first, then the specific paths, then the broad `/v1/` fallback of OpenAI.
PROTOCOLS: tuple[Protocol, ...] = (
    Protocol("kiro", "kiro", _kiro_kind, KiroUpstream),
    Protocol("bedrock", "bedrock", _bedrock_kind),
    Protocol("gemini", "gemini", _gemini_kind),
    Protocol("anthropic.messages", "anthropic", _anthropic_kind),
    Protocol("openai.chat", "openai", _openai_chat_kind),
    Protocol("openai.responses", "openai", _openai_responses_kind),
    Protocol("ollama", "ollama", _ollama_kind),
)

UPSTREAM_NAMES = ("anthropic", "openai", "gemini", "bedrock", "kiro", "ollama")
_BY_NAME = {p.name: p for p in PROTOCOLS}


def protocol_named(name: str, upstream: str) -> Protocol | None:
    """The protocol a route names (its matcher is a function, so a route travels as names, not as objects)."""
    if name == MCP_PROTOCOL:
        return Protocol(MCP_PROTOCOL, upstream, _mcp_kind)
    return _BY_NAME.get(name)


def default_upstreams(env: Mapping[str, str] | None = None) -> dict[str, str]:
    env = os.environ if env is None else env
    region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1"
    return {
        "anthropic": "https://api.anthropic.com",
        "openai": "https://api.openai.com",
        "gemini": "https://generativelanguage.googleapis.com",
        "bedrock": f"https://bedrock-runtime.{region}.amazonaws.com",
        # Shown at startup; requests are routed per operation and region by `routing.kiro.KiroUpstream`.
        "kiro": "https://runtime.{region}.kiro.dev, q.{region}.amazonaws.com, management.{region}.kiro.dev",
        "ollama": "http://127.0.0.1:11434",
    }


class Router:
    """Resolves a request to a `Route`, or None when nothing recognizes it and no catch-all is set."""

    __slots__ = ("_catch_all", "_choosers", "_mcp", "_mcp_urls", "_protocols", "_urls")

    def __init__(self, settings: Settings, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        urls = default_upstreams(env)
        if settings.force_all and settings.catch_all:
            urls = dict.fromkeys(urls, settings.catch_all)
        unknown = set(settings.upstreams) - set(UPSTREAM_NAMES)
        if unknown:
            raise ConfigError(
                f"unknown upstream name(s) {sorted(unknown)}; expected one of {', '.join(UPSTREAM_NAMES)}"
                " or 'default'"
            )
        urls.update(settings.upstreams)  # a named upstream is more specific than LLM_GATEWAY_UPSTREAM
        self._urls = urls
        # A user's own URL for an upstream (or LLM_GATEWAY_UPSTREAM) replaces its chooser.
        fixed = settings.force_all and settings.catch_all is not None
        self._choosers: dict[str, UpstreamChooser] = {
            p.upstream: p.chooser(env) for p in PROTOCOLS
            if p.chooser is not None and not fixed and p.upstream not in settings.upstreams
        }
        # (protocol, its upstream URL, its chooser or None), in matching order: resolve looks nothing up
        self._protocols = tuple((p, urls[p.upstream], self._choosers.get(p.upstream)) for p in PROTOCOLS)
        self._catch_all = settings.catch_all
        self._mcp = {name: Protocol(MCP_PROTOCOL, name, _mcp_kind) for name in settings.mcp_upstreams}
        self._mcp_urls = dict(settings.mcp_upstreams)

    @property
    def upstreams(self) -> Mapping[str, str]:
        return self._urls

    @property
    def mcp_servers(self) -> Mapping[str, str]:
        return self._mcp_urls

    @property
    def catch_all(self) -> str | None:
        return self._catch_all

    def resolve(self, method: str, path: str, headers: Mapping[str, str]) -> Route | None:
        """The route from the request line and headers; `with_body` completes it once the body is read."""
        if self._mcp and path.startswith(MCP_PATH):
            route = self._mcp_route(path)
            if route is not None:
                return route
        for protocol, url, chooser in self._protocols:
            kind = protocol.classify(method, path, headers)
            if kind is not None:
                if chooser is None:
                    return Route(protocol, kind, url)
                base, needs_body = chooser.base_url(path, headers)
                return Route(protocol, kind, base, needs_body=needs_body)
        if self._catch_all is not None:
            return Route(None, Kind.RELAY, self._catch_all)
        return None

    def with_body(self, route: Route, path: str, headers: Mapping[str, str], body: bytes) -> Route:
        """The route of a request whose body has been read: `route` itself, unless its upstream depends on the
        body (`Route.needs_body`)."""
        if not route.needs_body:
            return route
        assert route.protocol is not None  # only a chooser sets needs_body
        base = self._choosers[route.protocol.upstream].base_url_from_body(path, headers, body)
        return Route(route.protocol, route.kind, base or route.base_url, route.prefix)

    def _mcp_route(self, path: str) -> Route | None:
        end = len(MCP_PATH)
        while end < len(path) and path[end] not in "/?":
            end += 1
        protocol = self._mcp.get(path[len(MCP_PATH) : end].lower())
        if protocol is None:
            return None
        return Route(protocol, Kind.RELAY, self._mcp_urls[protocol.upstream], prefix=path[:end])
