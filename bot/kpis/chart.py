"""A model's latency p99 and error ratio over a window, as one PNG with two panels (their
units differ, so they do not share an axis). matplotlib is the optional `graphs` extra,
imported on first use; without it `render_kpi_chart` raises `GraphsUnavailable`.

The series come from range queries of the same PromQL as the KPIs, with a short rate range
(`chart_rate_range`) so each point is "how it was then", not the whole window's figure.
"""

from __future__ import annotations

import importlib
import io
import math
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from bot.diagnostics.graph import GraphsUnavailable
from bot.diagnostics.prometheus import Series

__all__ = ["CHART_POINTS", "chart_rate_range", "render_kpi_chart"]

CHART_POINTS = 120


def chart_rate_range(step: timedelta) -> int:
    """Seconds of each point's rate: two steps, at least a minute (a few scrapes) unless the
    step itself is shorter than 30s (short windows of tests and quick looks)."""
    seconds = int(step.total_seconds())
    return max(2 * seconds, 60 if seconds >= 30 else 4 * max(1, seconds))


def render_kpi_chart(
    title: str, latency: Sequence[Series], errors: Sequence[Series], *, start: datetime, end: datetime
) -> bytes:
    try:
        figure = importlib.import_module("matplotlib.figure")
        backend = importlib.import_module("matplotlib.backends.backend_agg")
        mdates = importlib.import_module("matplotlib.dates")
    except ImportError as exc:
        raise GraphsUnavailable(
            f"charts disabled: install incident-bot[graphs] (matplotlib cannot be imported: {exc})"
        ) from None
    fig = figure.Figure(figsize=(10, 6), dpi=100, layout="constrained")
    backend.FigureCanvasAgg(fig)
    fig.suptitle(title.replace("$", r"\$"), x=0.01, ha="left", fontsize=13, fontweight="bold")
    panels = (("p99 latency (s)", latency, "#0072B2", 1.0), ("error ratio (%)", errors, "#D55E00", 100.0))
    for index, (label, series, colour, scale) in enumerate(panels):
        ax = fig.add_subplot(2, 1, index + 1)
        points = [(t, v * scale) for s in series[:1] for t, v in s.values if math.isfinite(v)]
        if points:
            ax.plot([t for t, _ in points], [v for _, v in points], color=colour, linewidth=1.8)
        else:
            ax.text(0.5, 0.5, "no data", transform=ax.transAxes, ha="center", va="center", color="#555")
        ax.set_ylabel(label)
        ax.set_xlim(start.astimezone(UTC), end.astimezone(UTC))
        ax.grid(True, color="#e0e0e0", linewidth=0.8)
        locator = mdates.AutoDateLocator(tz=UTC, minticks=3, maxticks=8)
        ax.xaxis.set_major_locator(locator)
        ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator, tz=UTC))
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", facecolor="white")
    return buffer.getvalue()
