"""The bot's own Prometheus metrics, on a registry per app (no global state, so two apps in
one test process do not share counters)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

__all__ = ["BotMetrics"]

logger = logging.getLogger(__name__)

# Time to acknowledge/resolve: from a minute to a day.
DURATION_BUCKETS = (30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400, 28800, 86400)


class _OutboxDepth(Collector):
    """Read at scrape time so the figure is the database's, shared by every replica."""

    def __init__(self, depth: Callable[[], dict[str, int]]) -> None:
        self._depth = depth

    def collect(self) -> Iterable[Metric]:
        family = GaugeMetricFamily(
            "incident_bot_outbox_jobs", "Outbox jobs not yet done, by status", labels=["status"]
        )
        try:
            counts = self._depth()
        except Exception:
            logger.warning("outbox depth unavailable for /metrics", exc_info=True)
            counts = {}
        for status in ("pending", "running", "failed"):
            family.add_metric([status], counts.get(status, 0))
        yield family


class _IntakeState(Collector):
    """The intake journal at scrape time: a growing `pending` with the applier down is the
    signal that acknowledged alerts are not reaching Slack."""

    def __init__(self, status: Callable[[], tuple[int, int]], applier_up: Callable[[], bool]) -> None:
        self._status, self._applier_up = status, applier_up

    def collect(self) -> Iterable[Metric]:
        up = GaugeMetricFamily(
            "incident_bot_intake_applier_up", "1 when this replica's journal applier is running"
        )
        up.add_metric([], 1.0 if self._applier_up() else 0.0)
        yield up
        try:
            pending, failures = self._status()
        except Exception:
            logger.warning("intake journal state unavailable for /metrics", exc_info=True)
            return
        yield GaugeMetricFamily(
            "incident_bot_intake_journal_pending",
            "Notifications acknowledged (200) and not yet applied to incidents",
            value=pending,
        )
        yield GaugeMetricFamily(
            "incident_bot_intake_failures",
            "Acknowledged notifications the database can never store (see `incident-bot journal`)",
            value=failures,
        )


class BotMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.notifications = Counter(
            "incident_bot_notifications_received",
            "Alertmanager notifications received, by result",
            ["result"],
            registry=r,
        )
        self.incidents_opened = Counter(
            "incident_bot_incidents_opened", "Incidents opened", ["severity"], registry=r
        )
        self.incidents_resolved = Counter(
            "incident_bot_incidents_resolved", "Incidents resolved", ["severity"], registry=r
        )
        self.slack_calls = Counter(
            "incident_bot_slack_calls", "Slack Web API calls made", ["method"], registry=r
        )
        self.slack_failures = Counter(
            "incident_bot_slack_call_failures",
            "Slack Web API calls that failed",
            ["method", "error"],
            registry=r,
        )
        self.jobs = Counter(
            "incident_bot_outbox_job_runs",
            "Outbox job runs, by kind and outcome",
            ["kind", "outcome"],
            registry=r,
        )
        self.actions = Counter(
            "incident_bot_actions",
            "Remediation actions requested from Slack, by kind and outcome "
            "(succeeded, failed, refused, dry_run, cancelled, expired)",
            ["kind", "outcome"],
            registry=r,
        )
        self.time_to_ack = Histogram(
            "incident_bot_time_to_acknowledge_seconds",
            "From incident start to first acknowledgement",
            ["severity", "service"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.time_to_resolve = Histogram(
            "incident_bot_time_to_resolve_seconds",
            "From incident start to resolution",
            ["severity", "service"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )

    def watch_outbox(self, depth: Callable[[], dict[str, int]]) -> None:
        self.registry.register(_OutboxDepth(depth))

    def watch_intake(self, status: Callable[[], tuple[int, int]], applier_up: Callable[[], bool]) -> None:
        self.registry.register(_IntakeState(status, applier_up))

    def slack_call(self, method: str, error: str | None) -> None:
        self.slack_calls.labels(method).inc()
        if error is not None:
            self.slack_failures.labels(method, error).inc()

    def job_result(self, kind: str, outcome: str) -> None:
        self.jobs.labels(kind, outcome).inc()

    def action_outcome(self, kind: str, outcome: str) -> None:
        self.actions.labels(kind, outcome).inc()
