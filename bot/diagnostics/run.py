"""One diagnostic, start to finish: queries, baselines, and the outcome as data to render.

A failing query never raises out of here: the incident thread has to say which query failed
and why, and the caller decides from `retryable` whether to try again later (Prometheus down,
5xx, timeout) or to give up (the query is wrong and will stay wrong).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from bot.diagnostics.baseline import Comparison, Windows, compare, measure
from bot.diagnostics.prometheus import Metrics, Series, auto_step
from bot.errors import RetryableUpstreamError, UpstreamError

__all__ = ["DiagnosticResult", "graph_series", "run_diagnostic"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DiagnosticResult:
    """What `diagnostics_blocks` renders for one query.

    `title` is mrkdwn the runbook renderer produced (values inside already escaped); `query`
    is the PromQL as run (escaped when rendered); `comparisons` hold one entry per series,
    highest current value first; `error` is set instead when the query failed.
    """

    title: str
    query: str
    unit: str = "none"
    comparisons: tuple[Comparison, ...] = ()
    error: str | None = None
    retryable: bool = False
    measured_at: datetime | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @classmethod
    def from_series(
        cls, title: str, query: str, series: Sequence[Series], *, unit: str = "none"
    ) -> DiagnosticResult:
        """A result without baselines (e.g. an instant diagnostic the caller ran itself)."""
        return cls(title=title, query=query, unit=unit, comparisons=tuple(compare(series, (), (), unit)))

    @classmethod
    def failed(cls, title: str, query: str, error: UpstreamError, *, unit: str = "none") -> DiagnosticResult:
        return cls(
            title=title,
            query=query,
            unit=unit,
            error=error.message,
            retryable=isinstance(error, RetryableUpstreamError),
        )


def run_diagnostic(
    metrics: Metrics, *, title: str, query: str, windows: Windows, unit: str = "none"
) -> DiagnosticResult:
    """Measure `query` now and against its baselines (blocking: run in a worker thread)."""
    try:
        comparisons = measure(metrics, query, windows, unit=unit)
    except UpstreamError as exc:
        logger.warning(
            "diagnostic query failed",
            extra={"error_code": exc.code, "retryable": isinstance(exc, RetryableUpstreamError)},
        )
        return DiagnosticResult.failed(title, query, exc, unit=unit)
    return DiagnosticResult(
        title=title, query=query, unit=unit, comparisons=tuple(comparisons), measured_at=windows.at
    )


def graph_series(
    metrics: Metrics,
    query: str,
    windows: Windows,
    *,
    range_: timedelta | None = None,
    step: timedelta | None = None,
) -> list[Series]:
    """The range data a graph of `query` shows (blocking). Errors propagate: the caller
    already reports the query's failure through `run_diagnostic` and posts no graph."""
    start, end = windows.graph(range_)
    return metrics.query_range(query, start, end, step or auto_step(start, end))
