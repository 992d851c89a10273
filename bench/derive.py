"""From a run's measurements to the figures the issue asks for: per path, added over direct, the gateway
against each peer, and the targets. Pure functions of the results dict."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bench.peers import DIRECT, GATEWAY_OFF, GATEWAY_ON, GATEWAY_PROXY, LITELLM, NGINX, TLS_DIRECT
from bench.stats import ratio

# Figures where lower is better and a difference between two paths is what counts ("added").
LATENCY_KEYS = ("warm_p50_ms", "warm_p99_ms", "cold_p50_ms", "cold_p99_ms", "ttfb_p50_ms", "ttfb_p99_ms",
                "chunk_delay_p99_us", "chunk_transit_p50_us", "chunk_transit_p99_us")


def _get(data: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(data, Mapping) or key not in data:
            return None
        data = data[key]
    return data


def _phase(m: Mapping[str, Any], phase: str, name: str, reference: bool) -> Any:
    entry = _get(m, phase, name)
    return _get(entry, "direct_same_blocks") if reference else entry


def figures_of(m: Mapping[str, Any], name: str, reference: bool = False) -> dict[str, Any]:
    """The absolute figures of one path; with `reference`, the latency figures of direct measured in the same
    blocks as this path (the baseline its "added" figures are taken against)."""
    warm, cold, streams, ttfb = (_phase(m, phase, name, reference) for phase in ("warm", "cold", "streams", "ttfb"))
    if ttfb is None:  # a run from before the phase of its own: the long streams' first bytes
        ttfb = streams
    out: dict[str, Any] = {
        "warm_p50_ms": _get(warm, "latency_ms", "p50"),
        "warm_p99_ms": _get(warm, "latency_ms", "p99"),
        "cold_p50_ms": _get(cold, "latency_ms", "p50"),
        "cold_p99_ms": _get(cold, "latency_ms", "p99"),
        "ttfb_p50_ms": _get(ttfb, "ttfb_ms", "p50"),
        "ttfb_p99_ms": _get(ttfb, "ttfb_ms", "p99"),
        "chunk_delay_p99_us": _get(streams, "chunk_delay_us", "p99"),
        "chunk_transit_p50_us": _get(streams, "chunk_transit_us", "p50"),
        "chunk_transit_p99_us": _get(streams, "chunk_transit_us", "p99"),
    }
    if reference:
        return out
    stalls = _get(m, "stalls", name) or {}
    levels = [lv for lv in stalls.get("levels", []) if lv.get("held") is not None]
    held = [lv for lv in levels if lv.get("held")]
    per_stream = (held[-1] if held else levels[-1] if levels else {}).get("rss_per_stream_kib")
    rss_idle = _get(m, "rss_idle_after_load_kib", name)
    rss_fresh = _get(m, "rss_fresh_kib", name)
    return out | {
        "rps": _get(m, "throughput", name, "rps"),
        "rps_errors": _get(m, "throughput", name, "errors"),
        "server_cpu_ms_per_request": _get(m, "throughput", name, "server_cpu_ms_per_request"),
        "streams_held": stalls.get("max_held"),
        "streams_tried": max((lv["level"] for lv in levels), default=None),
        "rss_fresh_mib": round(rss_fresh / 1024, 1) if rss_fresh else None,
        "rss_idle_mib": round(rss_idle / 1024, 1) if rss_idle else None,
        "rss_per_stream_kib": per_stream,
        "telemetry_cpu_us_per_request": _get(m, "throughput", name, "telemetry_cpu_us_per_request"),
    }


def _minus(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, Any]:
    return {key: round(a[key] - b[key], 4) if a.get(key) is not None and b.get(key) is not None else None
            for key in LATENCY_KEYS}


def added_over_direct(m: Mapping[str, Any], name: str) -> dict[str, Any]:
    """Latency figures of `name` minus those of direct measured in the same blocks."""
    return _minus(figures_of(m, name), figures_of(m, name, reference=True))


def compare(figures: Mapping[str, Mapping[str, Any]], added: Mapping[str, Mapping[str, Any]], path: str,
            other: str) -> dict[str, Any]:
    """`path` against `other`: latency differences (each path's added figure, so each against its own blocks'
    direct; for `other` = direct simply the added figure) and the throughput ratio."""
    zero = dict.fromkeys(LATENCY_KEYS, 0.0)
    out = _minus(added.get(path, {}), added.get(other, zero))
    mine, theirs = figures[path], figures[other]
    out["rps_ratio"] = ratio(mine.get("rps"), theirs.get("rps"))
    out["streams_held"] = [mine.get("streams_held"), theirs.get("streams_held")]
    return out


@dataclass(frozen=True, slots=True)
class Target:
    label: str
    value: float | None
    limit: float
    at_least: bool  # True: value >= limit passes; False: value <= limit passes
    unit: str
    note: str | None = None

    def as_dict(self) -> dict[str, Any]:
        met = None if self.value is None else (self.value >= self.limit if self.at_least else self.value <= self.limit)
        return {"target": self.label, "value": self.value, "limit": self.limit, "unit": self.unit, "met": met,
                "note": self.note}


def targets(figures: Mapping[str, Mapping[str, Any]], added: Mapping[str, Mapping[str, Any]]) -> list[dict]:
    """The issue's targets for the gateway with tracing on; None where a figure is missing."""
    on = added.get(GATEWAY_ON, {})
    mine = figures.get(GATEWAY_ON, {})
    held, tried = mine.get("streams_held"), mine.get("streams_tried")
    streams_note = None
    if held is not None and tried is not None and tried < 1000 and held == tried:
        streams_note = f"only levels up to {tried} were tried in this run"
    litellm_rps = figures.get(LITELLM, {}).get("rps")
    nginx_rps = figures.get(NGINX, {}).get("rps")
    items = [
        Target("added latency p50 (warm, non-streamed, c=1)", on.get("warm_p50_ms"), 0.3, False, "ms"),
        Target("added latency p99 (warm, non-streamed, c=1)", on.get("warm_p99_ms"), 1.0, False, "ms"),
        Target("added time to first byte p99 (SSE)", on.get("ttfb_p99_ms"), 0.5, False, "ms"),
        Target("added per-chunk delay p99 (SSE)", on.get("chunk_delay_p99_us"), 20.0, False, "us"),
        Target("concurrent streams held without stall", held, 1000, True, "streams", streams_note),
        Target("throughput vs LiteLLM (c=32)", ratio(mine.get("rps"), litellm_rps), 10.0, True, "x",
               None if litellm_rps else "LiteLLM not measured"),
        Target("throughput vs nginx (c=32)", ratio(mine.get("rps"), nginx_rps), 0.5, True, "x",
               None if nginx_rps else "nginx not measured"),
    ]
    return [t.as_dict() for t in items]


