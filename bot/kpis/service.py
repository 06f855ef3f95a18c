"""KPIs of every served model over a window: queries in parallel under a deadline, results
assembled into scorecards, kept briefly in a cache.

Why a deadline and not just timeouts: `/model` must answer within Slack's 3 seconds with what
it has. Every query runs in a thread pool; whatever has not answered when the deadline
passes is reported as "Prometheus did not answer within 2.5s" for the KPI it feeds, and the
scorecard goes out with the rest. Each query also carries Prometheus's own `timeout`, so a
heavy query is cancelled on the server instead of running on after we gave up.

Why a cache: a busy channel typing `/model` should not hammer Prometheus. A complete result
is reused for `CACHE_SECONDS`, an incomplete one (Prometheus slow or down) only for
`PARTIAL_CACHE_SECONDS`, so it is asked again soon. The window is typed by users (any
duration from 10s to 400d), so the cache drops expired reports and keeps at most
`CACHE_WINDOWS` of them: a process asked for thousands of distinct windows over its life must
not keep a report of every one.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_for
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.engine import Engine

from bot.diagnostics.prometheus import Metrics, Series, auto_step
from bot.errors import BotError
from bot.kpis.chart import CHART_POINTS, chart_rate_range, render_kpi_chart
from bot.kpis.discovery import ModelRef, model_name, models_from_series
from bot.kpis.incident_stats import incident_stats, load_incidents
from bot.kpis.models_file import KPI_NAMES, ModelsFile
from bot.kpis.queries import COST_METRIC, DRIFT_QUERY, SERVERS, Server, render, render_override
from bot.kpis.scorecard import Scorecard, cost_per_1k, error_ratio, total_requests
from bot.kpis.window import Window

__all__ = ["KpiReport", "KpiService"]

logger = logging.getLogger(__name__)

CACHE_SECONDS = 30.0
PARTIAL_CACHE_SECONDS = 5.0
CACHE_WINDOWS = 32
#: Budgets up to this many seconds use `quick_metrics` (a short server-side timeout).
QUICK_BUDGET = 5.0
_PERIODS = (False, True)  # this window, the previous one


@dataclass
class KpiReport:
    window: Window
    computed_at: datetime
    models: list[Scorecard]
    complete: bool
    problems: list[str] = field(default_factory=list)

    def find(self, name: str, namespace: str | None = None) -> list[Scorecard]:
        """Models named `name` (as exported, by display name, `namespace/name`, or the part
        after the last `/`), case-insensitive; exact matches win over short names."""
        wanted = name.strip().lower()
        candidates = [m for m in self.models if namespace is None or m.namespace == namespace]
        for match in (
            lambda m: m.model.lower() == wanted or f"{m.namespace}/{m.model}".lower() == wanted,
            lambda m: m.display_name.lower() == wanted,
            lambda m: m.model.lower().rsplit("/", 1)[-1] == wanted,
        ):
            found = [m for m in candidates if match(m)]
            if found:
                return found
        return []


class _Outcome:
    """One query's result or the reason it has none."""

    def __init__(self, future: Future[list[Series]] | None) -> None:
        self.future = future

    def result(self, timeout_text: str) -> tuple[list[Series] | None, str | None]:
        if self.future is None:
            return None, None
        if not self.future.done():
            return None, f"Prometheus did not answer within {timeout_text}"
        error = self.future.exception()
        if error is not None:
            text = error.message if isinstance(error, BotError) else f"{type(error).__name__}: {error}"
            return None, f"Prometheus query failed: {text}"
        return self.future.result(), None


