"""The router: each request's `Route`, that is its provider protocol, whether it is a model call, and its upstream.

`Router.resolve` matches the request line and headers against the `PROVIDERS` table (`providers.py`) and the MCP
servers; `Router.with_body` completes the route once the body is read. The relay makes both calls and knows no
provider.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from llm_gateway.config import ConfigError, Settings
from llm_gateway.routing.providers import (
    PROVIDERS,
    ROUTING_HEADERS,
    UPSTREAM_NAMES,
    Kind,
    Provider,
    UpstreamChooser,
    default_upstreams,
    mcp_provider,
)


@dataclass(frozen=True, slots=True)
class Route:
    protocol: Provider | None  # the protocol the request speaks; None: the catch-all upstream, protocol unknown
    kind: Kind
    base_url: str  # upstream base URL, no trailing slash; the request's raw path is appended
    prefix: str = ""  # the start of the path that base_url replaces (an MCP relay's /mcp/NAME)
    #: the upstream depends on the body (a Kiro call whose region only its profileArn tells): `Router.with_body`
    needs_body: bool = False

    def upstream_url(self, raw_path: str) -> str:
        return self.base_url + raw_path[len(self.prefix) :]


MCP_PATH = "/mcp/"  # `/mcp/NAME...` goes to the MCP server NAME
#: routes remembered at most (paths carry query strings, which may differ with every request)
_ROUTES_KEPT = 1024
_UNKNOWN = object()


class Router:
    """Resolves a request to a `Route`, or None when nothing recognizes it and no catch-all is set."""

    __slots__ = ("_by_upstream", "_catch_all", "_choosers", "_mcp", "_mcp_urls", "_providers", "_routes", "_set_urls",
                 "_urls")

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
            p.upstream: p.chooser(env) for p in PROVIDERS
            if p.chooser is not None and not fixed and p.upstream not in settings.upstreams
        }
        # (provider, its upstream URL, its chooser or None), in matching order: resolve looks nothing up
        self._providers = tuple((p, urls[p.upstream], self._choosers.get(p.upstream)) for p in PROVIDERS)
        self._catch_all = settings.catch_all
        # For the forward proxy's intercepted hosts (`resolve_at`): the URLs the user set, and each upstream's
        # providers.
        self._set_urls = {**(dict.fromkeys(UPSTREAM_NAMES, settings.catch_all) if fixed else {}),
                          **settings.upstreams}
        if settings.catch_all is not None:
            self._set_urls["default"] = settings.catch_all
        self._by_upstream = {name: tuple(p for p in PROVIDERS if p.upstream == name) for name in UPSTREAM_NAMES}
        self._mcp = {name: mcp_provider(name) for name in settings.mcp_upstreams}
        self._mcp_urls = dict(settings.mcp_upstreams)
        self._routes: dict[tuple, Route | None] = {}  # by (method, path, the routing headers' values)

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
        # An agent sends the same few requests over and over: the answer is remembered by all that decides it
        key = (method, path, *[headers.get(name) for name in ROUTING_HEADERS])
        known = self._routes.get(key, _UNKNOWN)
        if known is not _UNKNOWN:
            return known
        route, remember = self._classified(method, path, headers)
        if remember:
            if len(self._routes) >= _ROUTES_KEPT:
                self._routes.clear()
            self._routes[key] = route
        return route

    def _classified(self, method: str, path: str, headers: Mapping[str, str]) -> tuple[Route | None, bool]:
        """The route, and whether the method, the path and the routing headers alone decided it (an upstream
        chooser reads more of the request)."""
        for provider, url, chooser in self._providers:
            kind = provider.classify(method, path, headers)
            if kind is not None:
                if chooser is None:
                    return Route(provider, kind, url), True
                base, needs_body = chooser.base_url(path, headers)
                return Route(provider, kind, base, needs_body=needs_body), False
        if self._catch_all is not None:
            return Route(None, Kind.RELAY, self._catch_all), True
        return None, True

    def resolve_at(self, upstream: str | None, origin: str, method: str, path: str,
                   headers: Mapping[str, str]) -> Route:
        """The route of a request the forward proxy read on a host whose upstream is `upstream` (the intercept
        list's name; "default" for a host the user added): whatever its path, it goes to the URL the user set for
        that upstream, else to the host itself (`origin`). That upstream's providers say what the request is (any
        provider for "default"). `upstream` None: a host the proxy does not read, relayed to `origin` as is."""
        if upstream is None:
            return Route(None, Kind.RELAY, origin)
        base = self._set_urls.get(upstream, origin)
        for provider in self._by_upstream.get(upstream, PROVIDERS):
            kind = provider.classify(method, path, headers)
            if kind is not None:
                return Route(provider, kind, base)
        return Route(None, Kind.RELAY, base)

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
