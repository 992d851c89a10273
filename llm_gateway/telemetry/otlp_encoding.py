"""Finished spans encoded straight to OTLP protobuf bytes (an ExportTraceServiceRequest).

The OTLP exporter's own encoder builds a protobuf message object for every span, attribute and value and then
serializes the tree: about 120 µs for a span with 25 attributes, the largest single cost of tracing a call. This
writes the wire format directly, field by field, and keeps the bytes of what repeats from span to span: each
attribute key, each (key, text value) pair (model, provider, operation, session id...), the resource and the
instrumentation scope. The output is the same bytes as the exporter's encoder for the same spans (a test holds
them side by side), so what the backend receives does not change.

Sans-IO: spans in, bytes out.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry.attributes import BoundedAttributes
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind

log = logging.getLogger("llm_gateway.telemetry")

# Wire types (protobuf encoding): varint, 64-bit, length-delimited, 32-bit.
_VARINT, _I64, _LEN, _I32 = 0, 1, 2, 5


def _tag(field: int, wire_type: int) -> bytes:
    return _varint((field << 3) | wire_type)


def _varint(value: int) -> bytes:
    if 0 <= value < 0x80:
        return _ONE_BYTE[value]
    if 0 < value < 0x4000:  # two bytes: most token counts and lengths
        return bytes(((value & 0x7F) | 0x80, value >> 7))
    if value < 0:  # int64: two's complement, always ten bytes
        value &= (1 << 64) - 1
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


_ONE_BYTE = [bytes([n]) for n in range(0x80)]


def _length(payload: bytes) -> bytes:
    size = len(payload)
    return _ONE_BYTE[size] if size < 0x80 else _varint(size)


def _fixed64(value: int) -> bytes:
    return struct.pack("<Q", value)


# ExportTraceServiceRequest.resource_spans; ResourceSpans: resource, scope_spans, schema_url;
# ScopeSpans: scope, spans, schema_url; InstrumentationScope: name, version, attributes; Resource: attributes.
_REQUEST_RESOURCE_SPANS = _tag(1, _LEN)
_RESOURCE_SPANS_RESOURCE, _RESOURCE_SPANS_SCOPE_SPANS, _RESOURCE_SPANS_SCHEMA_URL = (_tag(n, _LEN) for n in (1, 2, 3))
_SCOPE_SPANS_SCOPE, _SCOPE_SPANS_SPANS, _SCOPE_SPANS_SCHEMA_URL = (_tag(n, _LEN) for n in (1, 2, 3))
_SCOPE_NAME, _SCOPE_VERSION, _SCOPE_ATTRIBUTES = (_tag(n, _LEN) for n in (1, 2, 3))
_RESOURCE_ATTRIBUTES = _tag(1, _LEN)
# Span
_SPAN_TRACE_ID, _SPAN_SPAN_ID, _SPAN_TRACE_STATE, _SPAN_PARENT_SPAN_ID, _SPAN_NAME = (
    _tag(n, _LEN) for n in (1, 2, 3, 4, 5))
_SPAN_KIND = _tag(6, _VARINT)
_SPAN_START, _SPAN_END = _tag(7, _I64), _tag(8, _I64)
_SPAN_ATTRIBUTES = _tag(9, _LEN)
_SPAN_DROPPED_ATTRIBUTES = _tag(10, _VARINT)
_SPAN_EVENTS = _tag(11, _LEN)
_SPAN_DROPPED_EVENTS = _tag(12, _VARINT)
_SPAN_LINKS = _tag(13, _LEN)
_SPAN_DROPPED_LINKS = _tag(14, _VARINT)
_SPAN_STATUS = _tag(15, _LEN)
_SPAN_FLAGS = _tag(16, _I32)
# Span.Event: time_unix_nano, name, attributes, dropped_attributes_count
_EVENT_TIME, _EVENT_NAME, _EVENT_ATTRIBUTES = _tag(1, _I64), _tag(2, _LEN), _tag(3, _LEN)
_EVENT_DROPPED = _tag(4, _VARINT)
# Span.Link: trace_id, span_id, attributes, dropped_attributes_count, flags (its trace_state, 3, the exporter's
# encoder leaves out)
_LINK_TRACE_ID, _LINK_SPAN_ID, _LINK_ATTRIBUTES = _tag(1, _LEN), _tag(2, _LEN), _tag(4, _LEN)
_LINK_DROPPED, _LINK_FLAGS = _tag(5, _VARINT), _tag(6, _I32)
# Status: message, code
_STATUS_MESSAGE, _STATUS_CODE = _tag(2, _LEN), _tag(3, _VARINT)
# KeyValue: key, value; AnyValue: string, bool, int, double, array, kvlist, bytes; ArrayValue and KeyValueList: values
_KEY, _VALUE = _tag(1, _LEN), _tag(2, _LEN)
_STRING, _BOOL, _INT, _DOUBLE, _ARRAY, _KVLIST, _BYTES = (
    _tag(1, _LEN), _tag(2, _VARINT), _tag(3, _VARINT), _tag(4, _I64), _tag(5, _LEN), _tag(6, _LEN), _tag(7, _LEN))
_VALUES = _tag(1, _LEN)

_KINDS = {SpanKind.INTERNAL: 1, SpanKind.SERVER: 2, SpanKind.CLIENT: 3, SpanKind.PRODUCER: 4, SpanKind.CONSUMER: 5}
# SpanFlags: the span says whether its parent is remote (bit 8), and whether it is (bit 9).
_HAS_IS_REMOTE, _IS_REMOTE = 0x100, 0x200
#: the flags' fixed32, by whether the parent (a span's) or the linked span (a link's) is remote
_REMOTE_FLAGS = {False: struct.pack("<I", _HAS_IS_REMOTE), True: struct.pack("<I", _HAS_IS_REMOTE | _IS_REMOTE)}
_INT64 = range(-(1 << 63), 1 << 63)
_UINT63 = 1 << 63
_pack_double = struct.Struct("<d").pack

#: how many attribute keys and (key, text) pairs are kept encoded; past that the cache starts over
CACHE_ENTRIES = 4096


def _field(tag: bytes, payload: bytes) -> bytes:
    return tag + _length(payload) + payload


def _text(tag: bytes, value: str | None) -> bytes:
    """A string field, left out when empty (proto3's rule for fields without presence)."""
    return _field(tag, value.encode()) if value else b""


def _count(tag: bytes, value: int) -> bytes:
    return tag + _varint(value) if value else b""


class OtlpSpanEncoder:
    """`encode(spans)` -> the bytes of an ExportTraceServiceRequest. Threads may share one: what it remembers is
    only ever added (always the same bytes for the same key) or forgotten whole."""

    def __init__(self, cache_entries: int = CACHE_ENTRIES) -> None:
        self._cache_entries = cache_entries
        self._keys: dict[str, bytes] = {}
        self._remembered: dict[tuple[str, str], bytes] = {}
        self._resources: dict[int, tuple[Resource, bytes]] = {}
        self._scopes: dict[int, tuple[InstrumentationScope | None, bytes]] = {}

    def forget(self) -> None:
        """Drops the kept attribute keys and (key, text) pairs: they hold one entry per session id, scattered over
        the allocator's pages, which keep those pages from going back to the system after the sessions ended."""
        self._keys.clear()
        self._remembered.clear()

    def encode(self, spans: Sequence[ReadableSpan]) -> bytes:
        # Grouped as OTLP nests them: resource, then instrumentation scope, in the order first seen.
        groups: dict[int, dict[int, list[bytes]]] = {}
        for span in spans:
            resource_key = self._resource_key(span.resource)
            scope_key = self._scope_key(span.instrumentation_scope or None)
            groups.setdefault(resource_key, {}).setdefault(scope_key, []).append(self._span(span))
        out = []
        for resource_key, scopes in groups.items():
            resource, resource_bytes = self._resources[resource_key]
            parts = [resource_bytes]
            for scope_key, encoded_spans in scopes.items():
                scope, scope_bytes = self._scopes[scope_key]
                scope_spans = [scope_bytes]
                scope_spans += [_SCOPE_SPANS_SPANS + _length(s) + s for s in encoded_spans]
                if scope is not None:
                    scope_spans.append(_text(_SCOPE_SPANS_SCHEMA_URL, scope.schema_url))
                parts.append(_field(_RESOURCE_SPANS_SCOPE_SPANS, b"".join(scope_spans)))
            parts.append(_text(_RESOURCE_SPANS_SCHEMA_URL, resource.schema_url))
            out.append(_field(_REQUEST_RESOURCE_SPANS, b"".join(parts)))
        return b"".join(out)

    def _resource_key(self, resource: Resource) -> int:
        key = id(resource)
        if key not in self._resources:  # the object is held with its bytes, so its id stays its own
            self._resources[key] = (resource, _field(_RESOURCE_SPANS_RESOURCE, self._attributes(_RESOURCE_ATTRIBUTES,
                                                                                                resource.attributes)))
        return key

    def _scope_key(self, scope: InstrumentationScope | None) -> int:
        key = id(scope)
        if key not in self._scopes:
            payload = b"" if scope is None else b"".join((
                _text(_SCOPE_NAME, scope.name), _text(_SCOPE_VERSION, scope.version),
                self._attributes(_SCOPE_ATTRIBUTES, scope.attributes)))
            self._scopes[key] = (scope, _field(_SCOPE_SPANS_SCOPE, payload))
        return key

    def _span(self, span: ReadableSpan) -> bytes:
        context = span.get_span_context()
        parent = span.parent
        status = span.status
        status_payload = _text(_STATUS_MESSAGE, status.description) + _count(_STATUS_CODE, status.status_code.value)
        return b"".join((
            _SPAN_TRACE_ID, b"\x10", context.trace_id.to_bytes(16, "big"),
            _SPAN_SPAN_ID, b"\x08", context.span_id.to_bytes(8, "big"),
            _trace_state(_SPAN_TRACE_STATE, context),
            _SPAN_PARENT_SPAN_ID + b"\x08" + parent.span_id.to_bytes(8, "big") if parent else b"",
            _text(_SPAN_NAME, span.name),
            _count(_SPAN_KIND, _KINDS[span.kind]),
            _SPAN_START + _fixed64(span.start_time) if span.start_time else b"",
            _SPAN_END + _fixed64(span.end_time) if span.end_time else b"",
            self._attributes(_SPAN_ATTRIBUTES, _own_attributes(span)),
            _count(_SPAN_DROPPED_ATTRIBUTES, span.dropped_attributes),
            b"".join(self._event(event) for event in span.events),
            _count(_SPAN_DROPPED_EVENTS, span.dropped_events),
            b"".join(self._link(link) for link in span.links),
            _count(_SPAN_DROPPED_LINKS, span.dropped_links),
            _field(_SPAN_STATUS, status_payload),
            _SPAN_FLAGS, _REMOTE_FLAGS[parent is not None and parent.is_remote],
        ))

    def _event(self, event: Any) -> bytes:
        payload = b"".join((
            _EVENT_TIME + _fixed64(event.timestamp) if event.timestamp else b"",
            _text(_EVENT_NAME, event.name),
            self._attributes(_EVENT_ATTRIBUTES, event.attributes),
            _count(_EVENT_DROPPED, event.dropped_attributes),
        ))
        return _field(_SPAN_EVENTS, payload)

    def _link(self, link: Any) -> bytes:
        context = link.context
        payload = b"".join((
            _LINK_TRACE_ID, b"\x10", context.trace_id.to_bytes(16, "big"),
            _LINK_SPAN_ID, b"\x08", context.span_id.to_bytes(8, "big"),
            self._attributes(_LINK_ATTRIBUTES, link.attributes),
            _count(_LINK_DROPPED, link.dropped_attributes),
            _LINK_FLAGS, _REMOTE_FLAGS[context.is_remote],
        ))
        return _field(_SPAN_LINKS, payload)

    def _attributes(self, tag: bytes, attributes: Mapping[str, Any] | None) -> bytes:
        """Each attribute as a KeyValue field with `tag`; one that cannot be encoded is left out and logged, as the
        exporter's encoder does."""
        if not attributes:
            return b""
        if isinstance(attributes, BoundedAttributes):
            # its own items() goes through the Mapping mixins, a lookup per key
            attributes = getattr(attributes, "_dict", attributes)
        parts = []
        remembered, keys = self._remembered, self._keys
        for key, value in attributes.items():
            kind = type(value)
            try:
                if kind is str:  # numbers mostly differ from span to span (tokens, times): not kept
                    message = remembered.get((key, value))
                    if message is None:
                        message = self._remember(remembered, (key, value), self._key_value(key, value))
                elif kind is int and 0 <= value < _UINT63:  # token counts, ports, status codes: the common case
                    number = _INT + _varint(value)
                    payload = (keys.get(key) or self._key(key)) + _VALUE + _ONE_BYTE[len(number)] + number
                    message = _ONE_BYTE[len(payload)] + payload if len(payload) < 0x80 else _length(payload) + payload
                else:
                    message = self._key_value(key, value)
            except (TypeError, ValueError) as exc:
                log.error("llm-gateway: cannot encode span attribute %s: %s", key, exc)
                continue
            parts.append(message)
        return tag + tag.join(parts) if parts else b""  # each message after its field's tag

    def _key_value(self, key: str, value: Any) -> bytes:
        """A KeyValue message, length first (what follows its field's tag)."""
        payload = (self._keys.get(key) or self._key(key)) + _field(_VALUE, _any_value(value, self))
        return _length(payload) + payload

    def _key(self, key: str) -> bytes:
        return self._remember(self._keys, key, _text(_KEY, key))

    def _remember(self, cache: dict, key: Any, encoded: bytes) -> bytes:
        if len(cache) >= self._cache_entries:
            cache.clear()
        cache[key] = encoded
        return encoded


def _own_attributes(span: ReadableSpan) -> Mapping[str, Any] | None:
    # `span.attributes` wraps them in a read-only proxy, whose items() costs a lookup per key.
    attributes = getattr(span, "_attributes", None)
    return attributes if isinstance(attributes, (dict, BoundedAttributes)) else span.attributes


def _trace_state(tag: bytes, context: SpanContext) -> bytes:
    state = context.trace_state
    return _text(tag, ",".join(f"{key}={value}" for key, value in state.items())) if state else b""


def _any_value(value: Any, encoder: OtlpSpanEncoder) -> bytes:
    """The payload of an AnyValue (the exporter's rules: bool before int, any sequence an array, any mapping a
    key-value list)."""
    if value is None:
        return b""
    if isinstance(value, bool):
        return _BOOL + (b"\x01" if value else b"\x00")
    if isinstance(value, str):
        return _field(_STRING, value.encode())
    if isinstance(value, int):
        if value not in _INT64:
            raise ValueError(f"{value} does not fit in int64")
        return _INT + _varint(value)
    if isinstance(value, float):
        return _DOUBLE + _pack_double(value)
    if isinstance(value, bytes):
        return _field(_BYTES, value)
    if isinstance(value, Sequence):
        return _field(_ARRAY, b"".join(_field(_VALUES, _any_value(item, encoder)) for item in value))
    if isinstance(value, Mapping):
        return _field(_KVLIST, b"".join(_VALUES + encoder._key_value(str(k), v) for k, v in value.items()))
    raise TypeError(f"invalid type {type(value).__name__} of value {value!r}")