class KpiService:
    """Computes `KpiReport`s for `/api/models`, `/model` and the digest."""

    def __init__(
        self,
        metrics: Metrics | None,
        engine: Engine,
        models: ModelsFile,
        *,
        threads: int = 10,
        clock: Callable[[], float] = time.monotonic,
        quick_metrics: Metrics | None = None,
    ) -> None:
        self.metrics = metrics
        # For short budgets (`/model`): the same Prometheus with a server-side timeout to match,
        # so a query we stopped waiting for does not run on in Prometheus for long.
        self.quick_metrics = quick_metrics
        self.engine = engine
        self.models = models
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="kpi")
        self._cache: dict[str, tuple[float, KpiReport]] = {}
        self._lock = threading.Lock()
        self._clock = clock

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        for metrics in (self.metrics, self.quick_metrics):
            close = getattr(metrics, "close", None)
            if callable(close):
                close()

    def report(self, window: Window, *, budget: float) -> KpiReport:
        """Blocking (call from a worker thread): the cached report, or a new one within `budget` s."""
        now = self._clock()
        with self._lock:
            cached = self._cache.get(window.text)
            if cached is not None and cached[0] > now:
                return cached[1]
        report = self._compute(window, budget)
        ttl = CACHE_SECONDS if report.complete else PARTIAL_CACHE_SECONDS
        with self._lock:
            now = self._clock()
            self._cache = {text: entry for text, entry in self._cache.items() if entry[0] > now}
            while len(self._cache) >= CACHE_WINDOWS:
                del self._cache[min(self._cache, key=lambda text: self._cache[text][0])]
            self._cache[window.text] = (now + ttl, report)
        return report

    def cached_windows(self) -> int:
        """Reports held in the cache (bounded by `CACHE_WINDOWS`)."""
        with self._lock:
            return len(self._cache)

    def chart_png(self, card: Scorecard, window: Window) -> bytes | None:
        """Blocking: a PNG of the model's latency p99 and error ratio over the window, or
        None when Prometheus is not configured or the model has no server series.
        Raises `GraphsUnavailable` without matplotlib and `UpstreamError` when Prometheus fails."""
        queries = chart_queries(card)
        server = next((s for s in SERVERS if s.name == card.server), None)
        if self.metrics is None or queries is None or server is None:
            return None
        end = datetime.now(UTC)
        start = end - window.timedelta
        step = auto_step(start, end, points=CHART_POINTS)
        rate_window = Window("chart", chart_rate_range(step))
        key_value = card.model
        found: list[list[Series]] = []
        for template in queries:
            series = self.metrics.query_range(render(template, server, rate_window), start, end, step)
            found.append(
                [
                    s
                    for s in series
                    if s.labels.get(server.namespace_label, "") == card.namespace
                    and model_name(server, s.labels.get(server.model_label, "")) == key_value
                ]
            )
        title = f"{card.display_name} ({card.namespace}) over {window.text}"
        return render_kpi_chart(title, found[0], found[1], start=start, end=end)

    # ------------------------------------------------------------------ computing

    def _compute(self, window: Window, budget: float) -> KpiReport:
        started = self._clock()
        metrics = (
            self.quick_metrics if self.quick_metrics is not None and budget <= QUICK_BUDGET else self.metrics
        )

        def ask(expr: str) -> Future[list[Series]] | None:
            return None if metrics is None else self._pool.submit(metrics.query, expr)

        now = datetime.now(UTC)
        since = now - window.timedelta
        incidents_future = self._pool.submit(load_incidents, self.engine, since)
        plan: dict[tuple[str, str, bool], _Outcome] = {}
        for server in SERVERS:
            plan[(server.name, "discovery", False)] = _Outcome(
                ask(render(server.discovery(), server, window))
            )
            for previous in _PERIODS:
                templates: dict[str, str | None] = {
                    "uptime_pct": server.uptime(),
                    "latency_p99_seconds": server.latency_p99,
                    "requests": server.requests,
                    "errors": server.errors,
                    "cost_metric": server.cost(),
                    "gpu_hours": server.gpu_hours(),
                }
                for name, template in templates.items():
                    if template is not None:
                        plan[(server.name, name, previous)] = _Outcome(
                            ask(render(template, server, window, previous=previous))
                        )
        for previous in _PERIODS:
            plan[("*", "drift", previous)] = _Outcome(
                ask(render(DRIFT_QUERY, None, window, previous=previous))
            )
        overrides: dict[tuple[str, str, str, bool], _Outcome] = {}
        for spec in self.models.specs:
            for kpi, query in spec.queries.items():
                for previous in _PERIODS:
                    overrides[(spec.model, spec.namespace or "", kpi, previous)] = _Outcome(
                        ask(render_override(query, window, previous=previous))
                    )

        pending: list[Future[Any]] = [
            o.future for o in (*plan.values(), *overrides.values()) if o.future is not None
        ]
        pending.append(incidents_future)
        wait_for(pending, timeout=max(0.0, budget - (self._clock() - started)))
        timeout_text = f"{budget:g}s"

        problems: list[str] = []
        if self.metrics is None:
            problems.append("Prometheus is not configured (PROMETHEUS_URL): KPIs from metrics are off")
        cards: dict[tuple[str, str], Scorecard] = {}
        refs: dict[tuple[str, str], ModelRef] = {}
        unseen_reason = "no series for this model in Prometheus over the window"
        for server in SERVERS:
            series, why = plan[(server.name, "discovery", False)].result(timeout_text)
            if why and why not in problems:
                problems.append(why)
                unseen_reason = f"models could not be discovered: {why}"
            for ref in models_from_series(server, series or []):
                if ref.key in refs:
                    continue  # already found on a server listed earlier
                refs[ref.key] = ref
                cards[ref.key] = Scorecard(
                    model=ref.model,
                    namespace=ref.namespace,
                    server=server.name,
                    window=window.text,
                    deployment=ref.deployment,
                    version=ref.version,
                    spec=self.models.spec_for(ref.model, ref.namespace),
                )
        for spec in self.models.specs:  # described but not (or no longer) seen: listed, with nulls
            if not any(spec.matches(m, ns) for ns, m in cards):
                key = (spec.namespace or "", spec.model)
                cards[key] = Scorecard(spec.model, spec.namespace or "", None, window.text, spec=spec)

        for key, card in cards.items():
            found_ref = refs.get(key)
            found_server = next((s for s in SERVERS if s.name == card.server), None)
            for previous in _PERIODS:
                values, missing = self._kpis(
                    plan, found_server, found_ref, card, window, previous, timeout_text, unseen_reason
                )
                target = card.previous if previous else card.values
                target.update(values)
                if not previous:
                    card.missing.update(missing)
                for kpi in KPI_NAMES:
                    outcome = (
                        overrides.get((card.model, card.spec.namespace or "", kpi, previous))
                        if card.spec
                        else None
                    )
                    if outcome is None:
                        continue
                    series, why = outcome.result(timeout_text)
                    value = _max_value(series or [])
                    target[kpi] = value
                    if not previous:
                        if value is None:
                            card.missing[kpi] = why or "the models file's query returned no data"
                        else:
                            card.missing.pop(kpi, None)

        rows = None
        incidents_why = None
        if not incidents_future.done():
            incidents_why = f"the database did not answer within {timeout_text}"
        elif incidents_future.exception() is not None:
            incidents_why = f"the incident records could not be read: {incidents_future.exception()!r}"
        else:
            rows = incidents_future.result()
        for card in cards.values():
            if rows is None:
                card.incidents_missing = incidents_why
                continue
            names = {card.model, *(r.key_value for r in [refs.get((card.namespace, card.model))] if r)}
            card.incidents = incident_stats(rows, names, card.namespace, start=since, end=now)

        complete = not problems and not any(
            why.startswith("Prometheus") for card in cards.values() for why in card.missing.values()
        )
        models = sorted(cards.values(), key=lambda c: (c.namespace, c.model))
        return KpiReport(window, now, models, complete and incidents_why is None, problems)

    def _kpis(
        self,
        plan: dict[tuple[str, str, bool], _Outcome],
        server: Server | None,
        ref: ModelRef | None,
        card: Scorecard,
        window: Window,
        previous: bool,
        timeout_text: str,
        unseen_reason: str,
    ) -> tuple[dict[str, float | None], dict[str, str]]:
        values: dict[str, float | None] = {}
        missing: dict[str, str] = {}
        if server is None or ref is None:
            for kpi in KPI_NAMES:
                missing[kpi] = unseen_reason
            drift, why = self._lookup(
                plan, ("*", "drift", previous), card.model, None, "model_name", timeout_text
            )
            values["drift_score"] = drift
            if drift is not None:
                missing.pop("drift_score")
            return values, missing

        def get(name: str) -> tuple[float | None, str | None]:
            return self._lookup(
                plan, (server.name, name, previous), ref.key_value, ref.namespace, None, timeout_text, server
            )

        def put(kpi: str, value: float | None, why: str | None, no_data: str) -> None:
            values[kpi] = value
            if value is None:
                missing[kpi] = server.reason(kpi) or why or no_data

        uptime, why = get("uptime_pct")
        put("uptime_pct", None if uptime is None else round(uptime * 100, 4), why, "no samples in the window")
        if server.latency_p99 is None:
            put("latency_p99_seconds", None, None, "")
        else:
            p99, why = get("latency_p99_seconds")
            put("latency_p99_seconds", p99, why, "no requests with a latency in the window")
        ok, why_ok = get("requests")
        errs, why_err = (None, None) if server.errors is None else get("errors")
        rps = total_requests(ok, errs, apart=server.errors_counted_apart)
        put("requests_per_second", rps, why_ok, "no request counter in the window")
        if server.errors is None:
            put("error_ratio", None, None, "")
        else:
            put("error_ratio", error_ratio(rps, errs), why_err or why_ok, "no requests in the window")
        cost, why_cost = get("cost_metric") if server.cost() is not None else (None, None)
        if cost is None:
            gpu_hours, why_gpu = get("gpu_hours") if server.gpu_hours() is not None else (None, None)
            price = card.spec.gpu_hour_usd if card.spec else None
            cost = cost_per_1k(gpu_hours, price, None if rps is None else rps * window.seconds)
            if cost is None:
                why_cost = (
                    why_cost
                    or why_gpu
                    or (
                        f"no cost metric ({COST_METRIC}) and no gpu_hour_usd in the models file"
                        if price is None
                        else "no GPU requests (kube_pod_container_resource_requests)"
                        " or no requests in the window"
                    )
                )
        put("cost_per_1k_usd", cost, why_cost, "")
        drift, why = self._lookup(plan, ("*", "drift", previous), ref.model, None, "model_name", timeout_text)
        if drift is None and ref.key_value != ref.model:
            drift, why = self._lookup(
                plan, ("*", "drift", previous), ref.key_value, None, "model_name", timeout_text
            )
        put("drift_score", drift, why, "the model exports no drift score (ml_feature_drift_score)")
        return values, missing

    @staticmethod
    def _lookup(
        plan: dict[tuple[str, str, bool], _Outcome],
        key: tuple[str, str, bool],
        model: str,
        namespace: str | None,
        model_label: str | None,
        timeout_text: str,
        server: Server | None = None,
    ) -> tuple[float | None, str | None]:
        outcome = plan.get(key)
        if outcome is None:
            return None, None
        series, why = outcome.result(timeout_text)
        if series is None:
            return None, why
        label = model_label or (server.model_label if server else "model_name")
        ns_label = server.namespace_label if server else "namespace"
        for one in series:
            if one.labels.get(label) != model:
                continue
            if namespace is not None and one.labels.get(ns_label, "") != namespace:
                continue
            value = one.last
            if value is None or math.isnan(value) or math.isinf(value):
                return None, None
            return value, None
        return None, None


def _max_value(series: list[Series]) -> float | None:
    values = [s.last for s in series if s.last is not None and math.isfinite(s.last)]
    return max(values) if values else None


def chart_queries(card: Scorecard) -> tuple[str, str] | None:
    """Range-query PromQL for a model's latency p99 and error ratio, `{r}` for the rate range."""
    server = next((s for s in SERVERS if s.name == card.server), None)
    if server is None:
        return None
    latency = server.latency_p99 or "vector(0) * 0 > 1"
    total = server.requests
    if server.errors is None:
        errors = "vector(0) * 0 > 1"
    elif server.errors_counted_apart:
        errors = f"({server.errors}) / on ({{by}}) (({total}) + on ({{by}}) ({server.errors}))"
    else:
        errors = f"({server.errors}) / on ({{by}}) ({total})"
    return latency, errors
