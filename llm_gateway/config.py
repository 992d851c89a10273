"""Gateway settings, from `LLM_GATEWAY_*` environment variables overridden by CLI flags.

The OpenTelemetry variables (`OTEL_*`) are not read here: `telemetry.setup` reads them as the SDK defines them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

ENV_HOST = "LLM_GATEWAY_HOST"
ENV_PORT = "LLM_GATEWAY_PORT"
ENV_UPSTREAM = "LLM_GATEWAY_UPSTREAM"  # one upstream for all traffic (also the catch-all)
ENV_UPSTREAM_PREFIX = "LLM_GATEWAY_UPSTREAM_"  # LLM_GATEWAY_UPSTREAM_<NAME>=URL
ENV_CONNECT_TIMEOUT = "LLM_GATEWAY_CONNECT_TIMEOUT"
ENV_READ_TIMEOUT = "LLM_GATEWAY_READ_TIMEOUT"
ENV_MAX_BODY = "LLM_GATEWAY_MAX_BODY_BYTES"
ENV_RECORD_DIR = "LLM_GATEWAY_RECORD_DIR"
ENV_MCP_PREFIX = "LLM_GATEWAY_MCP_"  # LLM_GATEWAY_MCP_<NAME>=URL: relay /mcp/<name> to that MCP server

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8787
DEFAULT_CONNECT_TIMEOUT = 10.0
# Seconds with no byte from the upstream before the gateway gives up. Generous: a reasoning model may think for
# minutes before its first byte of a non-streamed answer, and a live stream must never be cut.
DEFAULT_READ_TIMEOUT = 900.0
DEFAULT_MAX_BODY = 64 * 1024 * 1024


class ConfigError(ValueError):
    """A setting has a value the gateway cannot use; the message names the setting."""


@dataclass(frozen=True, slots=True)
class Settings:
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    upstreams: Mapping[str, str] = field(default_factory=dict)  # protocol upstream name -> base URL
    catch_all: str | None = None  # where requests go that no protocol recognizes
    force_all: bool = False  # LLM_GATEWAY_UPSTREAM: every request goes to catch_all
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    read_timeout: float = DEFAULT_READ_TIMEOUT
    max_body_bytes: int = DEFAULT_MAX_BODY
    record_dir: str | None = None  # write every exchange as a fixture file per session
    mcp_upstreams: Mapping[str, str] = field(default_factory=dict)  # MCP server name -> streamable HTTP URL


def parse_upstream_pairs(pairs: list[str], flag: str = "--upstream") -> dict[str, str]:
    """`["anthropic=http://x", ...]` -> `{"anthropic": "http://x"}`."""
    out: dict[str, str] = {}
    for pair in pairs:
        name, sep, url = pair.partition("=")
        if not sep or not name or not url:
            raise ConfigError(f"{flag} expects NAME=URL, got {pair!r}")
        out[name.strip().lower()] = _check_url(url.strip(), f"{flag} {name}")
    return out


def _check_url(url: str, setting: str) -> str:
    parts = urlsplit(url)
    if not url.startswith(("http://", "https://")) or not parts.netloc:
        raise ConfigError(f"{setting}: {url!r} is not an http:// or https:// URL")
    if parts.query or parts.fragment or url.endswith(("?", "#")):
        # The request's path and query are appended to the base URL as they are; a query here would end up
        # in front of the request's path.
        raise ConfigError(f"{setting}: {url!r} has a query or fragment; give a base URL (scheme, host, path)")
    return url.rstrip("/")


def _number(env: Mapping[str, str], name: str, default: float, kind: type = float, allow_zero: bool = False) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number") from None
    if value < 0 or (value == 0 and not allow_zero):
        raise ConfigError(f"{name}={raw!r} must be positive")
    return value


def load_settings(
    env: Mapping[str, str] | None = None,
    *,
    host: str | None = None,
    port: int | None = None,
    upstream_flags: list[str] | None = None,
    record_dir: str | None = None,
    mcp_flags: list[str] | None = None,
) -> Settings:
    """Environment first, flags on top."""
    env = os.environ if env is None else env
    upstreams = _prefixed_urls(env, ENV_UPSTREAM_PREFIX)
    upstreams.update(parse_upstream_pairs(upstream_flags or []))
    catch_all = upstreams.pop("default", None)
    force_all = False
    if env.get(ENV_UPSTREAM):
        catch_all = _check_url(env[ENV_UPSTREAM], ENV_UPSTREAM)
        force_all = True
    return Settings(
        host=host or env.get(ENV_HOST) or DEFAULT_HOST,
        # port 0: any free port (tests, the demo)
        port=port if port is not None else int(_number(env, ENV_PORT, DEFAULT_PORT, int, allow_zero=True)),
        upstreams=upstreams,
        catch_all=catch_all,
        force_all=force_all,
        connect_timeout=_number(env, ENV_CONNECT_TIMEOUT, DEFAULT_CONNECT_TIMEOUT),
        read_timeout=_number(env, ENV_READ_TIMEOUT, DEFAULT_READ_TIMEOUT),
        max_body_bytes=int(_number(env, ENV_MAX_BODY, DEFAULT_MAX_BODY, int)),
        record_dir=record_dir or env.get(ENV_RECORD_DIR) or None,
        mcp_upstreams=_mcp_upstreams(env, mcp_flags or []),
    )


def _prefixed_urls(env: Mapping[str, str], prefix: str) -> dict[str, str]:
    """`<PREFIX><NAME>=URL` variables -> `{name: URL}`."""
    return {key[len(prefix) :].lower(): _check_url(value, key) for key, value in env.items()
            if key.startswith(prefix) and value}


def _mcp_upstreams(env: Mapping[str, str], flags: list[str]) -> dict[str, str]:
    """`LLM_GATEWAY_MCP_<NAME>=URL` and `--mcp NAME=URL` (flags win): MCP server name -> its endpoint URL."""
    return {**_prefixed_urls(env, ENV_MCP_PREFIX), **parse_upstream_pairs(flags, "--mcp")}
