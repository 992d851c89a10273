"""A gateway used as a forward proxy, and a client environment that trusts its CA the way `llm-gateway ca` says."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from llm_gateway.config import Settings
from llm_gateway.proxy.trust import ensure_ca
from llm_gateway.routing import UPSTREAM_NAMES
from llm_gateway.server import Gateway
from tests.support.servers import running_gateway

#: the variables that would send a client elsewhere than the test says
_CLIENT_ROUTING = ("ANTHROPIC_BASE_URL", "OPENAI_BASE_URL", "NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy",
                   "HTTP_PROXY", "http_proxy", "https_proxy", "HTTPS_PROXY", "SSL_CERT_FILE", "SSL_CERT_DIR",
                   "REQUESTS_CA_BUNDLE")


@dataclass(frozen=True, slots=True)
class Proxied:
    gateway: Gateway
    ca: Path  # ca.pem
    bundle: Path  # ca-bundle.pem

    @property
    def url(self) -> str:
        return self.gateway.url

    def client_env(self) -> dict[str, str]:
        """What `llm-gateway ca` tells a user to export."""
        return {"HTTPS_PROXY": self.url, "NODE_EXTRA_CA_CERTS": str(self.ca), "SSL_CERT_FILE": str(self.bundle),
                "REQUESTS_CA_BUNDLE": str(self.bundle), "CODEX_CA_CERTIFICATE": str(self.ca)}


ProxiedGateway = Callable[..., AbstractAsyncContextManager[Proxied]]


@pytest.fixture
def proxied_gateway(tmp_path: Path) -> ProxiedGateway:
    """`async with proxied_gateway(upstream_url, env=...) as proxied`: every named upstream set to `upstream_url`
    (None: none set), the CA in a temporary directory, made as `llm-gateway ca` makes it."""

    @asynccontextmanager
    async def start(upstream_url: str | None = None, env: Mapping[str, str] | None = None,
                    settings: Settings | None = None) -> AsyncIterator[Proxied]:
        directory = tmp_path / "gateway-ca"
        _, _, bundle = ensure_ca(directory)
        assert bundle is not None
        if settings is None:
            upstreams = dict.fromkeys(UPSTREAM_NAMES, upstream_url) if upstream_url else {}
            settings = Settings(upstreams=upstreams)
        async with running_gateway(settings, {"LLM_GATEWAY_CA_DIR": str(directory), **(env or {})}) as gateway:
            yield Proxied(gateway, directory / "ca.pem", bundle)

    return start


@pytest.fixture
def client_env(monkeypatch: pytest.MonkeyPatch) -> Callable[[Proxied], None]:
    """Puts a proxied gateway's client environment into this process (for SDKs that read it), nothing else."""
    for name in _CLIENT_ROUTING:
        monkeypatch.delenv(name, raising=False)

    def apply(proxied: Proxied) -> None:
        for name, value in proxied.client_env().items():
            monkeypatch.setenv(name, value)

    return apply
