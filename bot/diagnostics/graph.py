"""A PNG of range series around the incident, for the thread (uploaded by the caller).

matplotlib is the optional extra `incident-bot[graphs]`, imported lazily on the first graph:
a bot without it still runs, and `render_graph` raises `GraphsUnavailable` (a `ConfigError`)
whose message the caller can post as is ("graphs disabled: install incident-bot[graphs]").
`graphs_available()` answers the same question up front without importing matplotlib.

No pyplot: pyplot keeps a global registry of figures and a process-wide current backend,
neither of which is safe from several worker threads. Each graph is a
`matplotlib.figure.Figure` drawn by its own `FigureCanvasAgg` (the Agg raster backend,
chosen explicitly per figure), so nothing is shared between calls except matplotlib's font
cache, which has its own lock.

What the picture says, 1000x500 px, dark on white:
* up to 8 series (the highest peaks in the window), each line named by the labels whose
  values differ between series; "top 8 of 23 series" in the title when some were dropped;
* a shaded band for the "before" window the baseline is measured over, a red dashed line at
  the incident's start and a green one at its resolution;
* the y axis in the diagnostic's unit ("420 ms", "95%"), the x axis in UTC;
* gaps in the data stay gaps (no line drawn across missing samples), +/-Inf samples are
  left out, and an empty result draws "no data" instead of an empty frame.
"""

from __future__ import annotations

import importlib
import importlib.util
import io
import itertools
import math
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from bot.diagnostics.prometheus import Series
from bot.diagnostics.units import format_values
from bot.errors import ConfigError

__all__ = ["MAX_SERIES", "GraphsUnavailable", "graphs_available", "render_graph"]

MAX_SERIES = 8
WIDTH_PX = 1000
HEIGHT_PX = 500
_DPI = 100
# Okabe-Ito: distinguishable with the common colour-vision deficiencies, dark enough on white.
_COLOURS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#8C564B")
_LABEL_LIMIT = 60


class GraphsUnavailable(ConfigError):
    """matplotlib is not installed: graphs are off, everything else works."""


def graphs_available() -> bool:
    """True when matplotlib can be imported (checked without importing it)."""
    try:
        return importlib.util.find_spec("matplotlib") is not None
    except (ImportError, ValueError):
        return False


def _matplotlib() -> tuple[Any, Any, Any, Any]:
    """(Figure, FigureCanvasAgg, matplotlib.dates, matplotlib.ticker), imported on first use."""
    try:
        importlib.import_module("matplotlib")
        figure = importlib.import_module("matplotlib.figure")
        backend = importlib.import_module("matplotlib.backends.backend_agg")
        dates = importlib.import_module("matplotlib.dates")
        ticker = importlib.import_module("matplotlib.ticker")
    except ImportError as exc:
        raise GraphsUnavailable(
            f"graphs disabled: install incident-bot[graphs] (matplotlib cannot be imported: {exc})"
        ) from None
    return figure.Figure, backend.FigureCanvasAgg, dates, ticker


def _legend_name(series: Series, names: Sequence[str]) -> str:
    if names:
        text = " · ".join(series.labels.get(n, "") or "(empty)" for n in names)
    else:
        text = ", ".join(f"{k}={v}" for k, v in sorted(series.labels.items())) or "value"
    if len(text) > _LABEL_LIMIT:
        half = (_LABEL_LIMIT - 1) // 2
        text = f"{text[:half]}…{text[-(_LABEL_LIMIT - 1 - half) :]}"
    return _no_mathtext(text)


def _no_mathtext(text: str) -> str:
    """matplotlib would read text between two "$" as a formula."""
    return text.replace("$", r"\$")


def _differing(series: Sequence[Series]) -> list[str]:
    names: set[str] = set()
    for s in series:
        names.update(s.labels)
    return sorted(
        (n for n in names if len({s.labels.get(n, "") for s in series}) > 1),
        key=lambda n: (n != "__name__", n),
    )


def _peak(series: Series) -> float:
    finite = [v for _, v in series.values if math.isfinite(v)]
    return max(finite) if finite else -math.inf


