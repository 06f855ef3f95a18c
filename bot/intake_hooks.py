"""Wiring of the intake writer to the rest of the bot: how a journaled notification is applied
(grouping rules, routing, enrichment, storm detection) and what follows once it is (metrics,
waking the outbox). Takes the parts it needs, not the composition root, so nothing here
imports bot/server.py."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy.engine import Engine
from sqlmodel import Session

from bot import storm
from bot.alerts import AlertmanagerWebhook
from bot.incidents.intake import IntakeResult, OnOpen, apply_notification
from bot.incidents.models import Incident
from bot.intake_writer import IntakeWriter
from bot.metrics import BotMetrics
from bot.routing import Router

__all__ = ["build_intake"]


def build_intake(
    engine: Engine,
    *,
    router: Router,
    on_open: OnOpen,
    metrics: BotMetrics,
    wake: Callable[[], None],
    observe_resolution: Callable[[Incident], None],
    post_interval: float,
    owner: str,
) -> IntakeWriter:
    def opened(session: Session, incident: Incident, labels: dict[str, str]) -> int:
        queued = on_open(session, incident, labels)
        return queued + storm.on_opened(session, incident, post_interval=post_interval)

    def apply(session: Session, webhook: AlertmanagerWebhook) -> IntakeResult:
        return apply_notification(session, webhook, router=router, on_open=opened)

    def applied(result: IntakeResult) -> None:
        metrics.notifications.labels("duplicate" if result.duplicate else "accepted").inc()
        for incident in result.opened:
            metrics.incidents_opened.labels(incident.severity).inc()
        for incident in result.resolved:
            metrics.incidents_resolved.labels(incident.severity).inc()
            observe_resolution(incident)
        if result.jobs:
            wake()

    return IntakeWriter(engine, apply, applied, owner=owner)
