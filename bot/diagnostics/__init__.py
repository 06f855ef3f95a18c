"""Diagnostics: PromQL results, compared with their baselines, as Slack blocks and graphs.

The pieces, each usable alone:

* `PrometheusMetrics` (the `Metrics` interface): blocking queries with timeouts, tenacity
  retries of retryable failures, errors translated into `bot.errors`.
* `expr_from_generator_url`: the alert's own PromQL from its `generatorURL`.
* `Windows`, `measure`, `compare`, `Comparison`: now vs. the hour before the incident vs.
  the same time last week, with the wording responders read.
* `run_diagnostic` / `DiagnosticResult`: one query start to finish, failures as data.
* `diagnostics_blocks` / `diagnostics_text` / `diagnostics_message`: Block Kit for a thread.
* `render_graph` (needs the `graphs` extra; `graphs_available()`): a PNG of range series.

Importing this package does not import matplotlib.
"""

from __future__ import annotations

from bot.diagnostics.baseline import Comparison, Trend, Windows, compare, measure, trend
from bot.diagnostics.generator_url import expr_from_generator_url
from bot.diagnostics.graph import GraphsUnavailable, graphs_available, render_graph
from bot.diagnostics.prometheus import Metrics, NoPrometheus, PrometheusMetrics, Series, auto_step, safe_url
from bot.diagnostics.run import DiagnosticResult, graph_series, run_diagnostic
from bot.diagnostics.table import diagnostics_blocks, diagnostics_message, diagnostics_text
from bot.diagnostics.units import UNITS, format_value, format_values

__all__ = [
    "UNITS",
    "Comparison",
    "DiagnosticResult",
    "GraphsUnavailable",
    "Metrics",
    "NoPrometheus",
    "PrometheusMetrics",
    "Series",
    "Trend",
    "Windows",
    "auto_step",
    "compare",
    "diagnostics_blocks",
    "diagnostics_message",
    "diagnostics_text",
    "expr_from_generator_url",
    "format_value",
    "format_values",
    "graph_series",
    "graphs_available",
    "measure",
    "render_graph",
    "run_diagnostic",
    "safe_url",
    "trend",
]
