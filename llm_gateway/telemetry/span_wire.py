"""Finished spans as plain tuples, so they can cross to the exporter process (see `export_process.py`).

Sans-IO: `span_record` flattens an SDK `ReadableSpan` into tuples of ints, strings and dicts (cheap to build,
cheap to pickle); `readable_span` rebuilds an equivalent `ReadableSpan` on the other side. `frame` and
`read_frame` put a length in front of each pickled message.
"""

from __future__ import annotations

import pickle
import struct
from collections.abc import Sequence

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceState

_LENGTH = struct.Struct(">I")

ContextRecord = tuple[int, int, int, bool, tuple[tuple[str, str], ...]]
SpanRecord = tuple


def _context_record(ctx: SpanContext | None) -> ContextRecord | None:
    if ctx is None:
        return None
    state = tuple(ctx.trace_state.items()) if ctx.trace_state else ()
    return (ctx.trace_id, ctx.span_id, int(ctx.trace_flags), ctx.is_remote, state)


def _span_context(record: ContextRecord | None) -> SpanContext | None:
    if record is None:
        return None
    trace_id, span_id, flags, is_remote, state = record
    return SpanContext(trace_id, span_id, is_remote, flags, TraceState(state) if state else None)


def _scope_record(scope: InstrumentationScope | None) -> tuple | None:
    if scope is None:
        return None
    attributes = dict(scope.attributes) if scope.attributes else None
    return (scope.name, scope.version, scope.schema_url, attributes)


def span_record(span: ReadableSpan) -> SpanRecord:
    """Everything the OTLP encoder reads from a span, as plain values (the resource travels once, not per span)."""
    status = span.status
    return (
        span.name,
        _context_record(span.context),
        _context_record(span.parent),
        span.kind.value,
        span.start_time,
        span.end_time,
        dict(span.attributes) if span.attributes else None,
        tuple((e.name, e.timestamp, dict(e.attributes) if e.attributes else None) for e in span.events),
        tuple((_context_record(link.context), dict(link.attributes) if link.attributes else None)
              for link in span.links),
        status.status_code.value,
        status.description,
        _scope_record(span.instrumentation_scope),
    )


class _Scopes(dict):
    """InstrumentationScope objects by their record, built once each (the encoder groups spans by scope)."""

    def __missing__(self, key: tuple) -> InstrumentationScope:
        name, version, schema_url, attributes = key
        scope = self[key] = InstrumentationScope(name, version, schema_url, dict(attributes) if attributes else None)
        return scope


def readable_span(record: SpanRecord, resource: Resource, scopes: _Scopes) -> ReadableSpan:
    name, ctx, parent, kind, start, end, attributes, events, links, code, description, scope = record
    return ReadableSpan(
        name,
        context=_span_context(ctx),
        parent=_span_context(parent),
        resource=resource,
        attributes=attributes,
        events=tuple(Event(n, a, timestamp=t) for n, t, a in events),
        links=tuple(Link(_span_context(c), a) for c, a in links),
        kind=SpanKind(kind),
        status=Status(StatusCode(code), description),
        start_time=start,
        end_time=end,
        instrumentation_scope=scopes[_hashable(scope)] if scope is not None else None,
    )


def _hashable(scope: tuple) -> tuple:
    name, version, schema_url, attributes = scope
    return (name, version, schema_url, tuple(sorted(attributes.items())) if attributes else None)


def readable_spans(records: Sequence[SpanRecord], resource: Resource, scopes: _Scopes) -> list[ReadableSpan]:
    return [readable_span(r, resource, scopes) for r in records]


def new_scope_cache() -> _Scopes:
    return _Scopes()


def frame(payload: object) -> bytes:
    """One message on the pipe: a 4-byte big-endian length, then the pickle."""
    data = pickle.dumps(payload, protocol=pickle.HIGHEST_PROTOCOL)
    return _LENGTH.pack(len(data)) + data


def read_frame(stream) -> object | None:
    """The next message from a binary file object, or None at the end of the stream."""
    data = _read_payload(stream)
    return None if data is None else pickle.loads(data)


def _read_payload(stream) -> bytes | None:
    head = stream.read(_LENGTH.size)
    if len(head) < _LENGTH.size:
        return None
    (size,) = _LENGTH.unpack(head)
    data = stream.read(size)
    return data if len(data) == size else None
