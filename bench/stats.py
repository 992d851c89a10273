"""Quantile summaries and the deltas / ratios between paths."""

from __future__ import annotations

import math
from collections.abc import Sequence

Summary = dict[str, float]


def quantile(ordered: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default) on an already sorted sequence."""
    if not ordered:
        return math.nan
    pos = (len(ordered) - 1) * q
    low = math.floor(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def summarize(values: Sequence[float], scale: float = 1.0) -> Summary:
    """n, mean, min, p50, p90, p99, p99.9 (only from 1000 values on), max; each value multiplied by `scale`."""
    ordered = sorted(v * scale for v in values)
    if not ordered:
        return {"n": 0}
    out: Summary = {
        "n": len(ordered),
        "mean": sum(ordered) / len(ordered),
        "min": ordered[0],
        "p50": quantile(ordered, 0.5),
        "p90": quantile(ordered, 0.9),
        "p99": quantile(ordered, 0.99),
        "max": ordered[-1],
    }
    if len(ordered) >= 1000:
        out["p999"] = quantile(ordered, 0.999)
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in out.items()}


def delta(path: Summary | None, reference: Summary | None, key: str) -> float | None:
    """`path[key] - reference[key]`, or None when either is missing."""
    if not path or not reference or key not in path or key not in reference:
        return None
    return round(path[key] - reference[key], 4)


def ratio(value: float | None, reference: float | None) -> float | None:
    if value is None or not reference:
        return None
    return round(value / reference, 3)
