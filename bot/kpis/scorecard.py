"""One model's scorecard: its KPIs over a window and the window before, its SLO, its incidents.

Pure data and arithmetic: the numbers come in from Prometheus query results and incident
records (bot/kpis/service.py), and go out as JSON (`/api/models`) or to a renderer
(bot/slack/kpi_blocks.py). A KPI that could not be computed is None, and `missing` says why,
so a reader always learns the difference between "zero" and "unknown".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bot.kpis.incident_stats import IncidentStats
from bot.kpis.models_file import KPI_NAMES, ModelSpec, Slo

__all__ = ["HIGHER_IS_BETTER", "Scorecard", "cost_per_1k", "error_ratio", "total_requests"]

#: Which way is good, for the trend arrows and the digest's ordering.
HIGHER_IS_BETTER = {
    "uptime_pct": True,
    "latency_p99_seconds": False,
    "requests_per_second": True,
    "error_ratio": False,
    "cost_per_1k_usd": False,
    "drift_score": False,
}


def total_requests(
    ok_per_second: float | None, errors_per_second: float | None, *, apart: bool
) -> float | None:
    """Requests per second, counting failures once whether the server counts them apart or not."""
    if ok_per_second is None:
        return None
    return ok_per_second + (errors_per_second or 0.0) if apart else ok_per_second


def error_ratio(requests_per_second: float | None, errors_per_second: float | None) -> float | None:
    """Failed share of requests; 0 when requests flowed and no failure series exists yet
    (counters with a reason label appear only at their first failure)."""
    if not requests_per_second:
        return None
    return min(1.0, (errors_per_second or 0.0) / requests_per_second)


def cost_per_1k(gpu_hours: float | None, price: float | None, requests: float | None) -> float | None:
    """USD per 1,000 requests from GPU-hours held and a GPU-hour price."""
    if gpu_hours is None or price is None or not requests:
        return None
    return gpu_hours * price / (requests / 1000.0)


@dataclass
class Scorecard:
    model: str
    namespace: str
    server: str | None
    window: str
    deployment: str | None = None
    version: str | None = None
    spec: ModelSpec | None = None
    values: dict[str, float | None] = field(default_factory=lambda: dict.fromkeys(KPI_NAMES))
    previous: dict[str, float | None] = field(default_factory=lambda: dict.fromkeys(KPI_NAMES))
    missing: dict[str, str] = field(default_factory=dict)
    incidents: IncidentStats | None = None
    incidents_missing: str | None = None

    @property
    def display_name(self) -> str:
        return self.spec.display_name if self.spec and self.spec.display_name else self.model

    @property
    def slo(self) -> Slo:
        return self.spec.slo if self.spec else Slo()

    def breaches(self) -> list[str]:
        """The SLOs this window misses, in words ("uptime 97.1% < 99.5%")."""
        out: list[str] = []
        uptime, p99 = self.values.get("uptime_pct"), self.values.get("latency_p99_seconds")
        if self.slo.uptime_pct is not None and uptime is not None and uptime < self.slo.uptime_pct:
            out.append(f"uptime {uptime:.2f}% < {self.slo.uptime_pct:g}%")
        if (
            self.slo.latency_p99_seconds is not None
            and p99 is not None
            and p99 > self.slo.latency_p99_seconds
        ):
            out.append(f"p99 latency {p99:.3g}s > {self.slo.latency_p99_seconds:g}s")
        return out

    def as_json(self) -> dict[str, Any]:
        stats = self.incidents
        return {
            "model": self.model,
            "namespace": self.namespace,
            "display_name": self.display_name,
            "server": self.server,
            "deployment": self.deployment,
            "version": self.version,
            "window": self.window,
            **{name: self.values.get(name) for name in KPI_NAMES},
            "incidents": stats.incidents if stats else None,
            "mtta_seconds": stats.mtta_seconds if stats else None,
            "mttr_seconds": stats.mttr_seconds if stats else None,
            "critical_incident_minutes": stats.critical_minutes if stats else None,
            "open_incidents": [
                {
                    "id": o.id,
                    "key": f"INC-{o.id}",
                    "severity": o.severity,
                    "status": o.status,
                    "title": o.title,
                }
                for o in (stats.open if stats else ())
            ],
            "previous_window": {name: self.previous.get(name) for name in KPI_NAMES},
            "slo": self.slo.model_dump(),
            "slo_breaches": self.breaches(),
            "owners": list(self.spec.owners) if self.spec else [],
            "owners_channel": self.spec.owners_channel if self.spec else None,
            "unavailable": {
                **self.missing,
                **({"incidents": self.incidents_missing} if self.incidents_missing else {}),
            },
        }
