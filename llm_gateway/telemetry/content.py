"""Whether message content is captured, and where it goes: off unless the user opts in.

`OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT` takes `true`/`false` (the original form: `true` is spans
only) or the newer util-genai modes `NO_CONTENT`, `SPAN_ONLY`, `EVENT_ONLY`, `SPAN_AND_EVENT`. Content goes on
spans as attributes; the event modes also emit each model call's `gen_ai.client.inference.operation.details`
event (a log record) with the call's attributes and its content. An unknown value warns and keeps the default.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Mapping

log = logging.getLogger("llm_gateway.telemetry")

CAPTURE_CONTENT_ENV = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"


class ContentCapture(enum.Enum):
    #: no content anywhere (the default)
    NO_CONTENT = "no_content"
    #: content on spans
    SPAN_ONLY = "span_only"
    #: content on the inference details events only
    EVENT_ONLY = "event_only"
    #: content on spans and on the events
    SPAN_AND_EVENT = "span_and_event"

    @property
    def on_spans(self) -> bool:
        return self in (ContentCapture.SPAN_ONLY, ContentCapture.SPAN_AND_EVENT)

    @property
    def on_events(self) -> bool:
        """The `gen_ai.client.inference.operation.details` event is emitted, with content."""
        return self in (ContentCapture.EVENT_ONLY, ContentCapture.SPAN_AND_EVENT)

    @property
    def captured(self) -> bool:
        """Content is read at all (for spans, events or both)."""
        return self is not ContentCapture.NO_CONTENT


_VALUES = {
    "true": ContentCapture.SPAN_ONLY,
    "span_only": ContentCapture.SPAN_ONLY,
    "span_and_event": ContentCapture.SPAN_AND_EVENT,
    "event_only": ContentCapture.EVENT_ONLY,
    "false": ContentCapture.NO_CONTENT,
    "no_content": ContentCapture.NO_CONTENT,
    "": ContentCapture.NO_CONTENT,
}


def content_capture(env: Mapping[str, str]) -> ContentCapture:
    raw = env.get(CAPTURE_CONTENT_ENV, "").strip().lower()
    mode = _VALUES.get(raw)
    if mode is None:
        log.warning("%s=%r is not a known value; message content is not captured", CAPTURE_CONTENT_ENV, raw)
        return ContentCapture.NO_CONTENT
    return mode
