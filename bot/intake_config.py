"""The part of the configuration files that opening an incident needs: the routing rules
(with the model owners' routes), the runbooks to match and the models file. Its own module
because the intake applier process (bot/intake_child.py) loads only this part: the policy
and the KPI digest schedule it never uses would cost it imports (and resident memory, which
bench/memory.py counts in both processes). bot/config_files.py loads it as part of the rest."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from bot.config import Settings
from bot.kpis.models_file import ModelsFile
from bot.kpis.owner_routing import OwnerRouter
from bot.routing import Router
from bot.runbooks import RunbookSet, load_verified_runbooks

__all__ = ["IntakeConfig", "load_runbooks"]

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


@dataclass(frozen=True)
class IntakeConfig:
    router: Router
    runbooks: RunbookSet
    models: ModelsFile

    @classmethod
    def load(cls, settings: Settings) -> IntakeConfig:
        models = ModelsFile.load(settings.models_file)
        return cls(
            router=OwnerRouter.wrap(
                Router.load(settings.routing_file, default_channel=settings.channel), models
            ),
            runbooks=load_runbooks(settings),
            models=models,
        )
