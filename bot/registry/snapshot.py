"""What the registry says about a model at one moment: where its serving alias points, the
version before that (see aliases.py), and what their training runs logged. Read once for an
incident's thread and again for a rollback's plan, so both show the same comparison."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.engine import Engine

from bot.db import transaction
from bot.errors import NotFound, UpstreamError
from bot.registry.aliases import observe_alias, version_before
from bot.registry.mlflow import ModelRegistry, ModelVersion, RegisteredModel
from bot.registry.models import ModelRef

__all__ = ["RegistrySnapshot", "VersionFacts", "read_snapshot", "version_facts"]


@dataclass(frozen=True)
class VersionFacts:
    version: ModelVersion
    metrics: dict[str, float] = field(default_factory=dict)
    metrics_error: str | None = None  # the run could not be read: why


@dataclass(frozen=True)
class RegistrySnapshot:
    ref: ModelRef
    model: RegisteredModel
    current: VersionFacts | None  # None: the alias is not set
    before: VersionFacts | None
    before_observed: bool = False  # the bot saw the alias point there (else: next lower version)
    moved_at: datetime | None = None  # when the bot saw the alias move to the current version


def version_facts(registry: ModelRegistry, version: ModelVersion) -> VersionFacts:
    if not version.run_id:
        return VersionFacts(version, {}, "no training run recorded")
    try:
        return VersionFacts(version, registry.run_metrics(version.run_id))
    except UpstreamError as exc:
        return VersionFacts(version, {}, exc.message)


def _get_version(registry: ModelRegistry, name: str, version: str) -> ModelVersion | None:
    try:
        return registry.get_version(name, version)
    except NotFound:
        return None


def read_snapshot(engine: Engine, registry: ModelRegistry, ref: ModelRef) -> RegistrySnapshot:
    """Blocking (run it in a thread). Raises NotFound for an unknown model, UpstreamError when
    MLflow cannot be read; records the alias position it sees."""
    model = registry.model(ref.name)
    target = model.aliases.get(ref.alias)
    if target is None:
        return RegistrySnapshot(ref, model, None, None)
    current = model.version(target) or registry.alias_version(ref.name, ref.alias)
    with transaction(engine) as session:
        move = observe_alias(session, ref.name, ref.alias, target)
        moved_at = move.observed_at if move.previous_version else None
        before = version_before(session, ref.name, ref.alias, target, [v.version for v in model.versions])
    before_version = None
    if before is not None:
        # Older than the versions listed: read it by number (None when it was deleted since).
        before_version = model.version(before.version) or _get_version(registry, ref.name, before.version)
    return RegistrySnapshot(
        ref,
        model,
        version_facts(registry, current),
        version_facts(registry, before_version) if before_version else None,
        before_observed=before.observed if before else False,
        moved_at=moved_at,
    )
