"""The observers the relay runs (see `flow.Addon`). Each is one module with one job."""

from __future__ import annotations

from collections.abc import Mapping

from llm_gateway.config import Settings
from llm_gateway.flow import Addon
from llm_gateway.routing.kiro import ENV_PROFILE_ARN
from llm_gateway.telemetry import Telemetry


def relay_addons(env: Mapping[str, str], settings: Settings | None = None) -> list[Addon]:
    """The addons that must run in the relay's own process: they change what is forwarded, or write files. With
    tracing off and nothing to record there is none: the relay's hot path does no work beyond relaying."""
    addons: list[Addon] = []
    if env.get(ENV_PROFILE_ARN):  # first: the others see the request as it is forwarded
        from llm_gateway.addons.kiro_profile import KiroProfileArn

        addons.append(KiroProfileArn(env[ENV_PROFILE_ARN]))
    if settings is not None and settings.record_dir:
        from llm_gateway.recordings.recorder import Recorder

        addons.append(Recorder(settings.record_dir))
    return addons


def telemetry_addons(telemetry: Telemetry, env: Mapping[str, str]) -> list[Addon]:
    """The tracing addons: chat and session spans, MCP spans. They only watch, so they may run in the telemetry
    process (`telemetry/process.py`) on flows the relay process sends there."""
    from llm_gateway.mcp.observer import McpObserver
    from llm_gateway.telemetry.chat_spans import ChatSpans
    from llm_gateway.telemetry.content import content_capture
    from llm_gateway.telemetry.mcp_spans import McpSpans

    chat = ChatSpans(telemetry, env)
    mcp = McpSpans(telemetry.tracer, env, chat.sessions)  # MCP tool calls nest under the agent's tool spans
    return [chat, McpObserver(mcp.record, capture=content_capture(env).on_spans)]
