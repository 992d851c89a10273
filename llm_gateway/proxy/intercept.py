"""Which hosts the forward proxy reads (terminates TLS for) and which named upstream each one's requests go to.

Every other host is tunnelled byte for byte. A pattern's `*` stands for part of one DNS label
(`bedrock-runtime.*.amazonaws.com`, `*-aiplatform.googleapis.com`); a leading `*.` stands for one or more labels
(`*.example.com` matches `a.example.com` and `a.b.example.com`, not `example.com`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from llm_gateway.config import ConfigError
from llm_gateway.routing.providers import PROVIDERS

ENV_INTERCEPT = "LLM_GATEWAY_INTERCEPT"
#: the value of LLM_GATEWAY_INTERCEPT that drops the built-in hosts (the hosts listed with it are still read)
NONE = "none"
#: the upstream name of a host added with LLM_GATEWAY_INTERCEPT: the catch-all upstream when set, else the host
ADDED = "default"

#: (host pattern, upstream name): the hosts of every provider the gateway understands, from the provider table
PROVIDER_HOSTS: tuple[tuple[str, str], ...] = tuple(
    dict.fromkeys((host, provider.upstream) for provider in PROVIDERS for host in provider.hosts)
)


@dataclass(frozen=True, slots=True)
class ProxiedHost:
    """Where the requests of one host reached through the proxy go: to `upstream`'s URL when the user set one,
    else to `origin` (the host itself). `upstream` None: a host the proxy does not read, relayed as is."""

    host: str
    port: int
    upstream: str | None
    origin: str  # scheme://host[:port], no trailing slash


class InterceptList:
    """Host -> upstream name for the hosts to read. Exact names are one dict lookup; patterns a regex each."""

    __slots__ = ("_exact", "_patterns", "entries")

    def __init__(self, entries: Iterable[tuple[str, str]]) -> None:
        self.entries = tuple(entries)
        self._exact: dict[str, str] = {}
        self._patterns: list[tuple[re.Pattern[str], str]] = []
        for pattern, upstream in self.entries:
            if "*" in pattern:
                self._patterns.append((_compile(pattern), upstream))
            else:
                self._exact.setdefault(pattern, upstream)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> InterceptList:
        """The built-in provider hosts plus LLM_GATEWAY_INTERCEPT's (`host,*.example.com`); `none` among them
        drops the built-in ones."""
        env = os.environ if env is None else env
        tokens = [t.strip().lower() for t in (env.get(ENV_INTERCEPT) or "").split(",") if t.strip()]
        added = [(_checked(t), ADDED) for t in tokens if t != NONE]
        builtin = () if NONE in tokens else PROVIDER_HOSTS
        return cls([*builtin, *added])

    def upstream_of(self, host: str) -> str | None:
        """The upstream name of a host to read, or None: tunnel it."""
        host = host.lower().rstrip(".")
        upstream = self._exact.get(host)
        if upstream is not None:
            return upstream
        for pattern, name in self._patterns:
            if pattern.fullmatch(host):
                return name
        return None

    def __len__(self) -> int:
        return len(self.entries)


_LABEL = re.compile(r"[a-z0-9*_-]+")


def _checked(pattern: str) -> str:
    labels = pattern.rstrip(".").split(".")
    if not all(_LABEL.fullmatch(label) for label in labels):
        raise ConfigError(f"{ENV_INTERCEPT}: {pattern!r} is not a host name or a pattern like *.example.com")
    return ".".join(labels)


def _compile(pattern: str) -> re.Pattern[str]:
    labels = pattern.split(".")
    head = ""
    if labels[0] == "*" and len(labels) > 1:
        head, labels = r"(?:[^.]+\.)+", labels[1:]
    return re.compile(head + r"\.".join("[^.]*".join(map(re.escape, label.split("*"))) for label in labels))