def _with_gaps(values: Sequence[tuple[datetime, float]]) -> tuple[list[datetime], list[float]]:
    """Times and values with a NaN inserted where samples are missing (more than 1.5 typical
    steps apart), so matplotlib breaks the line instead of drawing across the gap."""
    times: list[datetime] = []
    ys: list[float] = []
    diffs = sorted((b[0] - a[0]).total_seconds() for a, b in itertools.pairwise(values) if b[0] > a[0])
    step = diffs[len(diffs) // 2] if diffs else 0.0
    previous: datetime | None = None
    for when, value in values:
        if previous is not None and step and (when - previous).total_seconds() > 1.5 * step:
            times.append(previous + (when - previous) / 2)
            ys.append(math.nan)
        times.append(when)
        ys.append(value if math.isfinite(value) else math.nan)
        previous = when
    return times, ys


def render_graph(
    series: Sequence[Series],
    *,
    title: str,
    unit: str = "none",
    started_at: datetime | None = None,
    resolved_at: datetime | None = None,
    before: tuple[datetime, datetime] | None = None,
    window: tuple[datetime, datetime] | None = None,
    max_series: int = MAX_SERIES,
) -> bytes:
    """PNG bytes (1000x500) of `series` (range query results). `title` is plain text.

    Raises `GraphsUnavailable` when matplotlib is not installed.
    """
    figure_cls, canvas_cls, mdates, mticker = _matplotlib()
    fig = figure_cls(figsize=(WIDTH_PX / _DPI, HEIGHT_PX / _DPI), dpi=_DPI, layout="constrained")
    canvas_cls(fig)
    fig.set_facecolor("white")
    ax = fig.add_subplot()
    ax.set_facecolor("white")

    ranked = sorted((s for s in series if s.values), key=_peak, reverse=True)
    shown = ranked[: max(1, max_series)]
    names = _differing(shown) if len(shown) > 1 else []
    heading = _no_mathtext(title)
    if len(ranked) > len(shown):
        heading += f"  (top {len(shown)} of {len(ranked)} series)"
    ax.set_title(heading, loc="left", fontsize=13, fontweight="bold", color="#1a1a1a")

    for index, item in enumerate(shown):
        times, ys = _with_gaps(item.values)
        ax.plot(
            times,
            ys,
            color=_COLOURS[index % len(_COLOURS)],
            linewidth=1.8,
            label=_legend_name(item, names),
            marker="o" if len(times) == 1 else None,
        )

    if before is not None:
        ax.axvspan(before[0], before[1], color="#bdbdbd", alpha=0.3, linewidth=0, label="before (baseline)")
    if started_at is not None:
        ax.axvline(started_at, color="#C00000", linestyle="--", linewidth=1.5, label="incident start")
    if resolved_at is not None:
        ax.axvline(resolved_at, color="#007A33", linestyle="--", linewidth=1.5, label="resolved")

    if window is not None:
        ax.set_xlim(window[0], window[1])
    if not shown:
        ax.text(
            0.5, 0.5, "no data", transform=ax.transAxes, ha="center", va="center", fontsize=16, color="#555"
        )
        ax.set_yticks([])

    locator = mdates.AutoDateLocator(tz=UTC, minticks=4, maxticks=10)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator, tz=UTC))
    ax.set_xlabel("UTC", color="#333333")

    def tick(value: float, _pos: int | None) -> str:
        # Every tick on the scale of the axis' largest value: "0.5 s, 1 s, 1.5 s", not "500 ms, 1 s".
        low, high = ax.get_ylim()
        return format_values([value, max(abs(low), abs(high))], unit)[0]

    ax.yaxis.set_major_formatter(mticker.FuncFormatter(tick))
    ax.grid(True, color="#e0e0e0", linewidth=0.8)
    ax.tick_params(colors="#333333", labelsize=10)
    for spine in ax.spines.values():
        spine.set_color("#888888")

    handles, labels = ax.get_legend_handles_labels()
    if handles:
        # As many columns as fit the width (about 6 px per character at 9 pt, plus the line).
        widest = max(len(label) for label in labels) * 6 + 50
        fig.legend(
            handles,
            labels,
            loc="outside lower center",
            ncols=max(1, min(len(handles), (WIDTH_PX - 40) // widest)),
            fontsize=9,
            frameon=False,
            title=_no_mathtext(" · ".join(names)) if names else None,
            title_fontsize=9,
        )

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=_DPI, facecolor="white")
    return buffer.getvalue()
