"""Spans the gateway makes itself, handed to the SDK's span processors once, when they end.

The SDK's Tracer makes a live `Span` for every span: a sampling result, a BoundedAttributes that checks each value
under a lock, deques for events and links, and a `ReadableSpan` copy at the end; about 34 µs for a chat span of 25
attributes, three times a call. The gateway knows each span's times and attributes, and while a span is open only
needs its SpanContext (as its children's parent). `SpanMaker.start` gives an `OpenSpan` (its context and what it
started with) and `SpanMaker.end` builds the one `ReadableSpan` the processors and exporters take: about 6 µs.

What the provider was configured with still applies: its resource, its id generator, its sampler (the default,
parent-based always-on, is decided here without a call; any other is asked as the SDK asks it) and the span limits
of `OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT` / `OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT` (attributes past them, and values the
fast path does not know, go through the SDK's BoundedAttributes as before). Processors get `on_end` only: nothing
of the gateway's needs `on_start`, and a span's record does not exist before its end.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from opentelemetry import trace
from opentelemetry.attributes import BoundedAttributes
from opentelemetry.sdk.trace import ReadableSpan, SpanLimits, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanContext, SpanKind, TraceFlags
from opentelemetry.trace.status import Status

_DEFAULT_SAMPLER = ParentBased(ALWAYS_ON).get_description()
_UNSET = Status()
_PLAIN = frozenset({str, bool, int, float})


@dataclass(slots=True, eq=False)
class OpenSpan:
    """A span between `SpanMaker.start` and `SpanMaker.end`; `context` is what its children name as parent."""

    name: str
    context: SpanContext
    parent: SpanContext | None
    kind: SpanKind
    start_ns: int
    attributes: dict[str, Any]
    links: Sequence[Link] = ()
    recording: bool = True  # the sampler's decision: False makes no record (its children see it unsampled)


class SpanMaker:
    """Starts and ends the gateway's spans for one instrumentation scope (see the module docstring)."""

    def __init__(self, provider: TracerProvider, processor: SpanProcessor, scope: InstrumentationScope) -> None:
        """`processor` gets each ended span: the provider's processors (`setup.configure` registers one
        multi-processor with the provider and hands it here too)."""
        self._processor = processor
        self._scope = scope
        self._resource = provider.resource
        self._ids = provider.id_generator
        self._sampler = provider.sampler
        self._default_sampler = provider.sampler.get_description() == _DEFAULT_SAMPLER
        limits = SpanLimits()  # from the environment, as the provider read its own
        self._max_attributes = limits.max_span_attributes
        self._max_value_length = limits.max_span_attribute_length

    def __repr__(self) -> str:
        return f"SpanMaker({self._scope.name!r})"

    def start(
        self,
        name: str,
        kind: SpanKind,
        start_ns: int,
        attributes: Mapping[str, Any],
        parent: SpanContext | None = None,
        links: Sequence[Link] = (),
        *,
        trace_id: int | None = None,
        span_id: int | None = None,
    ) -> OpenSpan:
        """A span starting at `start_ns` under `parent` (None or an invalid context: a root, in trace `trace_id`
        when given); `span_id` names it instead of a random id."""
        if parent is not None and not parent.is_valid:
            parent = None
        if parent is not None:
            trace_id = parent.trace_id
            random_trace_id = parent.trace_flags.random_trace_id
        else:
            trace_id = trace_id or self._ids.generate_trace_id()
            random_trace_id = self._ids.is_trace_id_random()
        if self._default_sampler:
            sampled = parent is None or parent.trace_flags.sampled
            recording, trace_state = sampled, parent.trace_state if parent is not None else None
            attributes = dict(attributes)
        else:
            context = trace.set_span_in_context(trace.NonRecordingSpan(parent)) if parent is not None else None
            result = self._sampler.should_sample(context, trace_id, name, kind, attributes, links)
            sampled, recording = result.decision.is_sampled(), result.decision.is_recording()
            trace_state, attributes = result.trace_state, dict(result.attributes or {})
        flags = (TraceFlags.SAMPLED if sampled else TraceFlags.DEFAULT) | (
            TraceFlags.RANDOM_TRACE_ID if random_trace_id else 0)
        context = SpanContext(trace_id, span_id or self._ids.generate_span_id(), is_remote=False,
                              trace_flags=TraceFlags(flags), trace_state=trace_state)
        return OpenSpan(name, context, parent, kind, start_ns, attributes, links, recording)

    def end(self, span: OpenSpan, end_ns: int | None, attributes: Mapping[str, Any] | None = None,
            status: Status | None = None) -> None:
        """End `span` at `end_ns` (None: now, as the SDK's `Span.end`) with `attributes` added (over what it started
        with) and `status`."""
        if not span.recording:
            return
        if attributes:
            span.attributes.update(attributes)
        self._processor.on_end(ReadableSpan(
            name=span.name, context=span.context, parent=span.parent, resource=self._resource,
            attributes=self._checked(span.attributes), links=span.links, kind=span.kind, status=status or _UNSET,
            start_time=span.start_ns, end_time=time.time_ns() if end_ns is None else end_ns,
            instrumentation_scope=self._scope,
        ))

    def record(self, name: str, kind: SpanKind, start_ns: int, end_ns: int | None, attributes: Mapping[str, Any],
               parent: SpanContext | None = None, status: Status | None = None) -> None:
        """A span whose end is known at its start, in one step."""
        self.end(self.start(name, kind, start_ns, attributes, parent), end_ns, status=status)

    def _checked(self, attributes: dict[str, Any]) -> Mapping[str, Any]:
        """`attributes` as the SDK would keep them: plain values and lists of text (made tuples, as it makes every
        sequence) as they are; anything else, or more than the limits allow, through its BoundedAttributes."""
        if len(attributes) <= (self._max_attributes or 0) and self._max_value_length is None:
            for key, value in attributes.items():
                kind = type(value)
                if kind in _PLAIN:
                    continue
                if kind is list and all(type(item) is str for item in value):
                    attributes[key] = tuple(value)  # a value replaced, no key added: the iteration goes on
                    continue
                break
            else:
                return attributes
        return BoundedAttributes(self._max_attributes, attributes, immutable=False,
                                 max_value_len=self._max_value_length)
