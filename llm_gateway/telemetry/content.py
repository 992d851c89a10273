"""Whether message content may go on spans: off unless the user opts in.

`OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT` takes `true`/`false` (the original form) or the newer
util-genai modes `NO_CONTENT`, `SPAN_ONLY`, `EVENT_ONLY`, `SPAN_AND_EVENT`. The gateway writes content on
spans only, so the modes that include spans switch it on. An unknown value warns and keeps the default.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Mapping

log = logging.getLogger("llm_gateway.telemetry")

CAPTURE_CONTENT_ENV = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"


class ContentCapture(enum.Enum):
    NO_CONTENT = "no_content"
    SPAN_ONLY = "span_only"

    @property
    def on_spans(self) -> bool:
        return self is ContentCapture.SPAN_ONLY


_VALUES = {
    "true": ContentCapture.SPAN_ONLY,
    "span_only": ContentCapture.SPAN_ONLY,
    "span_and_event": ContentCapture.SPAN_ONLY,
    "false": ContentCapture.NO_CONTENT,
    "no_content": ContentCapture.NO_CONTENT,
    "event_only": ContentCapture.NO_CONTENT,
    "": ContentCapture.NO_CONTENT,
}


def content_capture(env: Mapping[str, str]) -> ContentCapture:
    raw = env.get(CAPTURE_CONTENT_ENV, "").strip().lower()
    mode = _VALUES.get(raw)
    if mode is None:
        log.warning("%s=%r is not a known value; message content is not captured", CAPTURE_CONTENT_ENV, raw)
        return ContentCapture.NO_CONTENT
    return mode