def _minus_or_none(a: Any, b: Any) -> float | None:
    return round(a - b, 4) if a is not None and b is not None else None


def tracing_targets(figures: Mapping[str, Mapping[str, Any]], added: Mapping[str, Mapping[str, Any]],
                    telemetry: Mapping[str, Any] | None, sink_spans: int | None) -> list[dict]:
    """Issue 19's targets: tracing invisible in the relay's latency (on minus off, same run), the relay near nginx,
    every request traced, tracing CPU per call, memory."""
    on, off, nginx = (added.get(name, {}) for name in (GATEWAY_ON, GATEWAY_OFF, NGINX))
    mine = figures.get(GATEWAY_ON, {})
    both_idle = mine.get("rss_idle_mib")
    telemetry = telemetry or {}
    lost = telemetry.get("spans_lost")
    items = [
        Target("tracing on minus off: p50 (warm, c=1)", _minus_or_none(on.get("warm_p50_ms"), off.get("warm_p50_ms")),
               0.02, False, "ms"),
        Target("tracing on minus off: p99 (warm, c=1)", _minus_or_none(on.get("warm_p99_ms"), off.get("warm_p99_ms")),
               0.1, False, "ms"),
        Target("tracing on minus off: TTFB p99 (SSE)", _minus_or_none(on.get("ttfb_p99_ms"), off.get("ttfb_p99_ms")),
               0.05, False, "ms"),
        Target("per-chunk delay p99 over nginx's",
               _minus_or_none(on.get("chunk_delay_p99_us"), nginx.get("chunk_delay_p99_us")), 20.0, False, "us"),
        Target("TTFB p99 over nginx's", _minus_or_none(on.get("ttfb_p99_ms"), nginx.get("ttfb_p99_ms")), 0.2, False,
               "ms"),
        Target("requests relayed untraced (c=32 and every other test)", telemetry.get("untraced_requests"), 0, False,
               "requests"),
        Target("spans lost by the telemetry process (queue full, failed export)",
               sum(lost.values()) if isinstance(lost, Mapping) else None, 0, False, "spans",
               f"{sink_spans} spans reached the sink" if sink_spans is not None else None),
        Target("tracing CPU per traced call (telemetry process, c=32 run and its settling)",
               _get(figures, GATEWAY_ON, "telemetry_cpu_us_per_request"), 25.0, False, "us"),
        Target("RSS idle, relay and telemetry process together", both_idle, 60.0, False, "MiB"),
        Target("RSS per open stream", mine.get("rss_per_stream_kib"), 20.0, False, "KiB"),
    ]
    return [t.as_dict() for t in items]


