"""The files the bot is configured with (routing, runbooks, policy, models, KPI digest
schedule), loaded and validated together. Its own module because two processes load them:
the server, and the intake applier process (bot/intake_process.py), which needs the routing
rules and runbooks to open incidents exactly as the server would."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from bot.actions.policy import Policy
from bot.config import Settings
from bot.errors import ConfigError
from bot.kpis.digest import DigestSchedule
from bot.kpis.models_file import ModelsFile
from bot.kpis.owner_routing import OwnerRouter
from bot.routing import Router
from bot.runbooks import RunbookSet, load_verified_runbooks

__all__ = ["BotConfig", "load_digest_schedule", "load_runbooks"]

logger = logging.getLogger(__name__)


def load_runbooks(settings: Settings) -> RunbookSet:
    """Invalid runbooks stop the start with their file:line errors; a missing folder is an
    error only when it was configured (the default `runbooks` may simply not exist)."""
    if not settings.runbooks_dir.is_dir() and "runbooks_dir" not in settings.model_fields_set:
        logger.warning(
            "no runbooks folder; incidents get no runbook", extra={"path": str(settings.runbooks_dir)}
        )
        return RunbookSet([])
    return load_verified_runbooks(settings.runbooks_dir)


def load_digest_schedule(settings: Settings) -> DigestSchedule | None:
    """The KPI digest's schedule, checked at start (a typo stops `serve` naming the variable)."""
    if not settings.kpi_digest:
        return None
    schedule = DigestSchedule.parse(settings.kpi_digest)
    if not (settings.kpi_channel or settings.channel):
        raise ConfigError("INCIDENT_BOT_KPI_DIGEST is set but no channel: set INCIDENT_BOT_KPI_CHANNEL")
    return schedule


@dataclass(frozen=True)
class BotConfig:
    """The files the bot is configured with, loaded and validated before anything starts,
    so an invalid routing file, runbook or policy stops `serve` with its file:line errors
    instead of a failed startup halfway through."""

    router: Router
    runbooks: RunbookSet
    policy: Policy
    models: ModelsFile
    digest: DigestSchedule | None

    @classmethod
    def load(cls, settings: Settings) -> BotConfig:
        models = ModelsFile.load(settings.models_file)
        return cls(
            router=OwnerRouter.wrap(
                Router.load(settings.routing_file, default_channel=settings.channel), models
            ),
            runbooks=load_runbooks(settings),
            policy=Policy.load(settings.policy_file, dry_run=settings.dry_run),
            models=models,
            digest=load_digest_schedule(settings),
        )
