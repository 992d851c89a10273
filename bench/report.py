"""The short Markdown report of one run (printed and written beside the JSON)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from bench.peers import GATEWAY_OFF, GATEWAY_ON


def _num(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}".rstrip("0").rstrip(".") if digits else f"{value:.0f}"
    return str(value)


def _signed(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    text = _num(value, digits)
    return text if text.startswith("-") else f"+{text}"


def _pair(a: Any, b: Any, fmt=_num) -> str:
    return f"{fmt(a)} / {fmt(b)}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def _paths(results: Mapping[str, Any]) -> list[str]:
    rows = []
    for name, path in results.get("paths", {}).items():
        status = path["status"] if path["status"] == "ok" else f"**{path['status']}**"
        rows.append([name, status, path.get("version") or "-", (path.get("reason") or "").replace("\n", " ")[:300]])
    return _table(["path", "status", "version", "reason"], rows)


def _absolute(figures: Mapping[str, Mapping[str, Any]]) -> list[str]:
    rows = []
    for name, f in figures.items():
        rows.append([
            name,
            _pair(f["warm_p50_ms"], f["warm_p99_ms"]),
            _pair(f["cold_p50_ms"], f["cold_p99_ms"]),
            _pair(f["ttfb_p50_ms"], f["ttfb_p99_ms"]),
            _num(f["chunk_delay_p99_us"], 1),
            _num(f["rps"], 0) + (f" ({f['rps_errors']} errors)" if f.get("rps_errors") else ""),
            _num(f["server_cpu_ms_per_request"], 4),
            _num(f["streams_held"]) + (f" of {f['streams_tried']}" if f.get("streams_tried") else ""),
            _num(f["rss_idle_mib"], 1),
            _num(f["rss_per_stream_kib"], 1),
        ])
    return _table(
        ["path", "p50 / p99 ms", "cold p50 / p99 ms", "TTFB p50 / p99 ms", "chunk delay p99 us", "req/s c=32",
         "server CPU ms/req", "streams held", "RSS idle MiB", "RSS/stream KiB"],
        rows,
    )


def _deltas(title: str, comparisons: Mapping[str, Mapping[str, Any]]) -> list[str]:
    rows = []
    for name, c in comparisons.items():
        rows.append([
            name,
            _pair(c["warm_p50_ms"], c["warm_p99_ms"], _signed),
            _pair(c["cold_p50_ms"], c["cold_p99_ms"], _signed),
            _pair(c["ttfb_p50_ms"], c["ttfb_p99_ms"], _signed),
            _signed(c["chunk_delay_p99_us"], 1),
            _signed(c["chunk_transit_p50_us"], 1),
            _num(c["rps_ratio"]) + ("x" if c["rps_ratio"] is not None else ""),
            _pair(*c["streams_held"]),
        ])
    return _table(
        [title, "p50 / p99 ms", "cold p50 / p99 ms", "TTFB p50 / p99 ms", "chunk delay p99 us",
         "chunk transit p50 us", "req/s ratio", "streams held"],
        rows,
    )


def _targets(items: Sequence[Mapping[str, Any]], title: str = "target (gateway, tracing on)") -> list[str]:
    rows = []
    for t in items:
        met = {True: "yes", False: "**no**", None: "not measured"}[t["met"]]
        sign = ">=" if t["unit"] in ("streams", "x") else "<="
        value = _num(t["value"], 3) + ("" if t["value"] is None else f" {t['unit']}")
        rows.append([t["target"], f"{sign} {_num(t['limit'])} {t['unit']}", value, met, t.get("note") or ""])
    return _table([title, "limit", "measured", "met", "note"], rows)


def _profile(profile: Mapping[str, Any]) -> list[str]:
    lines: list[str] = []
    for name, p in profile.items():
        if not isinstance(p, Mapping):
            continue
        if p.get("status") != "ok":
            lines.append(f"- {name}: {p.get('status')} ({p.get('reason')})")
            continue
        lines.append(f"\n**{name}**: gateway CPU {_num(p['cpu_us_per_unit'], 1)} us per {p['unit']} under py-spy "
                     f"({p['units']} {p['unit']}s, {p['gateway_cpu_s']} s CPU, {p['samples']} samples; stacks in "
                     f"`{p['stacks_file']}`)\n")
        per_unit = p.get("cpu_us_per_unit") or 0
        rows = [[a["what"], f"{a['share'] * 100:.1f}%", _num(a["share"] * per_unit, 1)] for a in p["owners"]]
        lines += _table(["where the CPU goes", "share", f"us per {p['unit']}"], rows)
        lines.append("")
        rows = [[f"`{a['what']}`", f"{a['share'] * 100:.1f}%"] for a in p["top_self"][:12]]
        lines += _table(["function (self time)", "share"], rows)
    return lines


def _noise(results: Mapping[str, Any]) -> str:
    """How busy the machine was with work the harness did not start: figures from a busy machine are noisier."""
    phases = results.get("measurements", {}).get("noise", {})
    parts = [f"{name} {_num((n.get('foreign_share') or 0) * 100, 0)}%" for name, n in phases.items()]
    waited_s = sum(q.get("waited_s", 0) for q in (results.get("quiet_checks") or {}).values())
    waited = f" (after waiting {waited_s:.0f} s in all for quiet moments)" if waited_s else ""
    return (f"Other processes' share of the machine's CPUs during each phase{waited}: " + ", ".join(parts) + "."
            if parts else "")


def markdown(results: Mapping[str, Any]) -> str:
    derived = results.get("derived", {})
    machine = results.get("machine", {})
    lines = [
        f"# llm-gateway benchmark, {results.get('started_at')} ({results.get('mode')} run, "
        f"{results.get('duration_s')} s)",
        "",
        f"Machine: {machine.get('cpu')}, {machine.get('cpus')} CPUs, {machine.get('os')}, Python "
        f"{machine.get('python')}. Pinning: {results.get('pinning')}. Load: "
        f"{results.get('load_generators', {}).get('throughput')} for req/s, bench.loadgen for the rest.",
        "",
        *_paths(results),
        "",
        "## Figures per path",
        "",
        *_absolute(derived.get("figures", {})),
        "",
        "## Added over direct (path minus direct, same run)",
        "",
        *_deltas("path", derived.get("added_vs_direct", {})),
    ]
    for gateway in (GATEWAY_ON, GATEWAY_OFF):
        if gateway in derived.get("gateway_vs", {}):
            lines += ["", f"## {gateway} against each path (gateway minus other; req/s gateway / other)", "",
                      *_deltas("other", derived["gateway_vs"][gateway])]
    if derived.get("https_proxy"):
        lines += ["", "## The gateway as an HTTPS proxy (CONNECT, TLS kept alive; req/s from bench.loadgen)", "",
                  *_deltas("rows", derived["https_proxy"]), "", *_targets(derived.get("https_proxy_targets", []),
                                                                           "target (issue 15)")]
    lines += ["", "## Targets", "", *_targets(derived.get("targets", []))]
    if derived.get("tracing_targets"):
        lines += ["", "## Issue 19's targets (tracing that keeps up)", "",
                  *_targets(derived["tracing_targets"], "target")]
    direct_rps = derived.get("figures", {}).get("direct", {}).get("rps")
    if direct_rps:
        lines += ["", f"Requests/s of every path are bounded by the harness CPU (upstream and wrk share it): direct "
                      f"reaches {direct_rps:.0f}/s. A path whose server CPU per request is well under 1/that is "
                      "not CPU-bound at its figure."]
    lines += ["", _noise(results)]
    sink = results.get("otlp_sink")
    if sink:
        lines += ["", f"OTLP sink received {sink.get('spans')} spans in {sink.get('exports')} exports "
                      f"({sink.get('bytes')} bytes)."]
    telemetry = results.get("gateway_on_telemetry")
    if telemetry:
        lines += ["", f"gateway-on relayed {telemetry.get('untraced_requests')} requests untraced because its "
                      "telemetry process had fallen behind (backlog over its bound; traffic is never slowed for "
                      f"tracing); its telemetry process lost spans: {telemetry.get('spans_lost')}; telemetry process "
                      f"running at the end: {telemetry.get('process_running')}."]
    if results.get("profile"):
        lines += ["", "## Profile (py-spy)", *_profile(results["profile"])]
    return "\n".join(lines) + "\n"
