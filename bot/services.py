"""`Services`: the long-lived parts a request or a worker needs, built once per app by the
composition root (bot/server.py) in dependency order and frozen.

HTTP views and Slack listeners read it from `request.app.state.services`; they import this
module (for the type), never the composition root, so the root can import them without a cycle.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.engine import Engine

from bot.actions.kubernetes import WorkloadsApi
from bot.actions.policy import Policy
from bot.actions.silences import Silences
from bot.config import Settings
from bot.diagnostics import Metrics
from bot.flows.actions import ActionFlows
from bot.flows.enrichment import Enrichment
from bot.incidents.models import Incident
from bot.intake_writer import IntakeWriter
from bot.kpis.service import KpiService
from bot.metrics import BotMetrics
from bot.outbox import Outbox
from bot.registry.mlflow import ModelRegistry
from bot.routing import Router
from bot.runbooks import RunbookSet
from bot.slack.chat import SlackChat

__all__ = ["Services", "observe_resolution"]


@dataclass(frozen=True)
class Services:
    """Everything a request or a worker needs. An absent integration (no PROMETHEUS_URL,
    no cluster, no ALERTMANAGER_URL) is a null object with the same protocol whose
    `available` is False and whose every call says what is not configured."""

    settings: Settings
    engine: Engine
    router: Router
    metrics: BotMetrics
    chat: SlackChat
    outbox: Outbox
    runbooks: RunbookSet
    policy: Policy
    prometheus: Metrics
    workloads: WorkloadsApi
    silences: Silences
    registry: ModelRegistry
    enrichment: Enrichment
    actions: ActionFlows
    kpis: KpiService
    intake: IntakeWriter

    def observe_acknowledgement(self, incident: Incident) -> None:
        if incident.acknowledged_at is None:
            return
        seconds = max(0.0, (incident.acknowledged_at - incident.created_at).total_seconds())
        self.metrics.time_to_ack.labels(incident.severity, incident.service or "unknown").observe(seconds)

    def observe_resolution(self, incident: Incident) -> None:
        observe_resolution(self.metrics, incident)


def observe_resolution(metrics: BotMetrics, incident: Incident) -> None:
    """Time to resolve, for an incident resolved by a notification or by a responder."""
    if incident.resolved_at is None:
        return
    seconds = max(0.0, (incident.resolved_at - incident.created_at).total_seconds())
    metrics.time_to_resolve.labels(incident.severity, incident.service or "unknown").observe(seconds)
