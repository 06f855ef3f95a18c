"""Every diagnostic next to what is normal: "4.2 s, up from 0.6 s before the incident and
0.5 s last week".

Three measurements of the same query, per series (matched by labels):

* **now**: an instant query at the resolution time, or at the time of measuring while the
  incident is open.
* **before the incident**: the *median* of a range query over `[T - 1h, T)`, where T is the
  incident's start (Prometheus's `startsAt`, i.e. when the alert condition first held), one
  sample a minute.
* **last week**: the median of a range query over the hour centred on the same time of day
  7 days before "now" (`[N - 7d - 30m, N - 7d + 30m]`), so the current value is compared with
  the same moment of last week's daily/weekly cycle.

Why range queries and not `avg_over_time((<query>)[1h:1m])`: a subquery has to rewrite the
runbook's PromQL, which only works for instant-vector expressions (a `scalar(...)` or a
number cannot be subqueried), and it silently changes results: a subquery's steps are
aligned to multiples of the step rather than to the window, `rate(x[1m])[1h:]` with the default
step (the global evaluation interval) can be very expensive, and a query that already uses
`@`/`offset` or a subquery nests awkwardly. A range query evaluates the query exactly as written
at each step, for any result type, and the median is computed here.

Why the median and not the mean: the alert's own condition usually builds up in the minutes
before `startsAt`, and a single spike (a deploy, a scrape hiccup) last week would drag a mean;
the median is the "typical value" a responder means by "before". NaN samples (0/0 ratios when
there was no traffic) are ignored; +/-Inf samples are kept (a p99 in the +Inf bucket is real).

Trend thresholds (`trend()`), documented because responders will read them as facts:

* **about the same** when the two values differ by at most 10% of the larger one, and the
  difference is not visible once both are formatted on a shared scale (a change a reader
  cannot see is not a change);
* for `ratio` and `percent` a difference of one percentage point or more is always a change,
  whatever the relative size: availability going from 99.9% to 95% is "down";
* **up** / **down** otherwise; **no data** when either side has no sample.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from bot.diagnostics.prometheus import Metrics, Series
from bot.diagnostics.units import format_values

__all__ = [
    "BEFORE_WINDOW",
    "LAST_WEEK",
    "SAME_WITHIN",
    "Comparison",
    "Trend",
    "Windows",
    "compare",
    "measure",
    "trend",
]

#: How far back "before the incident" reaches.
BEFORE_WINDOW = timedelta(hours=1)
#: How far back "last week" is, and the width of the window around it.
LAST_WEEK = timedelta(days=7)
LAST_WEEK_WINDOW = timedelta(hours=1)
#: One sample a minute: 60 points per baseline window, cheap for Prometheus.
BASELINE_STEP = timedelta(minutes=1)
#: Relative difference (of the larger value) within which two values are "about the same".
SAME_WITHIN = 0.10
#: For ratio/percent: a difference of this many percentage points is always a change.
PERCENT_POINTS = 1.0

BEFORE_TEXT = "before the incident"
LAST_WEEK_TEXT = "last week"


class Trend(StrEnum):
    UP = "up"
    DOWN = "down"
    SAME = "about the same"
    NO_DATA = "no data"


def _utc(when: datetime) -> datetime:
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


@dataclass(frozen=True)
class Windows:
    """The time windows of one incident's diagnostics; build with `Windows.for_incident`."""

    started_at: datetime  # T
    at: datetime  # N: when "now" is measured (resolution, or the time of measuring)
    now: datetime
    resolved_at: datetime | None = None

    @classmethod
    def for_incident(
        cls, started_at: datetime, *, now: datetime, resolved_at: datetime | None = None
    ) -> Windows:
        started = _utc(started_at)
        current = _utc(now)
        resolved = _utc(resolved_at) if resolved_at is not None else None
        at = min(resolved, current) if resolved is not None else current
        # A start in the future (clock skew between Prometheus and us) measures at the start.
        return cls(started_at=started, at=max(at, min(started, current)), now=current, resolved_at=resolved)

    @property
    def before(self) -> tuple[datetime, datetime]:
        return self.started_at - BEFORE_WINDOW, self.started_at

    @property
    def last_week(self) -> tuple[datetime, datetime]:
        centre = self.at - LAST_WEEK
        return centre - LAST_WEEK_WINDOW / 2, centre + LAST_WEEK_WINDOW / 2

    def graph(
        self, range_: timedelta | None = None, *, after: timedelta = timedelta(minutes=15)
    ) -> tuple[datetime, datetime]:
        """The window a graph shows: from the start of the "before" window (or `range_` back
        from the end, whichever is earlier) to now, or to `after` past the resolution."""
        end = self.now if self.resolved_at is None else min(self.now, self.resolved_at + after)
        start = self.before[0]
        if range_ is not None:
            start = min(start, end - range_)
        return start, max(end, start + BASELINE_STEP)


def trend(current: float | None, baseline: float | None, unit: str = "none") -> Trend:
    """How `current` compares with `baseline`; thresholds in the module docstring."""
    if current is None or baseline is None or math.isnan(current) or math.isnan(baseline):
        return Trend.NO_DATA
    if current == baseline:
        return Trend.SAME
    if math.isinf(current) or math.isinf(baseline):
        return Trend.UP if current > baseline else Trend.DOWN
    direction = Trend.UP if current > baseline else Trend.DOWN
    diff = abs(current - baseline)
    if unit in ("ratio", "percent"):
        points = diff * 100 if unit == "ratio" else diff
        if points >= PERCENT_POINTS:
            return direction
    if diff <= SAME_WITHIN * max(abs(current), abs(baseline)):
        return Trend.SAME
    shown = format_values([current, baseline], unit)
    if shown[0] == shown[1]:
        return Trend.SAME
    return direction


