"""The files the bot is configured with (routing, runbooks, policy, models, KPI digest
schedule), loaded and validated together at the server's start. The part that opening an
incident needs is bot/intake_config.py, which the intake applier process loads alone, so
the two processes open incidents from the same rules."""

from __future__ import annotations

from dataclasses import dataclass

from bot.actions.policy import Policy
from bot.config import Settings
from bot.errors import ConfigError
from bot.intake_config import IntakeConfig, IntakeFiles
from bot.kpis.digest import DigestSchedule
from bot.kpis.models_file import ModelsFile
from bot.routing import Router
from bot.runbooks import RunbookSet

__all__ = ["BotConfig", "load_digest_schedule"]


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
        intake = IntakeConfig.load(IntakeFiles.of(settings))
        return cls(
            router=intake.router,
            runbooks=intake.runbooks,
            policy=Policy.load(settings.policy_file, dry_run=settings.dry_run),
            models=intake.models,
            digest=load_digest_schedule(settings),
        )

    @property
    def intake(self) -> IntakeConfig:
        return IntakeConfig(router=self.router, runbooks=self.runbooks, models=self.models)
