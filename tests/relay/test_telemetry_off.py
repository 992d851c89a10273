"""Without an OTEL_* exporter the gateway builds no telemetry and the relay runs no addon."""

from __future__ import annotations

from contextlib import AsyncExitStack

import pytest

from llm_gateway.addons import default_addons
from llm_gateway.config import Settings
from llm_gateway.telemetry import configure, upstream_trace_configs
from llm_gateway.telemetry.setup import export_plan, traces_endpoint
from tests.support.servers import running_gateway

_ENDPOINT = "http://127.0.0.1:4318"


def test_empty_environment_builds_no_telemetry_and_no_addon() -> None:
    assert configure({}) is None and export_plan({}) == []
    assert default_addons({}) == []
    assert upstream_trace_configs(None) == []


async def test_gateway_started_with_empty_env_relays_without_addons(servers: AsyncExitStack) -> None:
    gateway = await servers.enter_async_context(running_gateway(Settings(), env={}))

    assert gateway.telemetry is None and gateway.telemetry_process is None
    assert gateway.relay.addons == ()
    assert "traces     -> nowhere" in gateway.describe()


@pytest.mark.parametrize(
    "env",
    [
        {"OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": _ENDPOINT},
        {"OTEL_SDK_DISABLED": "TRUE", "OTEL_TRACES_EXPORTER": "console"},
        {"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": _ENDPOINT},
        {"OTEL_TRACES_EXPORTER": "none"},
        {"OTEL_SERVICE_NAME": "agent", "OTEL_EXPORTER_OTLP_HEADERS": "a=b"},  # settings but no destination
    ],
    ids=["disabled-with-endpoint", "disabled-with-exporter", "exporter-none-with-endpoint", "exporter-none",
         "no-destination"],
)
def test_environment_without_active_exporter_builds_no_telemetry(env: dict[str, str]) -> None:
    assert configure(env) is None and export_plan(env) == []


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, None),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": _ENDPOINT}, _ENDPOINT + "/v1/traces"),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": _ENDPOINT + "/"}, _ENDPOINT + "/v1/traces"),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": _ENDPOINT + "/otlp"}, _ENDPOINT + "/otlp/v1/traces"),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": _ENDPOINT + "/custom"}, _ENDPOINT + "/custom"),
        (
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://generic:4318",
             "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": _ENDPOINT + "/v1/traces"},
            _ENDPOINT + "/v1/traces",
        ),
    ],
    ids=["none", "generic", "generic-slash", "generic-path", "specific-as-given", "specific-wins"],
)
def test_traces_endpoint_follows_otlp_path_rule(env: dict[str, str], expected: str | None) -> None:
    assert traces_endpoint(env) == expected
