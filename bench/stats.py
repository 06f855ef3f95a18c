"""Figures the benchmarks print: percentiles over one run's samples."""

from __future__ import annotations

import statistics
from collections.abc import Sequence

__all__ = ["describe", "percentile"]


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile: a value that was really observed, never an interpolation."""
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def describe(name: str, seconds: Sequence[float], *, width: int = 22) -> str:
    ms = [v * 1000 for v in seconds]
    return (
        f"{name:<{width}} n={len(ms):<4} median={statistics.median(ms):7.1f} ms  "
        f"p99={percentile(ms, 0.99):7.1f} ms  max={max(ms):7.1f} ms"
    )
