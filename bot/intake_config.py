"""The part of the configuration files that opening an incident needs: the routing rules
(with the model owners' routes), the runbooks to match and the models file. Its own module
because the intake applier process (bot/intake_child.py) loads only this part: the policy
and the KPI digest schedule it never uses would cost it imports (and resident memory, which
bench/memory.py counts in both processes). bot/config_files.py loads it as part of the rest.

`IntakeFiles` says where the files are, taken from the settings by the serving process: the
applier process gets it instead of the settings, so it does not load pydantic-settings."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from bot.kpis.models_file import ModelsFile
from bot.kpis.owner_routing import OwnerRouter
from bot.routing import Router
from bot.runbooks import RunbookSet, load_verified_runbooks

if TYPE_CHECKING:
    from bot.config import Settings

__all__ = ["IntakeConfig", "IntakeFiles", "load_runbooks"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class IntakeFiles:
    routing_file: Path | None
    default_channel: str | None
    runbooks_dir: Path
    runbooks_configured: bool  # set explicitly: then a missing folder is an error
    models_file: Path | None

    @classmethod
    def of(cls, settings: Settings) -> IntakeFiles:
        return cls(
            routing_file=settings.routing_file,
            default_channel=settings.channel,
            runbooks_dir=settings.runbooks_dir,
            runbooks_configured="runbooks_dir" in settings.model_fields_set,
            models_file=settings.models_file,
        )


def load_runbooks(files: IntakeFiles) -> RunbookSet:
    """Invalid runbooks stop the start with their file:line errors; a missing folder is an
    error only when it was configured (the default `runbooks` may simply not exist)."""
    if not files.runbooks_dir.is_dir() and not files.runbooks_configured:
        logger.warning(
            "no runbooks folder; incidents get no runbook", extra={"path": str(files.runbooks_dir)}
        )
        return RunbookSet([])
    return load_verified_runbooks(files.runbooks_dir)


@dataclass(frozen=True)
class IntakeConfig:
    router: Router
    runbooks: RunbookSet
    models: ModelsFile

    @classmethod
    def load(cls, files: IntakeFiles) -> IntakeConfig:
        models = ModelsFile.load(files.models_file)
        return cls(
            router=OwnerRouter.wrap(
                Router.load(files.routing_file, default_channel=files.default_channel), models
            ),
            runbooks=load_runbooks(files),
            models=models,
        )
