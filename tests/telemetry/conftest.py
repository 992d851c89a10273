"""A traced gateway: OTLP export to a real receiver on loopback, upstreams replaced by a replay server."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager

import pytest

from llm_gateway.config import Settings
from llm_gateway.recordings import Fixture
from llm_gateway.recordings.replay import ReplayUpstream
from llm_gateway.routing import UPSTREAM_NAMES
from llm_gateway.server import Gateway
from llm_gateway.telemetry.spool import ENV_STATE_DIR
from tests.support.otlp import OTLPReceiver


@pytest.fixture
async def receiver() -> AsyncIterator[OTLPReceiver]:
    r = await OTLPReceiver().start()
    yield r
    await r.stop()


TracedGateway = Callable[..., "asynccontextmanager[tuple[Gateway, ReplayUpstream]]"]


@pytest.fixture
def traced_gateway(receiver: OTLPReceiver, monkeypatch: pytest.MonkeyPatch):
    """`async with traced_gateway(fixtures, capture=False) as (gateway, upstream)`: spans go to `receiver`. With
    `speed`, the upstream keeps the recorded timing (see ReplayUpstream)."""
    # The SDK's batch processor and exporter read these from the process environment.
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "50")
    monkeypatch.setenv("OTEL_METRIC_EXPORT_INTERVAL", "200")

    @asynccontextmanager
    async def start(fixtures: Sequence[Fixture], *, capture: bool = False, extra_env: dict | None = None,
                    speed: float = 0.0):
        env = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint, "OTEL_SERVICE_NAME": "llm-gateway-test",
               ENV_STATE_DIR: os.environ[ENV_STATE_DIR]}  # the session's (tests/conftest.py)
        if capture:
            env["OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"] = "true"
        env.update(extra_env or {})
        async with ReplayUpstream(fixtures, speed=speed) as upstream:
            settings = Settings(port=0, upstreams=dict.fromkeys(UPSTREAM_NAMES, upstream.url))
            gateway = await Gateway.start(settings, env)
            try:
                yield gateway, upstream
            finally:
                await gateway.stop()  # flushes the spans

    return start