def _typical(series: Series | None) -> float | None:
    if series is None:
        return None
    values = [v for _, v in series.values if not math.isnan(v)]
    return statistics.median(values) if values else None


@dataclass(frozen=True)
class Comparison:
    """One series now, before the incident and last week, with its wording."""

    labels: dict[str, str]
    current: float | None
    before: float | None
    last_week: float | None
    unit: str = "none"
    trends: tuple[Trend, Trend] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(
            self,
            "trends",
            (trend(self.current, self.before, self.unit), trend(self.current, self.last_week, self.unit)),
        )

    @property
    def before_trend(self) -> Trend:
        return self.trends[0]

    @property
    def last_week_trend(self) -> Trend:
        return self.trends[1]

    def formatted(self) -> tuple[str, str, str]:
        """(now, before, last week) on one shared scale, "no data" for missing values."""
        now, before, week = format_values([self.current, self.before, self.last_week], self.unit)
        return now, before, week

    def text(self) -> str:
        """ "4.2 s, up from 0.6 s before the incident and 0.5 s last week" and its variants:
        "…, about the same as before the incident (0.2 s) and last week (0.2 s)",
        "4.2 s, up from 0.6 s before the incident; no data last week", "no data now; …"."""
        now, before, week = self.formatted()
        if self.current is None or math.isnan(self.current):
            head = "no data now" if self.current is None else f"{now} now"
            known = [f"{v} {when}" for v, when, raw in self._sides(before, week) if raw is not None]
            return f"{head}; " + " and ".join(known) if known else head
        tb, tw = self.trends
        if tb == tw and tb in (Trend.UP, Trend.DOWN):
            return f"{now}, {tb} from {before} {BEFORE_TEXT} and {week} {LAST_WEEK_TEXT}"
        if tb == tw == Trend.SAME:
            return f"{now}, about the same as {BEFORE_TEXT} ({before}) and {LAST_WEEK_TEXT} ({week})"
        clauses: list[str] = []
        missing: list[str] = []
        for (value, when, _raw), direction in zip(self._sides(before, week), self.trends, strict=True):
            if direction == Trend.NO_DATA:
                missing.append(when)
            elif direction == Trend.SAME:
                clauses.append(f"about the same as {when} ({value})")
            else:
                clauses.append(f"{direction} from {value} {when}")
        text = now + (", " + ", ".join(clauses) if clauses else "")
        if missing:
            text += "; no data " + " or ".join(missing)
        return text

    def _sides(self, before: str, week: str) -> list[tuple[str, str, float | None]]:
        return [(before, BEFORE_TEXT, self.before), (week, LAST_WEEK_TEXT, self.last_week)]


def _rank(comparison: Comparison) -> tuple[int, float, str]:
    value = comparison.current
    if value is None or math.isnan(value):
        return (1, 0.0, str(sorted(comparison.labels.items())))
    return (0, -value, str(sorted(comparison.labels.items())))


def compare(
    current: Sequence[Series],
    before: Sequence[Series],
    last_week: Sequence[Series],
    unit: str = "none",
) -> list[Comparison]:
    """Match series by their labels and compare; highest current value first.

    `current` holds the latest sample of each series; `before` and `last_week` the samples of
    their windows (their median is the baseline). When both sides hold exactly one series they
    are compared even if their labels differ: a single-series result whose pod was replaced
    since last week is still "the" value. Series that exist only in a baseline are kept with
    no current value ("no data now"), after the others.
    """
    before_by_key = {s.key(): s for s in before}
    week_by_key = {s.key(): s for s in last_week}
    comparisons: list[Comparison] = []
    for series in current:
        b = before_by_key.pop(series.key(), None)
        w = week_by_key.pop(series.key(), None)
        if len(current) == 1:
            if b is None and len(before_by_key) == 1:
                b = before_by_key.popitem()[1]
            if w is None and len(week_by_key) == 1:
                w = week_by_key.popitem()[1]
        comparisons.append(Comparison(dict(series.labels), series.last, _typical(b), _typical(w), unit))
    for key in dict.fromkeys([*before_by_key, *week_by_key]):
        b, w = before_by_key.get(key), week_by_key.get(key)
        comparisons.append(Comparison(dict(key), None, _typical(b), _typical(w), unit))
    return sorted(comparisons, key=_rank)


def _before_cut(series: Sequence[Series], end: datetime) -> list[Series]:
    """Drop samples at or after `end`: the window is half-open, the incident's own first
    minute is not "before"."""
    return [Series(labels=s.labels, values=[(t, v) for t, v in s.values if t < end]) for s in series]


def measure(metrics: Metrics, expr: str, windows: Windows, *, unit: str = "none") -> list[Comparison]:
    """Run the three queries (blocking: call from a worker thread) and compare.

    Errors propagate unchanged (`RetryableUpstreamError`, `PermanentUpstreamError`): a
    baseline that could not be measured is a failed diagnostic, not a silent "no data".
    """
    current = metrics.query(expr, at=windows.at)
    start, end = windows.before
    before = _before_cut(metrics.query_range(expr, start, end, BASELINE_STEP), end)
    week_start, week_end = windows.last_week
    last_week = metrics.query_range(expr, week_start, week_end, BASELINE_STEP)
    return compare(current, before, last_week, unit)
