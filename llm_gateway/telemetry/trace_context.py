"""Trace context that comes from outside the gateway, in W3C Trace Context form.

- `TRACEPARENT` / `TRACESTATE` in the gateway's environment (OpenTelemetry's environment-variable carrier, as a
  CI job or `llm-gateway run` sets it): every session root becomes a child of that span, in that trace.
- A `traceparent` header on a model request (an app traced by its own OTel SDK), per
  `LLM_GATEWAY_INCOMING_TRACEPARENT`: `child` (default) puts the chat span in the caller's trace under the caller's
  span, with a link to the turn it belongs to; `link` keeps it in the session's trace with a link to the caller's
  span; `ignore` leaves it alone. The header is relayed unchanged either way.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from opentelemetry import trace
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

log = logging.getLogger("llm_gateway.telemetry")

ENV_INCOMING = "LLM_GATEWAY_INCOMING_TRACEPARENT"
INCOMING_MODES = ("child", "link", "ignore")

_W3C = TraceContextTextMapPropagator()


def extract(carrier: Mapping[str, str]) -> trace.SpanContext | None:
    """The remote span a `traceparent` (and `tracestate`) names, or None when absent or malformed."""
    traceparent = carrier.get("traceparent")
    if not traceparent:
        return None
    fields = {"traceparent": traceparent}
    if carrier.get("tracestate"):
        fields["tracestate"] = carrier["tracestate"]
    span_context = trace.get_current_span(_W3C.extract(fields)).get_span_context()
    return span_context if span_context.is_valid else None


def environment_parent(env: Mapping[str, str]) -> trace.SpanContext | None:
    """The span `TRACEPARENT` names in the environment, or None."""
    span_context = extract({"traceparent": env.get("TRACEPARENT", ""), "tracestate": env.get("TRACESTATE", "")})
    if span_context is None:
        if env.get("TRACEPARENT"):
            log.warning("TRACEPARENT=%r is not a W3C traceparent: sessions start traces of their own",
                        env["TRACEPARENT"])
        return None
    return span_context


def incoming_mode(env: Mapping[str, str]) -> str:
    value = (env.get(ENV_INCOMING) or "child").strip().lower()
    if value not in INCOMING_MODES:
        log.warning("%s=%r is not one of %s: using 'child'", ENV_INCOMING, value, ", ".join(INCOMING_MODES))
        return "child"
    return value


def chat_parent(
    mode: str, headers: Mapping[str, str], session_parent: trace.SpanContext
) -> tuple[trace.SpanContext, list[trace.Link]]:
    """The parent and links of a chat span, given the request's headers and its place in the session."""
    caller = extract(headers) if mode != "ignore" else None
    if caller is None:
        return session_parent, []
    if mode == "link":
        return session_parent, [trace.Link(caller)]
    links = [trace.Link(session_parent)] if session_parent.is_valid else []
    return caller, links
