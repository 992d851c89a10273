"""The observers the relay runs (see `flow.Addon`), each one module with one job, and `default_addons`, which
builds every list of them the gateway runs."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from llm_gateway.config import Settings
from llm_gateway.flow import Addon
from llm_gateway.routing.kiro import ENV_PROFILE_ARN
from llm_gateway.telemetry import Telemetry

if TYPE_CHECKING:
    from llm_gateway.offload import FlowShipper
    from llm_gateway.sessions.state import SessionState


def default_addons(
    env: Mapping[str, str],
    settings: Settings | None = None,
    *,
    tracing: Telemetry | FlowShipper | None = None,
    relaying: bool = True,
    on_session_finished: Callable[[SessionState], None] | None = None,
) -> list[Addon]:
    """The addons of one process, in calling order.

    `relaying`: the relay's own process, whose list starts with the addons that change what is forwarded or
    write files; the telemetry process passes False (it watches replicas of flows already forwarded).
    `tracing`: a `Telemetry` builds spans in this process (the session spans, and beside them the chat and MCP
    spans); a `FlowShipper` copies each flow to the telemetry process, which builds its own list around its own
    `Telemetry`; None traces nothing. With tracing off and nothing to record the list is empty: the relay's hot
    path does no work beyond relaying. `on_session_finished` is called with each session as it ends (the demo
    prints them as trees).
    """
    addons: list[Addon] = []
    if relaying and env.get(ENV_PROFILE_ARN):  # first: the others see the request as it is forwarded
        from llm_gateway.addons.kiro_profile import KiroProfileArn

        addons.append(KiroProfileArn(env[ENV_PROFILE_ARN]))
    if relaying and settings is not None and settings.record_dir:
        from llm_gateway.recordings.recorder import Recorder

        addons.append(Recorder(settings.record_dir))
    if isinstance(tracing, Telemetry):
        from llm_gateway.addons.socket_calls import SocketCalls
        from llm_gateway.mcp.observer import McpObserver
        from llm_gateway.telemetry.chat_spans import ChatSpans
        from llm_gateway.telemetry.content import content_capture
        from llm_gateway.telemetry.mcp_spans import McpSpans
        from llm_gateway.telemetry.session_spans import SessionSpans

        capture = content_capture(env).on_spans
        sessions = SessionSpans(tracing.spans, env, capture=capture, on_finished=on_session_finished)
        mcp = McpSpans(tracing.spans, env, sessions)  # MCP tool calls nest under the agent's tool spans
        chats = ChatSpans(tracing, env, sessions)
        # the calls inside WebSockets (Codex) reach the chat spans as flows of their own
        addons += [sessions, chats, SocketCalls([chats]), McpObserver(mcp.record, capture=capture)]
    elif tracing is not None:
        addons.append(tracing)
    return addons
