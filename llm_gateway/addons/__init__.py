"""The observers the relay runs (see `flow.Addon`). Each is one module with one job."""

from __future__ import annotations

import os
from collections.abc import Mapping

from llm_gateway.flow import Addon
from llm_gateway.telemetry import Telemetry


def default_addons(telemetry: Telemetry | None, env: Mapping[str, str] | None = None) -> list[Addon]:
    """With tracing off there is no addon at all, so the relay's hot path does no tracing work."""
    env = os.environ if env is None else env
    if telemetry is None:
        return []
    from llm_gateway.telemetry.chat_spans import ChatSpans

    return [ChatSpans(telemetry, env)]
