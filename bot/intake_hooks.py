"""Wiring of the intake writer to the rest of the bot: how a journaled notification is applied
(grouping rules, routing, enrichment) and what follows once it is (metrics, waking the outbox)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlmodel import Session

from bot import storm
from bot.alerts import AlertmanagerWebhook
from bot.incidents.intake import IntakeResult, apply_notification
from bot.incidents.models import Incident
from bot.intake_writer import IntakeWriter

if TYPE_CHECKING:
    from bot.server import Services

__all__ = ["build_intake"]


def build_intake(services: Services) -> IntakeWriter:
    interval = services.settings.slack_post_interval

    def on_open(session: Session, incident: Incident, labels: dict[str, str]) -> int:
        queued = services.enrichment.on_open(session, incident, labels)
        return queued + storm.on_opened(session, incident, post_interval=interval)

    def apply(session: Session, webhook: AlertmanagerWebhook) -> IntakeResult:
        return apply_notification(session, webhook, router=services.router, on_open=on_open)

    def applied(result: IntakeResult) -> None:
        metrics = services.metrics
        metrics.notifications.labels("duplicate" if result.duplicate else "accepted").inc()
        for incident in result.opened:
            metrics.incidents_opened.labels(incident.severity).inc()
        for incident in result.resolved:
            metrics.incidents_resolved.labels(incident.severity).inc()
            services.observe_resolution(incident)
        if result.jobs:
            services.outbox.wake()

    return IntakeWriter(services.engine, apply, applied, owner=services.outbox.worker_id)
