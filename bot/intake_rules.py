"""How a journaled notification becomes incidents: Alertmanager's grouping, the routing
rules, the jobs an opened incident gets, storm detection. Built the same way in the serving
process and in the intake applier process (bot/intake_process.py) from the configuration
files, so the two can never open an incident differently."""

from __future__ import annotations

from sqlmodel import Session

from bot import storm
from bot.alerts import AlertmanagerWebhook
from bot.flows.opening import Connected, OpeningJobs
from bot.incidents.intake import IntakeResult, apply_notification
from bot.incidents.models import Incident
from bot.intake_applier import Apply
from bot.intake_config import IntakeConfig

__all__ = ["build_apply"]


def build_apply(config: IntakeConfig, connected: Connected, *, post_interval: float) -> Apply:
    """The same in the serving process and in the applier process."""
    opening = OpeningJobs(config.runbooks, config.models, connected)

    def opened(session: Session, incident: Incident, labels: dict[str, str]) -> int:
        queued = opening(session, incident, labels)
        return queued + storm.on_opened(session, incident, post_interval=post_interval)

    def apply(session: Session, webhook: AlertmanagerWebhook) -> IntakeResult:
        return apply_notification(session, webhook, router=config.router, on_open=opened)

    return apply
