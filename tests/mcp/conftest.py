"""Real MCP servers from the npm registry, installed once into `.mcp-servers/` (gitignored) at the repo root, and
a traced gateway whose spans go to the project's OTLP receiver."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from llm_gateway.config import Settings
from llm_gateway.recordings import Fixture
from llm_gateway.recordings.replay import ReplayUpstream
from llm_gateway.routing import UPSTREAM_NAMES
from llm_gateway.server import Gateway
from tests.support.otlp import OTLPReceiver
from tests.telemetry.conftest import receiver  # noqa: F401  (a fixture used here)

REPO = Path(__file__).resolve().parents[2]
SERVERS_DIR = REPO / ".mcp-servers"
# Pinned: the tests compare wire details of these exact builds.
PACKAGES = {
    "@modelcontextprotocol/server-filesystem": "2026.8.31",
    "@modelcontextprotocol/server-everything": "2026.8.31",
}


@dataclass(frozen=True, slots=True)
class McpServers:
    filesystem: list[str]  # command line, the allowed directory still to append
    everything: list[str]  # command line, the transport ("stdio" / "streamableHttp") still to append


def _entry(package: str) -> Path:
    return SERVERS_DIR / "node_modules" / package / "dist" / "index.js"


@pytest.fixture(scope="session")
def mcp_servers() -> McpServers:
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip("node and npm are needed to run the real MCP servers")
    if not all(_entry(p).is_file() for p in PACKAGES):
        subprocess.run(
            [npm, "install", "--prefix", str(SERVERS_DIR), "--no-audit", "--no-fund", "--loglevel=error",
             *(f"{name}@{version}" for name, version in PACKAGES.items())],
            check=True, timeout=300,
        )
    fs, everything = (_entry(p) for p in PACKAGES)
    return McpServers([node, str(fs)], [node, str(everything)])


@pytest.fixture
def otel_fast(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The batch processor reads its delay from the process environment; wrappers get it in theirs."""
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "50")
    return {"OTEL_BSP_SCHEDULE_DELAY": "50"}


@pytest.fixture
def mcp_gateway(receiver: OTLPReceiver, otel_fast):  # noqa: F811
    """`async with mcp_gateway(mcp={name: url}, fixtures=[...], capture=False) as gateway`: traced to `receiver`."""

    @asynccontextmanager
    async def start(*, mcp: Mapping[str, str] | None = None, fixtures: Sequence[Fixture] = (),
                    capture: bool = False) -> AsyncIterator[Gateway]:
        env = otel_env(receiver, capture)
        async with ReplayUpstream(fixtures) as upstream:
            settings = Settings(port=0, upstreams=dict.fromkeys(UPSTREAM_NAMES, upstream.url),
                                mcp_upstreams=dict(mcp or {}))
            gateway = await Gateway.start(settings, env)
            try:
                yield gateway
            finally:
                await gateway.stop()  # flushes the spans

    return start


def otel_env(receiver: OTLPReceiver, capture: bool = False) -> dict[str, str]:  # noqa: F811
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint, "OTEL_SERVICE_NAME": "llm-gateway-test",
           "OTEL_BSP_SCHEDULE_DELAY": "50"}
    if capture:
        env["OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"] = "true"
    return env