def https_proxy(figures: Mapping[str, Mapping[str, Any]], added: Mapping[str, Mapping[str, Any]]
                ) -> dict[str, Any] | None:
    """The gateway as an HTTPS proxy: what it adds beyond TLS itself (gateway-proxy minus tls-direct, each against
    its own blocks' direct), beside what the traced gateway adds over plain HTTP (gateway-on minus direct). Each
    row's req/s ratio is between two paths measured by the same load generator."""
    if GATEWAY_PROXY not in added or TLS_DIRECT not in added:
        return None
    rows = {f"{GATEWAY_PROXY} minus {TLS_DIRECT}": compare(figures, added, GATEWAY_PROXY, TLS_DIRECT)}
    if GATEWAY_ON in added:
        rows[f"{GATEWAY_ON} minus {DIRECT}"] = compare(figures, added, GATEWAY_ON, DIRECT)
    return rows


def https_proxy_targets(rows: Mapping[str, Mapping[str, Any]] | None) -> list[dict]:
    """Issue 15: an intercepted request adds no more than the direct path plus the TLS work. Beyond TLS, the proxy
    may add what the plain gateway adds, plus a noise allowance (0.05 ms at p50, 0.2 ms at p99 and TTFB p99)."""
    if not rows or len(rows) < 2:
        return []
    over_tls, plain = rows.values()
    items = []
    for key, label, slack in (("warm_p50_ms", "p50 (warm, c=1)", 0.05), ("warm_p99_ms", "p99 (warm, c=1)", 0.2),
                              ("ttfb_p99_ms", "TTFB p99 (SSE)", 0.2)):
        limit = None if plain.get(key) is None else round(plain[key] + slack, 4)
        items.append(Target(f"HTTPS proxy beyond TLS: {label}", over_tls.get(key), limit if limit is not None else 0,
                            False, "ms", f"gateway-on adds {plain.get(key)} ms over plain HTTP; allowance {slack} ms"))
    return [t.as_dict() for t in items]


def derive(results: Mapping[str, Any]) -> dict[str, Any]:
    measurements = results.get("measurements", {})
    names = [name for name, path in results.get("paths", {}).items() if path.get("status") == "ok"]
    figures = {name: figures_of(measurements, name) for name in names}
    added = {name: added_over_direct(measurements, name) for name in names if name != DIRECT}
    added_table = {name: compare(figures, added, name, DIRECT) for name in added if DIRECT in figures}
    gateway_vs = {
        gateway: {other: compare(figures, added, gateway, other) for other in names if other != gateway}
        for gateway in (GATEWAY_OFF, GATEWAY_ON)
        if gateway in figures
    }
    sink_spans = _get(results, "otlp_sink", "spans")
    proxy_rows = https_proxy(figures, added_table)
    return {"figures": figures, "added_vs_direct": added_table, "gateway_vs": gateway_vs,
            "https_proxy": proxy_rows, "https_proxy_targets": https_proxy_targets(proxy_rows),
            "targets": targets(figures, added_table),
            "tracing_targets": tracing_targets(figures, added_table, results.get("gateway_on_telemetry"), sink_spans)}
